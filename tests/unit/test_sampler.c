/*
 * test_sampler.c - the sampler chain against hand-computed distributions,
 * seed reproducibility, and the stop-string matcher. Public API only.
 *
 * Frequencies are measured over N_DRAWS draws; the standard error of a
 * proportion is at most sqrt(0.25 / N_DRAWS) = 0.0035, so a tolerance of
 * 0.02 (over 5 standard errors) cannot fail by chance in practice, and the
 * seeds are fixed anyway.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "baichuan.h"

#define N_DRAWS 20000
#define TOL     0.02

static bc_sampler *make(bc_sampler_params p, int n_vocab) {
    bc_sampler *s = NULL;
    assert_int_equal(bc_sampler_init(p, n_vocab, &s), BC_STATUS_OK);
    return s;
}

static bc_sampler_params plain(void) {
    bc_sampler_params p = bc_sampler_default_params();
    p.top_k = 0;
    p.seed = 1234;
    return p;
}

/* Draws N_DRAWS ids; counts[i] gets the frequency of id i. */
static void frequencies(bc_sampler *s, const float *logits, int n, double *freq) {
    for (int i = 0; i < n; i++) freq[i] = 0;
    for (int k = 0; k < N_DRAWS; k++) {
        int32_t id = bc_sampler_sample(s, logits);
        assert_true(id >= 0 && id < n);
        freq[id] += 1.0 / N_DRAWS;
    }
}

static void expect_near(double got, double want, const char *what) {
    if (fabs(got - want) > TOL) fail_msg("%s: frequency %.4f, expected %.4f", what, got, want);
}

static void test_defaults_are_hf(void **state) {
    (void)state;
    bc_sampler_params p = bc_sampler_default_params();
    assert_true(p.temperature == 1.0f && p.top_k == 50 && p.top_p == 1.0f && p.min_p == 0.0f &&
                p.repetition_penalty == 1.0f);
}

static void test_greedy_and_penalty(void **state) {
    (void)state;
    bc_sampler_params p = plain();
    p.temperature = 0;
    p.repetition_penalty = 2.0f;
    bc_sampler *s = make(p, 4);
    const float logits[4] = {2.0f, -2.0f, 1.5f, 0.5f};
    assert_int_equal(bc_sampler_sample(s, logits), 0);
    /* Penalized: id 0: 2 / 2 = 1 < 1.5, so id 2 wins; a negative logit is multiplied. */
    bc_sampler_accept(s, 0);
    bc_sampler_accept(s, 0); /* once per distinct id: not 2 / 4 */
    assert_int_equal(bc_sampler_sample(s, logits), 2);
    bc_sampler_accept(s, 2); /* now 1.0, 0.75, 0.5 and -2: id 0 again */
    assert_int_equal(bc_sampler_sample(s, logits), 0);
    bc_sampler_accept(s, 1); /* -2 * 2 = -4: still not chosen */
    assert_int_equal(bc_sampler_sample(s, logits), 0);
    bc_sampler_reset(s); /* forgets what it saw */
    assert_int_equal(bc_sampler_sample(s, logits), 0);
    bc_sampler_free(s);

    /* Penalty under temperature: -1 * 3 = -3 vs 0: P(id 1) = 1 / (1 + e^3). */
    p = plain();
    p.repetition_penalty = 3.0f;
    s = make(p, 2);
    const float l2[2] = {-1.0f, 0.0f};
    bc_sampler_accept(s, 0);
    double f[2];
    frequencies(s, l2, 2, f);
    expect_near(f[0], 1.0 / (1.0 + exp(3.0)), "penalized negative logit");
    bc_sampler_free(s);
}

/* OpenAI's presence/frequency penalties: over generated ids only, after the
 * repetition penalty. Expected values computed here from the definition. */
static void test_presence_frequency(void **state) {
    (void)state;
    bc_sampler_params p = plain();
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    bc_sampler *s = make(p, 3);
    const float logits[3] = {1.0f, 0.0f, 0.5f};
    bc_sampler_accept(s, 2); /* a prompt id: seen, but not penalized here */
    for (int i = 0; i < 3; i++) bc_sampler_accept_generated(s, 0);
    double want[3] = {1.0 - 0.5 - 0.25 * 3, 0.0, 0.5}, sum = 0;
    for (int i = 0; i < 3; i++) sum += want[i] = exp(want[i]);
    double f[3];
    frequencies(s, logits, 3, f);
    for (int i = 0; i < 3; i++) expect_near(f[i], want[i] / sum, "presence/frequency penalized");
    bc_sampler_reset(s); /* forgets the counts: id 0 most likely again */
    frequencies(s, logits, 3, f);
    expect_near(f[0], exp(1.0) / (exp(1.0) + 1.0 + exp(0.5)), "after reset");
    bc_sampler_free(s);

    /* Order: repetition penalty first (2 / 2 = 1), then presence (1 - 0.6 =
     * 0.4 < 0.5: id 2 wins). The other order would give (2 - 0.6) / 2 = 0.7. */
    p = plain();
    p.temperature = 0;
    p.repetition_penalty = 2.0f;
    p.presence_penalty = 0.6f;
    s = make(p, 3);
    const float l2[3] = {2.0f, -1.0f, 0.5f};
    bc_sampler_accept_generated(s, 0);
    assert_int_equal(bc_sampler_sample(s, l2), 2);
    bc_sampler_free(s);

    /* A negative penalty raises the logit; non-finite values are refused. */
    p = plain();
    p.temperature = 0;
    p.frequency_penalty = -1.0f;
    s = make(p, 2);
    const float l3[2] = {0.0f, 0.5f};
    bc_sampler_accept_generated(s, 0);
    assert_int_equal(bc_sampler_sample(s, l3), 0);
    bc_sampler_free(s);
    p.presence_penalty = NAN;
    assert_non_null(bc_sampler_params_check(p));
}

static void test_temperature(void **state) {
    (void)state;
    bc_sampler_params p = plain();
    p.temperature = 0.5f;
    bc_sampler *s = make(p, 2);
    const float logits[2] = {0.0f, 1.0f};
    double f[2];
    frequencies(s, logits, 2, f);
    expect_near(f[1], exp(2.0) / (1.0 + exp(2.0)), "temperature 0.5");
    bc_sampler_free(s);
}

/* logit_bias: added to the logits before everything else. Logits all 0 over
 * 4 ids with +ln 3 on id 2: p = 3/6 for id 2 and 1/6 for the others; -100
 * on id 0 then bans it (e^-100 of the mass): 3/5 and 1/5. Greedy follows the
 * biased arg-max; the penalties act on the biased logits (a repetition
 * penalty of 2 on a biased logit of 2: 1, so id 1 at 1.5 wins); a bad id or
 * bias is refused and changes nothing; n = 0 removes the biases. */
static void test_logit_bias(void **state) {
    (void)state;
    bc_sampler *s = make(plain(), 4);
    const float zeros[4] = {0, 0, 0, 0};
    const int32_t ids[2] = {2, 0};
    const float bias[2] = {(float)log(3.0), -100.0f};
    double f[4];
    assert_int_equal(bc_sampler_set_logit_bias(s, ids, bias, 1), BC_STATUS_OK);
    frequencies(s, zeros, 4, f);
    expect_near(f[2], 0.5, "bias ln 3");
    for (int i = 0; i < 4; i++)
        if (i != 2) expect_near(f[i], 1.0 / 6, "unbiased");
    assert_int_equal(bc_sampler_set_logit_bias(s, ids, bias, 2), BC_STATUS_OK);
    frequencies(s, zeros, 4, f);
    assert_true(f[0] == 0);
    expect_near(f[2], 0.6, "bias ln 3 with id 0 banned");
    expect_near(f[1], 0.2, "id 1 with id 0 banned");
    /* Refusals leave the biases as they were. */
    const int32_t bad_id[1] = {4};
    const float bad_bias[1] = {NAN};
    assert_int_equal(bc_sampler_set_logit_bias(s, bad_id, bias, 1), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(bc_sampler_set_logit_bias(s, ids, bad_bias, 1), BC_STATUS_ERROR_ARGUMENT);
    frequencies(s, zeros, 4, f);
    assert_true(f[0] == 0);
    assert_int_equal(bc_sampler_set_logit_bias(s, NULL, NULL, 0), BC_STATUS_OK);
    frequencies(s, zeros, 4, f);
    expect_near(f[0], 0.25, "biases removed");
    bc_sampler_free(s);

    bc_sampler_params p = plain();
    p.temperature = 0;
    s = make(p, 4);
    const float logits[4] = {3, 1.5f, 0, 0};
    const int32_t one[1] = {0};
    const float minus[1] = {-1.0f};
    assert_int_equal(bc_sampler_sample(s, logits), 0);
    assert_int_equal(bc_sampler_set_logit_bias(s, one, minus, 1), BC_STATUS_OK);
    assert_int_equal(bc_sampler_sample(s, logits), 0); /* 2 > 1.5 */
    bc_sampler_free(s);
    p.repetition_penalty = 2.0f;
    s = make(p, 4);
    assert_int_equal(bc_sampler_set_logit_bias(s, one, minus, 1), BC_STATUS_OK);
    bc_sampler_accept(s, 0);
    assert_int_equal(bc_sampler_sample(s, logits), 1); /* (3 - 1) / 2 = 1 < 1.5 */
    bc_sampler_free(s);
}

static void test_top_k(void **state) {
    (void)state;
    bc_sampler_params p = plain();
    p.top_k = 2;
    bc_sampler *s = make(p, 4);
    const float logits[4] = {1, 2, 4, 3};
    double f[4];
    frequencies(s, logits, 4, f);
    assert_true(f[0] == 0 && f[1] == 0);
    expect_near(f[2], exp(4.0) / (exp(4.0) + exp(3.0)), "top-k 2");
    bc_sampler_free(s);

    /* Ties with the k-th logit are kept, as HF's `scores < kth` rule does. */
    s = make(p, 4);
    const float tied[4] = {1, 3, 3, 3};
    frequencies(s, tied, 4, f);
    assert_true(f[0] == 0);
    for (int i = 1; i < 4; i++) expect_near(f[i], 1.0 / 3, "top-k ties");
    bc_sampler_free(s);
}

static void test_top_p(void **state) {
    (void)state;
    /* Probabilities 0.5, 0.3, 0.15, 0.05. Ascending cumulative: 0.05, 0.2, 0.5, 1. */
    const float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    double f[4];
    bc_sampler_params p = plain();
    p.top_p = 0.75f; /* drop cumulative <= 0.25: ids 3 and 2 */
    bc_sampler *s = make(p, 4);
    frequencies(s, logits, 4, f);
    assert_true(f[2] == 0 && f[3] == 0);
    expect_near(f[0], 0.5 / 0.8, "top-p 0.75");
    bc_sampler_free(s);

    p.top_p = 0.9f; /* drop cumulative <= 0.1: id 3 only */
    s = make(p, 4);
    frequencies(s, logits, 4, f);
    assert_true(f[3] == 0 && f[2] > 0);
    expect_near(f[2], 0.15 / 0.95, "top-p 0.9");
    bc_sampler_free(s);

    p.top_p = 0.01f; /* only the most likely */
    s = make(p, 4);
    frequencies(s, logits, 4, f);
    assert_true(f[0] == 1.0 || fabs(f[0] - 1.0) < 1e-9);
    bc_sampler_free(s);
}

/* A vocabulary too large to sort per token: four likely ids among 5,996
 * that share 0.001 of the probability. Top-p and min-p cut inside the most
 * likely (the sampler sorts only its head of 1024) or, for top-p 0.9995,
 * past it (the sampler sorts everything); the kept tokens' frequencies are
 * the hand-computed ones. 4000 draws: standard error at most 0.008, checked
 * within 0.04. */
static void test_top_p_large_vocab(void **state) {
    (void)state;
    enum { V = 6000, DRAWS = 4000 };
    static float logits[V];
    static const int32_t ids[4] = {4321, 7, 5999, 333};
    static const double probs[4] = {0.5, 0.3, 0.15, 0.049};
    for (int i = 0; i < V; i++) logits[i] = logf((float)(0.001 / (V - 4)));
    for (int k = 0; k < 4; k++) logits[ids[k]] = logf((float)probs[k]);
    struct {
        float top_p, min_p;
        double want[4]; /* frequency of ids[k] */
        const char *what;
    } cases[] = {
        {0.75f, 0, {0.5 / 0.8, 0.3 / 0.8, 0, 0}, "top-p 0.75 (cut in the head)"},
        {0.9f, 0, {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, "top-p 0.9 (cut in the head)"},
        {1.0f, 0.2f, {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, "min-p 0.2 (cut in the head)"},
        {0.9995f, 0, {0.5, 0.3, 0.15, 0.049}, "top-p 0.9995 (cut past the head)"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bc_sampler_params p = plain();
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        bc_sampler *s = make(p, V);
        double f[4] = {0};
        for (int d = 0; d < DRAWS; d++) {
            int32_t id = bc_sampler_sample(s, logits);
            assert_true(id >= 0 && id < V);
            for (int k = 0; k < 4; k++)
                if (id == ids[k]) f[k] += 1.0 / DRAWS;
        }
        for (int k = 0; k < 4; k++) {
            if (cases[c].want[k] == 0 && f[k] != 0) fail_msg("%s: id %d was drawn", cases[c].what, ids[k]);
            if (fabs(f[k] - cases[c].want[k]) > 0.04)
                fail_msg("%s: id %d frequency %.4f, expected %.4f", cases[c].what, ids[k], f[k], cases[c].want[k]);
        }
        bc_sampler_free(s);
    }
}

static void test_min_p(void **state) {
    (void)state;
    const float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    double f[4];
    bc_sampler_params p = plain();
    p.min_p = 0.4f; /* floor 0.2: keep 0.5 and 0.3 */
    bc_sampler *s = make(p, 4);
    frequencies(s, logits, 4, f);
    assert_true(f[2] == 0 && f[3] == 0);
    expect_near(f[1], 0.3 / 0.8, "min-p 0.4");
    bc_sampler_free(s);

    p.min_p = 0.25f; /* floor 0.125: keep three */
    s = make(p, 4);
    frequencies(s, logits, 4, f);
    assert_true(f[3] == 0 && f[2] > 0);
    bc_sampler_free(s);
}

static void test_chain_order(void **state) {
    (void)state;
    /* top-k 3 then top-p 0.7 over the renormalized three: 0.5/0.95, 0.3/0.95,
     * 0.15/0.95 = 0.526, 0.316, 0.158; ascending cumulative 0.158 <= 0.3 drops id 2. */
    const float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    double f[4];
    bc_sampler_params p = plain();
    p.top_k = 3;
    p.top_p = 0.7f;
    bc_sampler *s = make(p, 4);
    frequencies(s, logits, 4, f);
    assert_true(f[2] == 0 && f[3] == 0);
    expect_near(f[0], 0.5 / 0.8, "top-k then top-p");
    bc_sampler_free(s);
}

static void test_seed_reproducible(void **state) {
    (void)state;
    float logits[1000];
    for (int i = 0; i < 1000; i++) logits[i] = (float)sin(i * 0.37) * 3;
    bc_sampler_params p = plain();
    p.seed = 42;
    bc_sampler *a = make(p, 1000), *b = make(p, 1000);
    int32_t first[64];
    int same = 1;
    for (int i = 0; i < 64; i++) {
        first[i] = bc_sampler_sample(a, logits);
        same &= first[i] == bc_sampler_sample(b, logits);
    }
    assert_true(same);
    bc_sampler_reset(a); /* reset restarts from the seed */
    for (int i = 0; i < 64; i++) assert_int_equal(bc_sampler_sample(a, logits), first[i]);
    bc_sampler_free(b);
    p.seed = 43;
    b = make(p, 1000);
    int differ = 0;
    for (int i = 0; i < 64; i++) differ += bc_sampler_sample(b, logits) != first[i];
    assert_true(differ > 0);
    bc_sampler_free(a);
    bc_sampler_free(b);
}

static void test_bad_params(void **state) {
    (void)state;
    bc_sampler_params p = plain();
    bc_sampler *s = NULL;
    p.temperature = -1;
    assert_non_null(bc_sampler_params_check(p));
    assert_int_equal(bc_sampler_init(p, 10, &s), BC_STATUS_ERROR_ARGUMENT);
    assert_null(s);
    p = plain();
    p.top_p = 0;
    assert_non_null(bc_sampler_params_check(p));
    p = plain();
    p.top_p = NAN;
    assert_non_null(bc_sampler_params_check(p));
    p = plain();
    p.min_p = 1.5f;
    assert_non_null(bc_sampler_params_check(p));
    p = plain();
    p.repetition_penalty = 0;
    assert_non_null(bc_sampler_params_check(p));
    p = plain();
    p.top_k = -1;
    assert_non_null(bc_sampler_params_check(p));
    assert_null(bc_sampler_params_check(plain()));
}

/* ------------------------------------------------------------------------ */
/* Stop strings                                                             */
/* ------------------------------------------------------------------------ */

static bc_stop_matcher *matcher(const char *const *stops, size_t n) {
    bc_stop_matcher *m = NULL;
    char err[128];
    assert_int_equal(bc_stop_matcher_init(stops, n, &m, err, sizeof err), BC_STATUS_OK);
    return m;
}

/* Pushes text and checks what comes out. */
static bool push(bc_stop_matcher *m, const char *text, const char *want) {
    const char *out;
    size_t len;
    bool stopped = bc_stop_matcher_push(m, text, strlen(text), &out, &len);
    if (len != strlen(want) || memcmp(out, want, len) != 0)
        fail_msg("push '%s': released '%.*s', expected '%s'", text, (int)len, out, want);
    return stopped;
}

static void test_stop_strings(void **state) {
    (void)state;
    const char *const stops[] = {"\n\n", "END"};
    bc_stop_matcher *m = matcher(stops, 2);
    assert_false(push(m, "Hello", "Hello"));
    assert_false(push(m, " E", " "));  /* "E" may start END */
    assert_false(push(m, "N", ""));    /* "EN" too */
    assert_false(push(m, "X", "ENX")); /* not a stop after all */
    assert_false(push(m, "a\n", "a"));
    assert_true(push(m, "\nmore", "")); /* "\n\n": stop, drop the rest */
    assert_true(push(m, "anything", ""));
    bc_stop_matcher_reset(m);
    assert_true(push(m, "abcENDdef\n\n", "abc")); /* the earliest stop wins */
    bc_stop_matcher_reset(m);
    assert_false(push(m, "tail E", "tail "));
    const char *out;
    size_t len;
    bc_stop_matcher_flush(m, &out, &len); /* end of generation releases the hold */
    assert_int_equal(len, 1);
    assert_memory_equal(out, "E", 1);
    bc_stop_matcher_free(m);

    /* Multi-byte: whole characters are held and released. */
    const char *const zh[] = {"你好"};
    m = matcher(zh, 1);
    assert_false(push(m, "我你", "我"));
    assert_false(push(m, "们", "你们"));
    assert_true(push(m, "说你好吗", "说"));
    bc_stop_matcher_free(m);

    /* No stop strings: everything passes through. */
    m = matcher(NULL, 0);
    assert_false(push(m, "abc", "abc"));
    bc_stop_matcher_free(m);
}

static void test_bad_stop_strings(void **state) {
    (void)state;
    bc_stop_matcher *m = NULL;
    char err[128];
    const char *const empty[] = {"ok", ""};
    assert_int_equal(bc_stop_matcher_init(empty, 2, &m, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_null(m);
    assert_non_null(strstr(err, "stop string 2 is empty"));
    const char *const bad[] = {"\xe4\xbd"};
    assert_int_equal(bc_stop_matcher_init(bad, 1, &m, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(err, "not valid UTF-8"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_hf),
        cmocka_unit_test(test_greedy_and_penalty),
        cmocka_unit_test(test_presence_frequency),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_top_p_large_vocab),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_chain_order),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_bad_stop_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_generator.c - the generation step (bc_generator) against what its
 * parts and the documented rules say it must give, never against itself:
 *
 *   - the ids are those of a bare bc_sampler fed the same logits with the
 *     same seed (several generators stepped in turn, seeds apart);
 *   - the text, concatenated over the steps, is bc_tokenizer_decode() of the
 *     generated ids cut before the first occurrence of any stop string
 *     (found here by a plain search);
 *   - the ending: eos, a stop string, the limit (0 included), an explicit
 *     end that releases the held bytes (and may complete a stop string);
 *   - log-probabilities against a log-softmax computed here in long double,
 *     the top ids against a sort done here;
 *   - a grammar: the text is a whole match; a grammar that allows nothing
 *     fails the step until a reset.
 *
 * argv[1]: a tokenizer (models/default); the logits are made here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baichuan.h"

static const char *tok_path;
static bc_tokenizer *tok;
static int n_vocab; /* the tokenizer's */
static int32_t eos; /* the tokenizer's </s> */

#define MAX_STEPS 96

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* A row of logits that depends only on (seed, step): a few large values
 * over a noisy floor, so that draws vary but are not uniform. */
static void make_row(uint64_t seed, int step, float *row, int n) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + (uint64_t)step * 0xbf58476d1ce4e5b9ull + 1;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(x >> 11) * 0x1.0p-53;
        row[i] = (float)(4.0 * u * u * u * u - 1.0);
    }
}

/* The text of ids as the tokenizer decodes the whole sequence (malloc'd,
 * NUL-terminated). */
static char *decode(const int32_t *ids, size_t n, size_t *len) {
    size_t need = 0;
    bc_status st = bc_tokenizer_decode(tok, ids, n, NULL, 0, &need);
    assert_true(st == BC_STATUS_OK || st == BC_STATUS_ERROR_ARGUMENT);
    char *text = malloc(need + 1);
    assert_non_null(text);
    assert_int_equal(bc_tokenizer_decode(tok, ids, n, text, need + 1, len), BC_STATUS_OK);
    assert_int_equal(*len, need);
    return text;
}

/* Where the first of the stops first occurs in text (len when none). */
static size_t first_stop(const char *text, size_t len, const char *const *stops, size_t n_stops) {
    size_t first = len;
    for (size_t s = 0; s < n_stops; s++) {
        size_t k = strlen(stops[s]);
        for (size_t at = 0; at + k <= len && at < first; at++)
            if (memcmp(text + at, stops[s], k) == 0) {
                first = at;
                break;
            }
    }
    return first;
}

/* The start of the UTF-8 character that byte i is part of. */
static size_t char_start(const char *text, size_t i) {
    while (i > 0 && ((unsigned char)text[i] & 0xc0) == 0x80) i--;
    return i;
}

/* The start of the character after the one starting at i (len at the end). */
static size_t next_char(const char *text, size_t len, size_t i) {
    if (i < len) i++;
    while (i < len && ((unsigned char)text[i] & 0xc0) == 0x80) i++;
    return i;
}

/* What a run gave: the generated ids (eos not among them), the text of
 * every step and end, how it ended. */
typedef struct run {
    int32_t ids[MAX_STEPS];
    int n_ids;
    int32_t last_id; /* the last step's id (the eos id, or -1) */
    int n_steps;
    char text[8192];
    size_t len;
    bc_finish finish;
    int n_tail_steps; /* steps with a non-empty tail */
} run;

static void add_text(run *r, const char *text, size_t len) {
    assert_true(r->len + len < sizeof r->text);
    memcpy(r->text + r->len, text, len);
    r->len += len;
    r->text[r->len] = '\0';
}

/* Steps g over the rows of (seed, 0..) until it ends or max_steps pass;
 * then ends it explicitly if it has not ended. */
static void generate(bc_generator *g, uint64_t seed, int max_steps, run *r) {
    memset(r, 0, sizeof *r);
    float *row = malloc((size_t)n_vocab * sizeof *row);
    assert_non_null(row);
    for (int step = 0; step < max_steps && r->finish == BC_FINISH_NONE; step++) {
        make_row(seed, step, row, n_vocab);
        bc_generated out;
        assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_OK);
        r->last_id = out.id;
        r->n_steps++;
        if (out.id >= 0 && out.id != eos) r->ids[r->n_ids++] = out.id;
        add_text(r, out.text, out.text_len);
        if (out.finish == BC_FINISH_NONE) assert_int_equal(out.tail_len, 0);
        if (out.tail_len > 0) r->n_tail_steps++;
        add_text(r, out.tail, out.tail_len);
        r->finish = out.finish;
    }
    if (r->finish == BC_FINISH_NONE) {
        const char *tail;
        size_t len;
        r->finish = bc_generator_end(g, &tail, &len);
        add_text(r, tail, len);
    }
    assert_int_equal(bc_generator_n_generated(g), r->n_ids);
    free(row);
}

/* The documented rule: the text is the decoded ids cut before the first
 * stop string. */
static void expect_text(const run *r, const char *const *stops, size_t n_stops) {
    size_t len;
    char *want = decode(r->ids, (size_t)r->n_ids, &len);
    size_t cut = first_stop(want, len, stops, n_stops);
    if (r->len != cut || memcmp(r->text, want, cut) != 0)
        fail_msg("text '%s' (%zu bytes), expected '%.*s' (%zu bytes of '%s')", r->text, r->len, (int)cut, want, cut,
                 want);
    free(want);
}

static bc_generator *make(bc_generator_params p) {
    bc_generator *g = NULL;
    char err[256] = "";
    bc_status st = bc_generator_init(tok, p, &g, err, sizeof err);
    if (st != BC_STATUS_OK) fail_msg("bc_generator_init: %s", err);
    return g;
}

static bc_generator_params sampling(uint64_t seed) {
    bc_generator_params p = bc_generator_default_params();
    p.sampler.temperature = 0.9f;
    p.sampler.top_k = 200;
    p.sampler.top_p = 0.95f;
    p.sampler.repetition_penalty = 1.3f;
    p.sampler.presence_penalty = 0.5f;
    p.sampler.seed = seed;
    return p;
}

/* An id whose piece is of type want (the first from start on), or -1. */
static int32_t find_piece(bc_piece_type want, const char *text, int32_t start) {
    for (int32_t id = start; id < n_vocab; id++) {
        size_t len;
        bc_piece_type type;
        const char *piece = bc_tokenizer_piece(tok, id, &len, &type);
        if (type == want && (text == NULL || strcmp(piece, text) == 0)) return id;
    }
    return -1;
}

/* A row whose arg-max is id (for greedy steps). */
static void row_for(int32_t id, float *row) {
    for (int i = 0; i < n_vocab; i++) row[i] = (float)(i % 7) * 0.1f;
    row[id] = 10.0f;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_defaults(void **state) {
    (void)state;
    bc_generator_params p = bc_generator_default_params();
    bc_sampler_params s = bc_sampler_default_params();
    assert_true(p.sampler.temperature == s.temperature && p.sampler.top_k == s.top_k && p.sampler.top_p == s.top_p &&
                p.sampler.min_p == s.min_p && p.sampler.repetition_penalty == s.repetition_penalty &&
                p.sampler.presence_penalty == s.presence_penalty &&
                p.sampler.frequency_penalty == s.frequency_penalty && p.sampler.seed == s.seed);
    assert_true(p.n_vocab == 0 && p.eos_id == -1 && p.max_tokens == -1 && p.logprobs == -1 && p.n_bias == 0 &&
                p.n_stops == 0 && p.grammar == NULL);
}

/* Two generators stepped in turn (seeds apart, as a request's choices)
 * give the ids of two bare samplers fed the same rows: prompt recorded with
 * accept, generated ids with accept_generated, biases set. */
static void test_same_ids_as_sampler(void **state) {
    (void)state;
    const int32_t prompt[] = {5, 17, 17, 300, 42};
    const int32_t bias_ids[] = {7, 9};
    const float bias[] = {3.0f, -100.0f};
    enum { N = 2, STEPS = 64 };
    bc_generator *g[N];
    bc_sampler *s[N];
    for (int c = 0; c < N; c++) {
        bc_generator_params p = sampling(1000 + (uint64_t)c);
        p.bias_ids = bias_ids;
        p.bias = bias;
        p.n_bias = 2;
        g[c] = make(p);
        bc_generator_accept_prompt(g[c], prompt, 5);
        assert_int_equal(bc_sampler_init(p.sampler, n_vocab, &s[c]), BC_STATUS_OK);
        assert_int_equal(bc_sampler_set_logit_bias(s[c], bias_ids, bias, 2), BC_STATUS_OK);
        for (int i = 0; i < 5; i++) bc_sampler_accept(s[c], prompt[i]);
    }
    float *row = malloc((size_t)n_vocab * sizeof *row);
    assert_non_null(row);
    int differ = 0;
    for (int step = 0; step < STEPS; step++) {
        int32_t got[N];
        for (int c = 0; c < N; c++) {
            make_row(7, step, row, n_vocab);
            bc_generated out;
            assert_int_equal(bc_generator_step(g[c], row, &out), BC_STATUS_OK);
            assert_int_equal(out.finish, BC_FINISH_NONE);
            int32_t want = bc_sampler_sample(s[c], row);
            bc_sampler_accept_generated(s[c], want);
            if (out.id != want) fail_msg("choice %d step %d: id %d, the bare sampler drew %d", c, step, out.id, want);
            assert_int_not_equal(out.id, 9); /* biased away */
            got[c] = out.id;
        }
        differ += got[0] != got[1];
    }
    assert_true(differ > 0); /* the seeds do differ */
    for (int c = 0; c < N; c++) {
        assert_int_equal(bc_generator_n_generated(g[c]), STEPS);
        bc_generator_free(g[c]);
        bc_sampler_free(s[c]);
    }
    free(row);
}

/* Without stops the text is the whole decode; a reset gives the same run
 * again. */
static void test_text_and_reset(void **state) {
    (void)state;
    bc_generator_params p = sampling(42);
    p.max_tokens = 80;
    bc_generator *g = make(p);
    run *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    generate(g, 3, MAX_STEPS, a);
    assert_int_equal(a->finish, BC_FINISH_LENGTH);
    assert_int_equal(a->n_ids, 80);
    expect_text(a, NULL, 0);
    bc_generator_reset(g);
    generate(g, 3, MAX_STEPS, b);
    assert_int_equal(b->n_ids, a->n_ids);
    assert_memory_equal(b->ids, a->ids, sizeof a->ids[0] * (size_t)a->n_ids);
    assert_string_equal(b->text, a->text);
    free(a);
    free(b);
    bc_generator_free(g);
}

/* Stop strings taken from the text of a run without them: the run with
 * them draws the same ids until the text holds one, and its text is the
 * decode cut before the first. */
static void test_stop_strings(void **state) {
    (void)state;
    run *full = malloc(sizeof *full), *r = malloc(sizeof *r);
    int n_stopped = 0, n_runs = 0;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        bc_generator_params p = sampling(seed);
        p.max_tokens = 60;
        bc_generator *g = make(p);
        generate(g, seed, MAX_STEPS, full);
        bc_generator_free(g);
        expect_text(full, NULL, 0);
        if (full->len < 8) continue;

        /* Two characters from the middle, and the last character with
         * bytes that never follow (held at the end, then released). */
        size_t at = char_start(full->text, full->len / 2);
        size_t end = next_char(full->text, full->len, next_char(full->text, full->len, at));
        char mid[32], last[32];
        snprintf(mid, sizeof mid, "%.*s", (int)(end - at), full->text + at);
        size_t l = char_start(full->text, full->len - 1);
        snprintf(last, sizeof last, "%.*s\x01\x02\x03", (int)(full->len - l), full->text + l);
        n_runs++;

        const char *const stop_sets[][3] = {{mid, NULL, NULL}, {"\x01never", last, mid}, {last, NULL, NULL}};
        const size_t n_set[] = {1, 3, 1};
        for (int k = 0; k < 3; k++) {
            p.stops = stop_sets[k];
            p.n_stops = n_set[k];
            g = make(p);
            generate(g, seed, MAX_STEPS, r);
            bc_generator_free(g);
            expect_text(r, p.stops, p.n_stops);
            assert_true(r->n_ids <= full->n_ids);
            assert_memory_equal(r->ids, full->ids, sizeof r->ids[0] * (size_t)r->n_ids);
            size_t dlen;
            char *d = decode(r->ids, (size_t)r->n_ids, &dlen);
            bool has_stop = first_stop(d, dlen, p.stops, p.n_stops) < dlen;
            free(d);
            assert_int_equal(r->finish, has_stop ? BC_FINISH_STOP : BC_FINISH_LENGTH);
            n_stopped += has_stop;
            if (k == 2) { /* the last character was held back to the end, then released */
                assert_int_equal(r->finish, BC_FINISH_LENGTH);
                assert_int_equal(r->n_tail_steps, 1);
                assert_string_equal(r->text, full->text);
            }
        }
    }
    assert_true(n_runs >= 10);
    assert_int_equal(n_stopped, 2 * n_runs); /* the stops from the middle did stop the runs */
    free(full);
    free(r);
}

/* Greedy steps onto chosen ids: a byte piece that starts a character,
 * then eos. The eos step ends the text, releasing the unfinished byte as
 * U+FFFD, as the decode of the ids has it; the eos id is not counted. */
static void test_eos(void **state) {
    (void)state;
    int32_t e4 = find_piece(BC_PIECE_TYPE_BYTE, "<0xE4>", 0);
    int32_t word = find_piece(BC_PIECE_TYPE_NORMAL, NULL, 100);
    assert_true(e4 >= 0 && word >= 0);
    bc_generator_params p = bc_generator_default_params();
    p.sampler.temperature = 0;
    p.eos_id = eos;
    bc_generator *g = make(p);
    float *row = malloc((size_t)n_vocab * sizeof *row);
    const int32_t ids[] = {word, word, e4};
    char text[256] = "";
    size_t len = 0;
    for (int i = 0; i < 4; i++) {
        row_for(i < 3 ? ids[i] : eos, row);
        bc_generated out;
        assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_OK);
        assert_int_equal(out.id, i < 3 ? ids[i] : eos);
        assert_int_equal(out.finish, i < 3 ? BC_FINISH_NONE : BC_FINISH_EOS);
        memcpy(text + len, out.text, out.text_len);
        len += out.text_len;
        if (i == 2) assert_int_equal(out.text_len, 0); /* the byte is held */
        if (i == 3) assert_int_equal(out.text_len, 0); /* eos adds no text... */
        memcpy(text + len, out.tail, out.tail_len);    /* ...but releases the byte */
        len += out.tail_len;
    }
    assert_int_equal(bc_generator_n_generated(g), 3);
    size_t want_len;
    char *want = decode(ids, 3, &want_len);
    assert_int_equal(len, want_len);
    assert_memory_equal(text, want, len);
    assert_memory_equal(text + len - 3, "\xef\xbf\xbd", 3);
    free(want);

    /* Another step on an ended text is refused; a reset starts over. */
    bc_generated out;
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_ERROR_ARGUMENT);
    assert_true(strlen(bc_generator_error(g)) > 0);
    const char *tail;
    size_t tail_len;
    assert_int_equal(bc_generator_end(g, &tail, &tail_len), BC_FINISH_EOS); /* ended already: nothing more */
    assert_int_equal(tail_len, 0);
    bc_generator_reset(g);
    row_for(word, row);
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_OK);
    assert_int_equal(out.id, word);
    free(row);
    bc_generator_free(g);
}

/* The limit: the k-th id ends the text; a limit of 0 ends it before any
 * draw (the logits are not read); the limit is set again per text. */
static void test_limit(void **state) {
    (void)state;
    bc_generator_params p = sampling(5);
    p.max_tokens = 7;
    bc_generator *g = make(p);
    run *r = malloc(sizeof *r);
    generate(g, 11, MAX_STEPS, r);
    assert_int_equal(r->finish, BC_FINISH_LENGTH);
    assert_int_equal(r->n_ids, 7);
    assert_int_equal(r->n_steps, 7); /* the 7th id ended it: no step drew nothing */
    assert_int_equal(r->last_id, r->ids[6]);
    expect_text(r, NULL, 0);

    bc_generator_reset(g);
    bc_generator_set_max_tokens(g, 0);
    bc_generated out;
    assert_int_equal(bc_generator_step(g, NULL, &out), BC_STATUS_OK);
    assert_int_equal(out.finish, BC_FINISH_LENGTH);
    assert_int_equal(out.id, -1);
    assert_int_equal(out.text_len + out.tail_len, 0);
    assert_int_equal(bc_generator_n_generated(g), 0);

    bc_generator_reset(g);
    bc_generator_set_max_tokens(g, 1);
    generate(g, 11, MAX_STEPS, r);
    assert_int_equal(r->finish, BC_FINISH_LENGTH);
    assert_int_equal(r->n_ids, 1);
    assert_int_equal(r->n_steps, 1);

    bc_generator_reset(g);
    bc_generator_set_max_tokens(g, -1); /* no limit: the caller ends it */
    generate(g, 11, 30, r);
    assert_int_equal(r->n_ids, 30);
    assert_int_equal(r->finish, BC_FINISH_ENDED);
    expect_text(r, NULL, 0);
    free(r);
    bc_generator_free(g);
}

/* An explicit end releases the held bytes: an unfinished character (as
 * U+FFFD) and a tail that could still have become a stop string; when that
 * release completes a stop string the text ends before it. */
static void test_end(void **state) {
    (void)state;
    int32_t e4 = find_piece(BC_PIECE_TYPE_BYTE, "<0xE4>", 0);
    int32_t word = find_piece(BC_PIECE_TYPE_NORMAL, NULL, 100);
    assert_true(e4 >= 0 && word >= 0);
    size_t wlen;
    char *wtext = decode(&word, 1, &wlen);
    char held_stop[64];
    snprintf(held_stop, sizeof held_stop, "%s\x01", wtext); /* word's text is held as its prefix */
    const char *const stops[][1] = {{held_stop}, {"\xef\xbf\xbd"}};
    const int32_t ids[][2] = {{word, e4}, {word, e4}};
    for (int k = 0; k < 2; k++) {
        bc_generator_params p = bc_generator_default_params();
        p.sampler.temperature = 0;
        p.stops = stops[k];
        p.n_stops = 1;
        bc_generator *g = make(p);
        float *row = malloc((size_t)n_vocab * sizeof *row);
        char text[256];
        size_t len = 0;
        for (int i = 0; i < 2; i++) {
            row_for(ids[k][i], row);
            bc_generated out;
            assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_OK);
            assert_int_equal(out.finish, BC_FINISH_NONE);
            memcpy(text + len, out.text, out.text_len);
            len += out.text_len;
        }
        if (k == 0) assert_int_equal(len, 0); /* everything held */
        const char *tail;
        size_t tail_len;
        bc_finish f = bc_generator_end(g, &tail, &tail_len);
        memcpy(text + len, tail, tail_len);
        len += tail_len;
        size_t want_len;
        char *want = decode(ids[k], 2, &want_len);
        size_t cut = first_stop(want, want_len, stops[k], 1);
        assert_int_equal(f, cut < want_len ? BC_FINISH_STOP : BC_FINISH_ENDED);
        assert_int_equal(f, k == 0 ? BC_FINISH_ENDED : BC_FINISH_STOP);
        assert_int_equal(len, cut);
        assert_memory_equal(text, want, cut);
        assert_int_equal(bc_generator_end(g, &tail, &tail_len), f); /* once */
        assert_int_equal(tail_len, 0);
        free(want);
        free(row);
        bc_generator_free(g);
    }
    free(wtext);
}

/* Log-probabilities of the raw logits, against a log-softmax in long
 * double; the top ids against a sort by (logit desc, id asc). The rows
 * have ties (values on a coarse grid) and the draws are biased and
 * penalized, which the log-probabilities do not see. */
static const float *sort_row;
static int by_logit_then_id(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (sort_row[x] != sort_row[y]) return sort_row[x] > sort_row[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static void test_logprobs(void **state) {
    (void)state;
    const int ks[] = {0, 1, 5, BC_MAX_TOP_LOGPROBS};
    float *row = malloc((size_t)n_vocab * sizeof *row);
    int32_t *order = malloc((size_t)n_vocab * sizeof *order);
    const int32_t bias_ids[] = {3};
    const float bias[] = {50.0f};
    for (int ki = 0; ki < 4; ki++) {
        bc_generator_params p = sampling(9);
        p.logprobs = ks[ki];
        p.n_vocab = n_vocab - 1; /* the last id is outside */
        p.bias_ids = bias_ids;
        p.bias = bias;
        p.n_bias = 1;
        bc_generator *g = make(p);
        const int V = p.n_vocab;
        for (int step = 0; step < 12; step++) {
            make_row(100 + (uint64_t)step, step, row, n_vocab);
            for (int i = 0; i < n_vocab; i++) row[i] = roundf(row[i] * 4) * 0.5f; /* ties */
            row[n_vocab - 1] = 1000.0f;                                           /* outside: not in the softmax */
            bc_generated out;
            assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_OK);
            long double max = row[0], sum = 0;
            for (int i = 1; i < V; i++) max = row[i] > max ? row[i] : max;
            for (int i = 0; i < V; i++) sum += expl((long double)row[i] - max);
            long double lse = max + logl(sum);
            assert_true(fabsl((long double)out.logprob - ((long double)row[out.id] - lse)) < 1e-9L);
            for (int i = 0; i < V; i++) order[i] = i;
            sort_row = row;
            qsort(order, (size_t)V, sizeof *order, by_logit_then_id);
            assert_int_equal(out.n_top, ks[ki]);
            for (int j = 0; j < out.n_top; j++) {
                if (out.top[j].id != order[j])
                    fail_msg("k %d step %d: top[%d] is id %d, expected %d", ks[ki], step, j, out.top[j].id, order[j]);
                assert_true(fabsl((long double)out.top[j].logprob - ((long double)row[order[j]] - lse)) < 1e-9L);
            }
        }
        bc_generator_free(g);
    }

    /* Off: nothing. The eos step: nothing either (it is not part of the
     * output). */
    bc_generator_params p = bc_generator_default_params();
    p.sampler.temperature = 0;
    p.eos_id = eos;
    bc_generator *g = make(p);
    row_for(eos, row);
    bc_generated out;
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_OK);
    assert_true(out.finish == BC_FINISH_EOS && out.n_top == 0 && out.logprob == 0);
    bc_generator_free(g);
    p.logprobs = 3;
    g = make(p);
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_OK);
    assert_true(out.finish == BC_FINISH_EOS && out.n_top == 0 && out.logprob == 0);
    bc_generator_free(g);
    free(order);
    free(row);
}

/* A NaN logit (a broken model) does not order with `>`: the top ids are
 * those of repeated selection, the first id no unpicked id exceeds. */
static void test_logprobs_nan(void **state) {
    (void)state;
    float *row = malloc((size_t)n_vocab * sizeof *row);
    for (int i = 0; i < n_vocab; i++) row[i] = (float)(i % 13);
    row[0] = NAN;
    row[500] = 20.0f;
    row[777] = NAN;
    bc_generator_params p = bc_generator_default_params();
    p.sampler.temperature = 0;
    p.logprobs = 6;
    bc_generator *g = make(p);
    bc_generated out;
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_OK);
    int32_t want[6];
    for (int j = 0; j < 6; j++) {
        int32_t best = -1;
        for (int32_t i = 0; i < n_vocab; i++) {
            bool used = false;
            for (int q = 0; q < j; q++) used |= want[q] == i;
            if (used) continue;
            if (best < 0 || row[i] > row[best]) best = i;
        }
        want[j] = best;
    }
    assert_int_equal(out.n_top, 6);
    for (int j = 0; j < 6; j++) assert_int_equal(out.top[j].id, want[j]);
    bc_generator_free(g);
    free(row);
}

/* Under a grammar the text is a whole match and ends with eos; a grammar
 * whose text no id in [0, n_vocab) can continue fails the step (and every
 * later one) until a reset. */
static void test_grammar(void **state) {
    (void)state;
    static const char gbnf[] = "root ::= \"yes\" | \"no\" | \"maybe so\"\n";
    bc_grammar *gr = NULL;
    char err[256];
    assert_int_equal(bc_grammar_init_gbnf(tok, gbnf, strlen(gbnf), &gr, err, sizeof err), BC_STATUS_OK);
    for (uint64_t seed = 1; seed <= 6; seed++) {
        bc_generator_params p = sampling(seed);
        p.grammar = gr;
        p.eos_id = eos;
        bc_generator *g = make(p);
        run *r = malloc(sizeof *r);
        generate(g, seed, MAX_STEPS, r);
        assert_int_equal(r->finish, BC_FINISH_EOS);
        assert_int_equal(r->last_id, eos);
        expect_text(r, NULL, 0);
        bool prefix = false, complete = false;
        bc_grammar_match(gr, r->text, r->len, &prefix, &complete);
        if (!complete) fail_msg("'%s' is not a whole match", r->text);
        free(r);
        bc_generator_free(g);
    }

    /* Only the control pieces <unk>, <s>, </s> may be drawn: none is allowed. */
    bc_generator_params p = sampling(1);
    p.grammar = gr;
    p.eos_id = eos;
    p.n_vocab = 3;
    bc_generator *g = make(p);
    float row[3] = {0, 1, 2};
    bc_generated out;
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(out.id, -1);
    assert_true(strstr(bc_generator_error(g), "grammar") != NULL);
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_ERROR_ARGUMENT); /* failed until reset */
    const char *tail;
    size_t tail_len;
    assert_int_equal(bc_generator_end(g, &tail, &tail_len), BC_FINISH_NONE);
    bc_generator_reset(g);
    assert_string_equal(bc_generator_error(g), "");
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_ERROR_ARGUMENT);
    bc_generator_free(g);

    /* A grammar without a tokenizer (match only) is refused. */
    bc_grammar *bare = NULL;
    assert_int_equal(bc_grammar_init_gbnf(NULL, gbnf, strlen(gbnf), &bare, err, sizeof err), BC_STATUS_OK);
    p = bc_generator_default_params();
    p.grammar = bare;
    bc_generator *none = NULL;
    assert_int_equal(bc_generator_init(tok, p, &none, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_null(none);
    assert_true(strstr(err, "tokenizer") != NULL);
    bc_grammar_free(bare);
    bc_grammar_free(gr);
}

/* A grammar whose text nests three rules per "(": forced to keep opening,
 * the matcher passes its documented limit of 2,048 rules open inside each
 * other near the 683rd "(" (2,048 / 3). The step must then fail, naming the
 * limit, rather than let the text leave the grammar's language; the sampler
 * alone says the same through bc_sampler_accept_generated. */
static void test_grammar_depth_limit(void **state) {
    (void)state;
    static const char gbnf[] = "root ::= \"(\" a \")\" | \"x\"\n"
                               "a ::= b \")\" | \"y\"\n"
                               "b ::= root \")\" | \"z\"\n";
    bc_grammar *gr = NULL;
    char err[256];
    assert_int_equal(bc_grammar_init_gbnf(tok, gbnf, strlen(gbnf), &gr, err, sizeof err), BC_STATUS_OK);
    int32_t open = find_piece(BC_PIECE_TYPE_NORMAL, "(", 0);
    assert_true(open >= 0);
    float *row = malloc((size_t)n_vocab * sizeof *row);
    assert_non_null(row);
    row_for(open, row);

    bc_generator_params p = bc_generator_default_params();
    p.sampler.temperature = 0.0f;
    p.grammar = gr;
    p.eos_id = eos;
    bc_generator *g = make(p);
    bc_generated out;
    bc_status st = BC_STATUS_OK;
    int n_open = 0;
    while (n_open < 2048 && (st = bc_generator_step(g, row, &out)) == BC_STATUS_OK) {
        assert_int_equal(out.id, open);
        assert_int_equal(out.finish, BC_FINISH_NONE);
        n_open++;
    }
    assert_int_equal(st, BC_STATUS_ERROR_MEMORY);
    if (n_open < 2048 / 3 - 4 || n_open > 2048 / 3 + 4) fail_msg("failed after %d '(', expected about 683", n_open);
    assert_true(strstr(bc_generator_error(g), "limit") != NULL);
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_ERROR_MEMORY); /* failed until reset */
    bc_generator_reset(g);
    assert_int_equal(bc_generator_step(g, row, &out), BC_STATUS_OK);
    assert_int_equal(out.id, open);
    bc_generator_free(g);

    /* The sampler on its own. */
    bc_sampler_params sp = bc_sampler_default_params();
    sp.temperature = 0.0f;
    bc_sampler *s = NULL;
    bc_grammar_matcher *m = NULL;
    assert_int_equal(bc_sampler_init(sp, n_vocab, &s), BC_STATUS_OK);
    assert_int_equal(bc_grammar_matcher_init(gr, &m), BC_STATUS_OK);
    bc_sampler_set_grammar(s, m);
    int n = 0;
    for (;; n++) {
        int32_t id = bc_sampler_sample(s, row);
        assert_int_equal(id, open);
        if ((st = bc_sampler_accept_generated(s, id)) != BC_STATUS_OK) break;
        assert_true(n < 2048);
    }
    assert_int_equal(st, BC_STATUS_ERROR_MEMORY);
    assert_int_equal(n, n_open);
    assert_int_equal(bc_sampler_sample(s, row), -1); /* no draw off the grammar */
    bc_sampler_reset(s);
    assert_int_equal(bc_sampler_sample(s, row), open);
    bc_sampler_free(s);
    bc_grammar_matcher_free(m);
    free(row);
    bc_grammar_free(gr);
}

static void test_bad_params(void **state) {
    (void)state;
    char err[256];
    bc_generator *g = NULL;
    bc_generator_params p = bc_generator_default_params();
    p.logprobs = BC_MAX_TOP_LOGPROBS + 1;
    assert_int_equal(bc_generator_init(tok, p, &g, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_null(g);
    assert_non_null(strstr(err, "logprobs"));
    p = bc_generator_default_params();
    p.n_vocab = n_vocab + 1;
    assert_int_equal(bc_generator_init(tok, p, &g, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(err, "n_vocab"));
    p = bc_generator_default_params();
    p.sampler.top_p = 0;
    assert_int_equal(bc_generator_init(tok, p, &g, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_string_equal(err, bc_sampler_params_check(p.sampler));
    p = bc_generator_default_params();
    const char *const stops[] = {"ok", ""};
    p.stops = stops;
    p.n_stops = 2;
    assert_int_equal(bc_generator_init(tok, p, &g, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_string_equal(err, "stop string 2 is empty");
    p = bc_generator_default_params();
    const int32_t bad_id[] = {n_vocab};
    const float one[] = {1.0f};
    p.bias_ids = bad_id;
    p.bias = one;
    p.n_bias = 1;
    assert_int_equal(bc_generator_init(tok, p, &g, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(err, "bias"));
    assert_null(g);
}

static int setup(void **state) {
    (void)state;
    char err[512];
    if (bc_tokenizer_load(tok_path, &tok, err, sizeof err) != BC_STATUS_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    bc_tokenizer_info ti;
    bc_tokenizer_get_info(tok, &ti);
    n_vocab = ti.n_vocab;
    eos = ti.eos_id;
    return eos >= 0 && n_vocab > 1000 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    bc_tokenizer_free(tok);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_generator TOKENIZER (a model directory or tokenizer.model)\n");
        return 2;
    }
    tok_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_same_ids_as_sampler),
        cmocka_unit_test(test_text_and_reset),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_eos),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_end),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_logprobs_nan),
        cmocka_unit_test(test_grammar),
        cmocka_unit_test(test_grammar_depth_limit),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

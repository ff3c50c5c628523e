/*
 * cmd_bench.c - baichuan bench: prompt processing and generation speed, like
 * llama-bench, and batched generation, like llama-batched-bench.
 *
 * -p, -n and -d take comma-separated lists; each -p or -n value is one test
 * (0 skips) at each -d depth D (default 0), as in llama-bench:
 *   pp<n>  one forward pass over n prompt tokens (one batch, logits for the
 *          last) at positions D..D+n-1: tokens/s = n / seconds
 *   tg<n>  n single-token forward passes from position D, logits for each:
 *          tokens/s = n / seconds
 *   bd<N>  (--batch-decode N; one test per -n value n) N sequences each get a
 *          16-token prompt at positions D..D+15, prefilled together in one
 *          decode call that is not timed; then n steps, each one decode call
 *          with one entry per sequence, logits for all: tokens/s = N * n /
 *          seconds of the steps. At depth 0 this is llama-batched-bench's
 *          S_TG for -npp 16 -ntg n -npl N (prompts not shared): pl*tg / t_tg,
 *          where t_tg times the generation steps only (its prompt time is
 *          T_PP, apart).
 * A test at depth D > 0 is named as llama-bench names it, "pp512 @ d4096".
 * The tests run depth by depth, in llama-bench's order (each depth's pp,
 * then tg, then bd). For each depth the sequences' caches are filled once
 * with D positions of random ids (decode calls of n_batch entries, never
 * timed); each run then starts by dropping the positions past D that the
 * run before it left (bc_context_seq_truncate, not timed). Each depth's
 * tests run `repetitions` times after an untimed warm-up run of each,
 * taking turns within each repetition; the figures are the mean and the
 * sample standard deviation of the per-run tokens/s.
 * --profile turns on the context's per-op timing (bc_context_profile) and
 * shows, for each test, its figures summed over the timed runs, per token.
 * --json prints one object: the model's fields; for each kind (pp, tg, bd)
 * that has exactly one test, its figures as <kind>_tokens_per_s,
 * <kind>_tokens_per_s_stddev and <kind>_samples (null and [] otherwise, as
 * before -p and -n took lists), n_depth (the one -d value, null with
 * several); and `tests`, one object per test, with its n_depth.
 * Token ids are seeded random ids of the vocabulary (no tokenizer needed).
 */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char help[] =
    "usage: baichuan bench -m MODEL [-p 128] [-n 32] [-d 0] [-t N] [-r 3] [--batch-decode N] [--profile]\n"
    "                      [--json]\n"
    "\n"
    "Measures prompt processing (pp) and text generation (tg) speed in tokens/s:\n"
    "mean and standard deviation over repetitions, with the model's size, the\n"
    "instruction-set level the kernels ran at (avx512, avx2 or c) and the\n"
    "parameter count.\n"
    "\n"
    "options:\n"
    "  -p, --n-prompt N,...     prompt tokens per pp run; each value is a test (default 128;\n"
    "                           0 skips; repeatable, the values add up)\n"
    "  -n, --n-gen N,...        generated tokens per tg run; each value is a test (default 32;\n"
    "                           0 skips; repeatable)\n"
    "  -d, --n-depth N,...      tokens in the cache before each test: every pp and tg test\n"
    "                           (and bd) runs at each depth, named e.g. 'pp512 @ d4096'\n"
    "                           (default 0; repeatable). The cache is filled once per depth,\n"
    "                           not timed; depth + the test's tokens must fit the model's\n"
    "                           context\n"
    "  -r, --repetitions N      timed runs of each test (default 3)\n"
    "      --batch-decode N     also a bd<N> test for each -n value: N sequences with a\n"
    "                           16-token prompt each (not timed) generate together, one\n"
    "                           decode call of N entries per step; reports N * n / seconds\n"
    "                           (llama-batched-bench's S_TG)\n"
    "      --profile            time each kind of step of the forward pass and print, per\n"
    "                           test, ms per token and % of the time in the decode calls\n"
    "      --json               print one JSON object instead of the table\n"
    "      --bf16-act           bf16 weights: bf16 activations and the CPU's bf16 dot\n"
    "                           products (faster, about 1e-3 less exact; see README)\n"
    "      --lora PATH[:SCALE]  a PEFT LoRA adapter, applied unmerged to every sequence\n"
    "                           (repeatable: all of them on each sequence, up to 8)\n"
    "      --lora-per-seq       with several --lora: sequence s runs under adapter s mod\n"
    "                           their number alone (a batch of different tenants' adapters)\n";

enum {
    MAX_LIST = 64,        /* values in -p, -n or -d */
    MAX_TOKENS = 1 << 20, /* per value */
    BD_PROMPT = 16,       /* prompt tokens per sequence of a bd test (llama-batched-bench -npp 16) */
    FILL_BATCH = 512,     /* least entries per decode call that fills a depth (the library's default n_batch) */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct stats {
    double mean, stddev;
} stats;

static stats stats_of(const double *x, int n) {
    stats s = {0.0, 0.0};
    for (int i = 0; i < n; i++) s.mean += x[i];
    s.mean /= n;
    if (n > 1) {
        for (int i = 0; i < n; i++) s.stddev += (x[i] - s.mean) * (x[i] - s.mean);
        s.stddev = sqrt(s.stddev / (n - 1));
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct int_list {
    int n;
    int v[MAX_LIST];
} int_list;

/* Appends the comma-separated values of s, each in [0, MAX_TOKENS], to *l.
 * 0, or 1 after printing an error naming opt and the list. */
static int parse_list(const char *s, const char *opt, int_list *l) {
    for (const char *p = s;;) {
        size_t len = strcspn(p, ",");
        if (len == 0) return cli_error("%s: empty value in '%s'", opt, s);
        long v = 0;
        bool ok = true;
        for (size_t i = 0; ok && i < len; i++)
            ok = p[i] >= '0' && p[i] <= '9' && (v = v * 10 + (p[i] - '0')) <= MAX_TOKENS;
        if (!ok && len == strlen(s)) return cli_error("%s: '%s' is not an integer in [0, %d]", opt, s, MAX_TOKENS);
        if (!ok) return cli_error("%s: '%.*s' in '%s' is not an integer in [0, %d]", opt, (int)len, p, s, MAX_TOKENS);
        if (l->n == MAX_LIST) return cli_error("%s: more than %d values", opt, MAX_LIST);
        l->v[l->n++] = (int)v;
        if (p[len] == '\0') return 0;
        p += len + 1;
    }
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

typedef enum test_kind { TEST_PP, TEST_TG, TEST_BD } test_kind;

typedef struct bench_test {
    test_kind kind;
    int n_prompt;    /* prompt tokens per sequence (pp; bd: BD_PROMPT, not timed) */
    int n_gen;       /* generated tokens per sequence (tg, bd) */
    int n_seq;       /* sequences that generate together (bd); 1 otherwise */
    int n_depth;     /* positions each sequence holds before the run (-d) */
    char name[48];   /* pp128, tg32, bd4 (bd4x32 when -n has several values), then " @ d4096" at depth > 0 */
    double *samples; /* (repetitions) tokens/s of each timed run */
    double seconds;  /* timed seconds, summed over the runs */
    bc_profile prof; /* summed over the timed runs (--profile) */
} bench_test;

/* Appends a test of `value` tokens (prompt for pp, generated for tg and bd)
 * at depth n_depth; a bd test is named bd<N>x<n> when several_bd. */
static void add_test(bench_test *tests, int *n_tests, test_kind kind, int value, int n_seq, int n_depth,
                     bool several_bd) {
    bench_test *t = &tests[(*n_tests)++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->n_seq = n_seq;
    t->n_depth = n_depth;
    t->n_prompt = kind == TEST_PP ? value : kind == TEST_BD ? BD_PROMPT : 0;
    t->n_gen = kind == TEST_PP ? 0 : value;
    int len;
    if (kind == TEST_PP)
        len = snprintf(t->name, sizeof t->name, "pp%d", value);
    else if (kind == TEST_TG)
        len = snprintf(t->name, sizeof t->name, "tg%d", value);
    else if (several_bd) /* bd4x32, bd4x64: the names tell them apart */
        len = snprintf(t->name, sizeof t->name, "bd%dx%d", n_seq, value);
    else
        len = snprintf(t->name, sizeof t->name, "bd%d", n_seq);
    if (n_depth > 0) snprintf(t->name + len, sizeof t->name - (size_t)len, " @ d%d", n_depth);
}

/* Tokens one timed run counts. */
static int test_tokens(const bench_test *t) { return t->kind == TEST_PP ? t->n_prompt : t->n_seq * t->n_gen; }

/* Positions a test's sequences reach: its depth, then its own tokens. */
static int test_positions(const bench_test *t) { return t->n_depth + t->n_prompt + t->n_gen; }

/* The ids fed to the model: ids[i % n] for the i-th entry. */
typedef struct token_ids {
    const int32_t *ids;
    int n;
} token_ids;

/* Fills sequence seq with positions [0, n_depth), ids from ids[first], in
 * decode calls of n_batch entries. Not timed: the profile is reset before
 * each timed part. */
static bc_status fill_depth(bc_context *ctx, bc_batch_entry *batch, int n_batch, token_ids tok, int seq, int n_depth,
                            int first) {
    bc_status st = bc_context_seq_truncate(ctx, seq, 0);
    for (int pos = 0; pos < n_depth && st == BC_STATUS_OK; pos += n_batch) {
        int n = n_depth - pos < n_batch ? n_depth - pos : n_batch;
        for (int i = 0; i < n; i++)
            batch[i] = (bc_batch_entry){seq, pos + i, tok.ids[(first + pos + i) % tok.n], i == n - 1};
        st = bc_context_decode(ctx, batch, n);
    }
    return st;
}

/* Seconds for one pp run of n tokens after the d positions of sequence 0
 * (dropping what an earlier run left past them); < 0 on error. */
static double run_pp(bc_context *ctx, bc_batch_entry *batch, token_ids tok, int d, int n) {
    if (bc_context_seq_truncate(ctx, 0, d) != BC_STATUS_OK) return -1.0;
    for (int i = 0; i < n; i++) batch[i] = (bc_batch_entry){0, d + i, tok.ids[(d + i) % tok.n], i == n - 1};
    bc_context_profile_reset(ctx);
    double t0 = now_s();
    if (bc_context_decode(ctx, batch, n) != BC_STATUS_OK) return -1.0;
    return now_s() - t0;
}

/* Seconds for n single-token passes after the d positions of sequence 0. */
static double run_tg(bc_context *ctx, token_ids tok, int d, int n) {
    if (bc_context_seq_truncate(ctx, 0, d) != BC_STATUS_OK) return -1.0;
    bc_context_profile_reset(ctx);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        bc_batch_entry e = {0, d + i, tok.ids[(d + i) % tok.n], true};
        if (bc_context_decode(ctx, &e, 1) != BC_STATUS_OK) return -1.0;
    }
    return now_s() - t0;
}

/* Seconds for the n_gen steps of n_seq sequences after their prompts, as
 * llama-batched-bench runs them: every prompt (after the d positions each
 * sequence holds) in one decode call (logits for its last entry only; not
 * timed), then per step one entry per sequence. */
static double run_bd(bc_context *ctx, bc_batch_entry *batch, token_ids tok, int d, int n_seq, int n_gen) {
    int k = 0;
    for (int s = 0; s < n_seq; s++) {
        if (bc_context_seq_truncate(ctx, s, d) != BC_STATUS_OK) return -1.0;
        for (int i = 0; i < BD_PROMPT; i++, k++) batch[k] = (bc_batch_entry){s, d + i, tok.ids[k % tok.n], false};
    }
    batch[k - 1].logits = true;
    if (bc_context_decode(ctx, batch, k) != BC_STATUS_OK) return -1.0;
    bc_context_profile_reset(ctx);
    double t0 = now_s();
    for (int i = 0; i < n_gen; i++) {
        for (int s = 0; s < n_seq; s++)
            batch[s] = (bc_batch_entry){s, d + BD_PROMPT + i, tok.ids[(k + i * n_seq + s) % tok.n], true};
        if (bc_context_decode(ctx, batch, n_seq) != BC_STATUS_OK) return -1.0;
    }
    return now_s() - t0;
}

static double run_test(bc_context *ctx, bc_batch_entry *batch, token_ids tok, const bench_test *t) {
    switch (t->kind) {
    case TEST_PP: return run_pp(ctx, batch, tok, t->n_depth, t->n_prompt);
    case TEST_TG: return run_tg(ctx, tok, t->n_depth, t->n_gen);
    case TEST_BD: return run_bd(ctx, batch, tok, t->n_depth, t->n_seq, t->n_gen);
    }
    return -1.0;
}

static void profile_add(bc_profile *sum, const bc_profile *p) {
    for (int k = 0; k < BC_PROFILE_OP_COUNT; k++) sum->op_seconds[k] += p->op_seconds[k];
    sum->total_seconds += p->total_seconds;
    sum->n_decodes += p->n_decodes;
    sum->n_tokens += p->n_tokens;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

static json_t *samples_json(const double *x, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(x[i]));
    return a;
}

/* The one test of a kind, or NULL when there are none or several. */
static const bench_test *only_test(const bench_test *tests, int n_tests, test_kind kind) {
    const bench_test *found = NULL;
    for (int i = 0; i < n_tests; i++)
        if (tests[i].kind == kind) {
            if (found != NULL) return NULL;
            found = &tests[i];
        }
    return found;
}

static int count_tests(const bench_test *tests, int n_tests, test_kind kind) {
    int n = 0;
    for (int i = 0; i < n_tests; i++) n += tests[i].kind == kind;
    return n;
}

/* pp_tokens_per_s, pp_tokens_per_s_stddev, pp_samples (and tg_, bd_): the
 * figures of the kind's only test; null and [] when it has none or several
 * (then `tests` has them). */
static void set_kind_fields(json_t *j, const char *prefix, const bench_test *t, int reps) {
    char key[64];
    stats st = t != NULL ? stats_of(t->samples, reps) : (stats){0, 0};
    snprintf(key, sizeof key, "%s_tokens_per_s", prefix);
    json_object_set_new(j, key, t != NULL ? json_real(st.mean) : json_null());
    snprintf(key, sizeof key, "%s_tokens_per_s_stddev", prefix);
    json_object_set_new(j, key, t != NULL ? json_real(st.stddev) : json_null());
    snprintf(key, sizeof key, "%s_samples", prefix);
    json_object_set_new(j, key, t != NULL ? samples_json(t->samples, reps) : json_array());
}

/* {"ms_per_token": {op: ms, ...}, "total_ms_per_token": in the decode calls,
 *  "measured_ms_per_token": around them, "decode_calls": n, "tokens": n}
 * (calls and tokens summed over the timed runs) */
static json_t *profile_json(const bench_test *t) {
    json_t *ops = json_object();
    double tokens = (double)t->prof.n_tokens;
    for (int k = 0; k < BC_PROFILE_OP_COUNT; k++)
        json_object_set_new(ops, bc_profile_op_name((bc_profile_op)k), json_real(t->prof.op_seconds[k] * 1e3 / tokens));
    json_t *p = json_object();
    json_object_set_new(p, "ms_per_token", ops);
    json_object_set_new(p, "total_ms_per_token", json_real(t->prof.total_seconds * 1e3 / tokens));
    json_object_set_new(p, "measured_ms_per_token", json_real(t->seconds * 1e3 / tokens));
    json_object_set_new(p, "decode_calls", json_integer((json_int_t)t->prof.n_decodes));
    json_object_set_new(p, "tokens", json_integer((json_int_t)t->prof.n_tokens));
    return p;
}

static int print_json(const bc_model_info *info, int threads, int reps, int batch_decode, bool profile,
                      const bench_test *tests, int n_tests) {
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(info->path));
    json_object_set_new(j, "kernels", json_string(bc_kernel_level()));
    json_object_set_new(j, "format", json_string(bc_file_format_name(info->file_format)));
    json_object_set_new(j, "model_bytes", json_integer((json_int_t)info->weight_bytes));
    json_object_set_new(j, "n_params", json_integer((json_int_t)info->n_params));
    json_object_set_new(j, "threads", json_integer(threads));
    const bench_test *pp = only_test(tests, n_tests, TEST_PP), *tg = only_test(tests, n_tests, TEST_TG),
                     *bd = only_test(tests, n_tests, TEST_BD);
    /* n_prompt / n_gen: of the only pp / tg test, 0 without one, null with several. */
    int n_pp = count_tests(tests, n_tests, TEST_PP), n_tg = count_tests(tests, n_tests, TEST_TG);
    json_object_set_new(j, "n_prompt",
                        pp != NULL  ? json_integer(pp->n_prompt)
                        : n_pp == 0 ? json_integer(0)
                                    : json_null());
    json_object_set_new(j, "n_gen", tg != NULL ? json_integer(tg->n_gen) : n_tg == 0 ? json_integer(0) : json_null());
    /* n_depth: of every test when they share one (0 without -d), null with several. */
    bool one_depth = true;
    for (int i = 1; i < n_tests; i++) one_depth = one_depth && tests[i].n_depth == tests[0].n_depth;
    json_object_set_new(j, "n_depth", one_depth ? json_integer(tests[0].n_depth) : json_null());
    json_object_set_new(j, "batch_decode", json_integer(batch_decode));
    json_object_set_new(j, "repetitions", json_integer(reps));
    set_kind_fields(j, "pp", pp, reps);
    set_kind_fields(j, "tg", tg, reps);
    set_kind_fields(j, "bd", bd, reps);
    json_t *arr = json_array();
    for (int i = 0; i < n_tests; i++) {
        const bench_test *t = &tests[i];
        stats st = stats_of(t->samples, reps);
        json_t *o = json_object();
        json_object_set_new(o, "test", json_string(t->name));
        json_object_set_new(o, "n_prompt", json_integer(t->n_prompt));
        json_object_set_new(o, "n_gen", json_integer(t->n_gen));
        json_object_set_new(o, "n_seq", json_integer(t->n_seq));
        json_object_set_new(o, "n_depth", json_integer(t->n_depth));
        json_object_set_new(o, "tokens_per_s", json_real(st.mean));
        json_object_set_new(o, "stddev", json_real(st.stddev));
        json_object_set_new(o, "samples", samples_json(t->samples, reps));
        if (profile) json_object_set_new(o, "profile", profile_json(t));
        json_array_append_new(arr, o);
    }
    json_object_set_new(j, "tests", arr);
    char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (text == NULL) return cli_error("out of memory");
    puts(text);
    free(text);
    return 0;
}

/* llama-bench's units: MiB and M below a GiB and a billion; the test column
 * as wide as its longest name ("pp512 @ d4096"), at least 8. */
static void print_table(const bc_model_info *info, int threads, int reps, const bench_test *tests, int n_tests) {
    int w = 8;
    for (int i = 0; i < n_tests; i++)
        if ((int)strlen(tests[i].name) > w) w = (int)strlen(tests[i].name);
    char dashes[sizeof tests[0].name];
    memset(dashes, '-', (size_t)w);
    dashes[w] = '\0';
    printf("| %-28s | %10s | %8s | %7s | %7s | %*s | %20s |\n", "model", "size", "params", "kernels", "threads", w,
           "test", "t/s");
    printf("| %-28s | %10s | %8s | %7s | %7s | %s | %20s |\n", "----------------------------", "----------", "--------",
           "-------", "-------", dashes, "--------------------");
    const char *base = strrchr(info->path, '/');
    base = base && base[1] ? base + 1 : info->path;
    char size[32], params[32], tps[64];
    if (info->weight_bytes < (1ull << 30))
        snprintf(size, sizeof size, "%.2f MiB", (double)info->weight_bytes / (1 << 20));
    else
        snprintf(size, sizeof size, "%.2f GiB", (double)info->weight_bytes / (1 << 30));
    if (info->n_params < 1000000000)
        snprintf(params, sizeof params, "%.2f M", (double)info->n_params / 1e6);
    else
        snprintf(params, sizeof params, "%.2f B", (double)info->n_params / 1e9);
    for (int i = 0; i < n_tests; i++) {
        stats st = stats_of(tests[i].samples, reps);
        snprintf(tps, sizeof tps, "%.2f ± %.2f", st.mean, st.stddev);
        printf("| %-28.28s | %10s | %8s | %7s | %7d | %*s | %21s |\n", base, size, params, bc_kernel_level(), threads,
               w, tests[i].name, tps);
    }
}

/* Per test: ms per token of each kind of step and its share of the time in
 * the decode calls; the rows add up to the total (other is the rest). The
 * decimals give the total four significant digits (at least two). */
static void print_profile(const bench_test *tests, int n_tests, int reps) {
    for (int i = 0; i < n_tests; i++) {
        const bench_test *t = &tests[i];
        double tokens = (double)t->prof.n_tokens, total = t->prof.total_seconds, total_ms = total * 1e3 / tokens;
        int decimals = total_ms > 0 ? 3 - (int)floor(log10(total_ms)) : 2;
        decimals = decimals < 2 ? 2 : decimals > 9 ? 9 : decimals;
        printf("\nprofile of %s: ms per %s token over %d runs; %.*f ms/token measured around the decode calls\n",
               t->name, t->kind == TEST_PP ? "prompt" : "generated", reps, decimals, t->seconds * 1e3 / tokens);
        printf("| %-11s | %12s | %7s |\n", "op", "ms/token", "%");
        printf("| %-11s | %12s | %7s |\n", "-----------", "-----------:", "------:");
        for (int k = 0; k < BC_PROFILE_OP_COUNT; k++)
            printf("| %-11s | %12.*f | %7.2f |\n", bc_profile_op_name((bc_profile_op)k), decimals,
                   t->prof.op_seconds[k] * 1e3 / tokens, total > 0 ? 100.0 * t->prof.op_seconds[k] / total : 0.0);
        printf("| %-11s | %12.*f | %7.2f |\n", "total", decimals, total_ms, 100.0);
    }
}

/* ------------------------------------------------------------------------ */
/* The command                                                              */
/* ------------------------------------------------------------------------ */

int cmd_bench(int argc, char **argv) {
    cli_model_opts o;
    cli_model_opts_init(&o);
    cli_lora_opts lo;
    memset(&lo, 0, sizeof lo);
    bool lora_per_seq = false;
    int_list prompts = {0, {0}}, gens = {0, {0}}, depths = {0, {0}};
    int reps = 3, batch_decode = 0;
    bool as_json = false, bf16_act = false, profile = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            fputs(cli_model_opts_help, stdout);
            return 0;
        }
        int r = cli_model_opt(argc, argv, &i, &o);
        if (r == 0) r = cli_lora_opt(argc, argv, &i, &lo);
        if (r < 0) {
            cli_lora_opts_free(&lo);
            return 1;
        }
        if (r > 0) continue;
        if (strcmp(a, "--lora-per-seq") == 0) {
            lora_per_seq = true;
        } else if (strcmp(a, "-p") == 0 || strcmp(a, "--n-prompt") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || parse_list(v, a, &prompts) != 0) return 1;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-gen") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || parse_list(v, a, &gens) != 0) return 1;
        } else if (strcmp(a, "-d") == 0 || strcmp(a, "--n-depth") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || parse_list(v, a, &depths) != 0) return 1;
        } else if (strcmp(a, "-r") == 0 || strcmp(a, "--repetitions") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 1, 1000, a, &reps) != 0) return 1;
        } else if (strcmp(a, "--batch-decode") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 1, 1024, a, &batch_decode) != 0) return 1;
        } else if (strcmp(a, "--profile") == 0) {
            profile = true;
        } else if (strcmp(a, "--json") == 0) {
            as_json = true;
        } else if (strcmp(a, "--bf16-act") == 0) {
            bf16_act = true;
        } else {
            return cli_error("bench: unknown option '%s' (see 'baichuan bench --help')", a);
        }
    }
    if (prompts.n == 0) prompts.v[prompts.n++] = 128;
    if (gens.n == 0) gens.v[gens.n++] = 32;
    if (depths.n == 0) depths.v[depths.n++] = 0;

    /* The tests in llama-bench's order: depth by depth, pp then tg, then bd. */
    int n_bd_gens = 0;
    for (int i = 0; i < gens.n; i++) n_bd_gens += batch_decode > 0 && gens.v[i] > 0;
    if (batch_decode > 0 && n_bd_gens == 0)
        return cli_error("bench: --batch-decode needs -n > 0 (the tokens each sequence generates)");
    bench_test *tests = malloc((size_t)depths.n * 3 * MAX_LIST * sizeof *tests);
    if (tests == NULL) return cli_error("out of memory");
    int n_tests = 0;
    for (int d = 0; d < depths.n; d++) {
        int depth = depths.v[d];
        for (int i = 0; i < prompts.n; i++)
            if (prompts.v[i] > 0) add_test(tests, &n_tests, TEST_PP, prompts.v[i], 1, depth, false);
        for (int i = 0; i < gens.n; i++)
            if (gens.v[i] > 0) add_test(tests, &n_tests, TEST_TG, gens.v[i], 1, depth, false);
        for (int i = 0; i < gens.n && batch_decode > 0; i++)
            if (gens.v[i] > 0) add_test(tests, &n_tests, TEST_BD, gens.v[i], batch_decode, depth, n_bd_gens > 1);
    }

    int rc = 1;
    bc_model *model = NULL;
    bc_context *ctx = NULL;
    bc_batch_entry *batch = NULL;
    int32_t *ids = NULL;
    if (n_tests == 0) {
        cli_error("bench: -p and -n are both 0: nothing to measure");
        goto done;
    }
    /* The context: positions per sequence and entries per decode call of the
     * largest test; a depth is filled FILL_BATCH entries at a time (or all
     * at once when shorter), as a prompt would be. */
    int n_ctx = 1, n_batch = 1;
    for (int i = 0; i < n_tests; i++) {
        const bench_test *t = &tests[i];
        int entries = t->kind == TEST_PP ? t->n_prompt : t->kind == TEST_BD ? BD_PROMPT * t->n_seq : 1;
        int fill = t->n_depth < FILL_BATCH ? t->n_depth : FILL_BATCH;
        if (test_positions(t) > n_ctx) n_ctx = test_positions(t);
        if (entries > n_batch) n_batch = entries;
        if (fill > n_batch) n_batch = fill;
    }

    if (lora_per_seq && lo.n == 0) {
        cli_error("bench: --lora-per-seq needs --lora");
        goto done;
    }
    if ((model = cli_load_model(&o)) == NULL || cli_load_loras(model, &lo) != 0) goto done;
    bc_model_info info;
    bc_model_get_info(model, &info);
    /* A depth past the model's context measures positions it never saw (and
     * ALiBi or RoPE at lengths nobody runs): refused. Without -d the lengths
     * are not checked, as before. */
    for (int i = 0; i < n_tests; i++) {
        const bench_test *t = &tests[i];
        if (t->n_depth > 0 && info.n_ctx_train > 0 && test_positions(t) > info.n_ctx_train) {
            cli_error("bench: -d %d: %s needs %d positions (%d + %d), more than the model's context of %d", t->n_depth,
                      t->name, test_positions(t), t->n_depth, test_positions(t) - t->n_depth, info.n_ctx_train);
            goto done;
        }
    }
    bc_context_params cp = bc_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_seq = batch_decode > 0 ? batch_decode : 1;
    cp.n_batch = n_batch;
    /* No prefix cache: with it each full block is indexed as it fills, so a
     * run after the first would find the blocks of the run before (same ids)
     * and swap them in, and the block a truncation to depth D cuts into
     * stays indexed and is copied at the run's first write (inside the timed
     * call; and a pool of exactly n_ctx positions has no block for the copy
     * when the test reaches n_ctx). Without it every run writes fresh blocks,
     * as a generation in a new context does. */
    cp.prefix_cache = false;
    cp.n_threads = o.n_threads;
    cp.cache_type = o.cache_type;
    cp.bf16_activations = bf16_act;
    cp.profile = profile;
    char err[1024];
    if (bc_context_init(model, cp, &ctx, err, sizeof err) != BC_STATUS_OK) {
        cli_error("%s", err);
        goto done;
    }
    if (lo.n > 0) {
        uint64_t bytes = 0;
        for (int k = 0; k < lo.n; k++) {
            bc_lora_info li;
            bc_lora_get_info(lo.loras[k], &li);
            bytes += li.bytes;
        }
        for (int s = 0; s < cp.n_seq; s++) {
            const bc_lora *const *set = (const bc_lora *const *)lo.loras + (lora_per_seq ? s % lo.n : 0);
            int n_set = lora_per_seq ? 1 : lo.n;
            if (n_set > BC_MAX_SEQ_LORAS || bc_context_seq_set_loras(ctx, s, set, n_set) != BC_STATUS_OK) {
                cli_error("bench: --lora: %s", n_set > BC_MAX_SEQ_LORAS
                                                   ? "more adapters than one sequence takes (8); use --lora-per-seq"
                                                   : bc_context_error(ctx));
                goto done;
            }
        }
        fprintf(stderr, "bench: %d LoRA adapter%s (%.1f MiB), %s\n", lo.n, lo.n == 1 ? "" : "s",
                (double)bytes / (1 << 20),
                lora_per_seq ? "sequence s under adapter s mod their number" : "on every sequence");
    }
    token_ids tok = {NULL, n_ctx > n_batch ? n_ctx : n_batch};
    batch = malloc((size_t)n_batch * sizeof *batch);
    ids = malloc((size_t)tok.n * sizeof *ids);
    bool oom = batch == NULL || ids == NULL;
    for (int i = 0; i < n_tests && !oom; i++) oom = (tests[i].samples = calloc((size_t)reps, sizeof(double))) == NULL;
    if (oom) {
        cli_error("out of memory");
        goto done;
    }
    uint64_t state = 0x9e3779b97f4a7c15ull; /* xorshift64: the same ids on every run */
    for (int i = 0; i < tok.n; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ids[i] = (int32_t)(state % (uint64_t)info.n_vocab);
    }
    tok.ids = ids;
    /* Depth by depth: the tests of one depth are consecutive. */
    for (int begin = 0, end; begin < n_tests; begin = end) {
        int depth = tests[begin].n_depth;
        for (end = begin + 1; end < n_tests && tests[end].n_depth == depth;) end++;
        /* Each sequence gets its own D positions (other ids for each, so
         * that no block is shared), filled once for all the runs. */
        for (int s = 0; s < cp.n_seq; s++)
            if (fill_depth(ctx, batch, n_batch, tok, s, depth, s * depth) != BC_STATUS_OK) {
                cli_error("bench: filling %d positions for -d %d: %s", depth, depth, bc_context_error(ctx));
                goto done;
            }
        /* Warm-up at this depth, each test once: the weights paged in, the
         * threads started, and every KV block the tests write touched (the
         * pool's pages are faulted in as blocks are first written: in a
         * timed run that was up to a quarter of a bd16 run's first
         * repetition on this VM; a serving process reuses its blocks). */
        for (int i = begin; i < end; i++)
            if (run_test(ctx, batch, tok, &tests[i]) < 0) {
                cli_error("%s", bc_context_error(ctx));
                goto done;
            }
        for (int r = 0; r < reps; r++)
            for (int i = begin; i < end; i++) {
                bench_test *t = &tests[i];
                double sec = run_test(ctx, batch, tok, t);
                if (sec < 0) {
                    cli_error("%s", bc_context_error(ctx));
                    goto done;
                }
                t->samples[r] = test_tokens(t) / sec;
                t->seconds += sec;
                bc_profile p;
                if (profile && bc_context_profile(ctx, &p) == BC_STATUS_OK) profile_add(&t->prof, &p);
            }
    }
    int threads = bc_context_n_threads(ctx);
    if (as_json) {
        if (print_json(&info, threads, reps, batch_decode, profile, tests, n_tests) != 0) goto done;
    } else {
        print_table(&info, threads, reps, tests, n_tests);
        if (profile) print_profile(tests, n_tests, reps);
    }
    rc = 0;
done:
    for (int i = 0; i < n_tests; i++) free(tests[i].samples);
    free(tests);
    free(ids);
    free(batch);
    bc_context_free(ctx);
    cli_lora_opts_free(&lo);
    bc_model_free(model);
    return rc;
}

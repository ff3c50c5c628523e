/*
 * cmd_bench.c - baichuan bench: prompt processing and generation speed, like
 * llama-bench.
 *
 *   pp  one forward pass over n_prompt tokens (one batch, logits for the
 *       last), from an empty cache: tokens/s = n_prompt / seconds
 *   tg  n_gen single-token forward passes from an empty cache, logits for
 *       each: tokens/s = n_gen / seconds
 * Each runs `repetitions` times after one untimed warm-up; the figures are
 * the mean and the sample standard deviation of the per-run tokens/s.
 * Token ids are seeded random ids of the vocabulary (no tokenizer needed).
 */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char help[] = "usage: baichuan bench -m MODEL [-p 128] [-n 32] [-t N] [-r 3] [--json]\n"
                           "\n"
                           "Measures prompt processing (pp) and text generation (tg) speed in tokens/s:\n"
                           "mean and standard deviation over repetitions, with the model's size and\n"
                           "parameter count.\n"
                           "\n"
                           "options:\n"
                           "  -p, --n-prompt N         prompt tokens per pp run (default 128; 0 skips pp)\n"
                           "  -n, --n-gen N            generated tokens per tg run (default 32; 0 skips tg)\n"
                           "  -r, --repetitions N      timed runs of each test (default 3)\n"
                           "      --json               print one JSON object instead of the table\n"
                           "      --bf16-act           bf16 weights: bf16 activations and the CPU's bf16 dot\n"
                           "                           products (faster, about 1e-3 less exact; see README)\n";

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

/* Seconds for one pp run of n tokens from an empty cache; < 0 on error. */
static double run_pp(bc_context *ctx, bc_batch_entry *batch, const int32_t *tokens, int n) {
    bc_context_seq_truncate(ctx, 0, 0);
    for (int i = 0; i < n; i++) batch[i] = (bc_batch_entry){0, i, tokens[i], i == n - 1};
    double t0 = now_s();
    if (bc_context_decode(ctx, batch, n) != BC_STATUS_OK) return -1.0;
    return now_s() - t0;
}

/* Seconds for n single-token passes from an empty cache. */
static double run_tg(bc_context *ctx, const int32_t *tokens, int n) {
    bc_context_seq_truncate(ctx, 0, 0);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        bc_batch_entry e = {0, i, tokens[i], true};
        if (bc_context_decode(ctx, &e, 1) != BC_STATUS_OK) return -1.0;
    }
    return now_s() - t0;
}

static json_t *samples_json(const double *x, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(x[i]));
    return a;
}

int cmd_bench(int argc, char **argv) {
    cli_model_opts o;
    cli_model_opts_init(&o);
    int n_prompt = 128, n_gen = 32, reps = 3;
    bool as_json = false, bf16_act = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            fputs(cli_model_opts_help, stdout);
            return 0;
        }
        int r = cli_model_opt(argc, argv, &i, &o);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (strcmp(a, "-p") == 0 || strcmp(a, "--n-prompt") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 0, 1 << 20, a, &n_prompt) != 0) return 1;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-gen") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 0, 1 << 20, a, &n_gen) != 0) return 1;
        } else if (strcmp(a, "-r") == 0 || strcmp(a, "--repetitions") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 1, 1000, a, &reps) != 0) return 1;
        } else if (strcmp(a, "--json") == 0) {
            as_json = true;
        } else if (strcmp(a, "--bf16-act") == 0) {
            bf16_act = true;
        } else {
            return cli_error("bench: unknown option '%s' (see 'baichuan bench --help')", a);
        }
    }
    if (n_prompt == 0 && n_gen == 0) return cli_error("bench: -p and -n are both 0: nothing to measure");

    int rc = 1;
    bc_model *model = NULL;
    bc_context *ctx = NULL;
    bc_batch_entry *batch = NULL;
    int32_t *tokens = NULL;
    double *pp = NULL, *tg = NULL;
    if ((model = cli_load_model(&o)) == NULL) goto done;
    bc_model_info info;
    bc_model_get_info(model, &info);
    int n_max = n_prompt > n_gen ? n_prompt : n_gen;
    bc_context_params cp = bc_context_default_params();
    cp.n_ctx = n_max;
    cp.n_batch = n_prompt > 0 ? n_prompt : 1;
    cp.n_threads = o.n_threads;
    cp.bf16_activations = bf16_act;
    char err[1024];
    if (bc_context_init(model, cp, &ctx, err, sizeof err) != BC_STATUS_OK) {
        cli_error("%s", err);
        goto done;
    }
    batch = malloc((size_t)cp.n_batch * sizeof *batch);
    tokens = malloc((size_t)n_max * sizeof *tokens);
    pp = calloc((size_t)reps, sizeof *pp);
    tg = calloc((size_t)reps, sizeof *tg);
    if (batch == NULL || tokens == NULL || pp == NULL || tg == NULL) {
        cli_error("out of memory");
        goto done;
    }
    uint64_t state = 0x9e3779b97f4a7c15ull; /* xorshift64: the same ids on every run */
    for (int i = 0; i < n_max; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        tokens[i] = (int32_t)(state % (uint64_t)info.n_vocab);
    }
    /* Warm-up: page the weights in and start the threads. */
    if ((n_prompt > 0 ? run_pp(ctx, batch, tokens, n_prompt < 8 ? n_prompt : 8) : run_tg(ctx, tokens, 1)) < 0) {
        cli_error("%s", bc_context_error(ctx));
        goto done;
    }
    for (int r = 0; r < reps; r++) {
        if (n_prompt > 0) {
            double s = run_pp(ctx, batch, tokens, n_prompt);
            if (s < 0) {
                cli_error("%s", bc_context_error(ctx));
                goto done;
            }
            pp[r] = n_prompt / s;
        }
        if (n_gen > 0) {
            double s = run_tg(ctx, tokens, n_gen);
            if (s < 0) {
                cli_error("%s", bc_context_error(ctx));
                goto done;
            }
            tg[r] = n_gen / s;
        }
    }
    stats sp = stats_of(pp, reps), sg = stats_of(tg, reps);
    int threads = bc_context_n_threads(ctx);
    if (as_json) {
        json_t *j = json_object();
        json_object_set_new(j, "model", json_string(info.path));
        json_object_set_new(j, "format", json_string(bc_file_format_name(info.file_format)));
        json_object_set_new(j, "model_bytes", json_integer((json_int_t)info.weight_bytes));
        json_object_set_new(j, "n_params", json_integer((json_int_t)info.n_params));
        json_object_set_new(j, "threads", json_integer(threads));
        json_object_set_new(j, "n_prompt", json_integer(n_prompt));
        json_object_set_new(j, "n_gen", json_integer(n_gen));
        json_object_set_new(j, "repetitions", json_integer(reps));
        json_object_set_new(j, "pp_tokens_per_s", n_prompt > 0 ? json_real(sp.mean) : json_null());
        json_object_set_new(j, "pp_tokens_per_s_stddev", n_prompt > 0 ? json_real(sp.stddev) : json_null());
        json_object_set_new(j, "tg_tokens_per_s", n_gen > 0 ? json_real(sg.mean) : json_null());
        json_object_set_new(j, "tg_tokens_per_s_stddev", n_gen > 0 ? json_real(sg.stddev) : json_null());
        json_object_set_new(j, "pp_samples", n_prompt > 0 ? samples_json(pp, reps) : json_array());
        json_object_set_new(j, "tg_samples", n_gen > 0 ? samples_json(tg, reps) : json_array());
        char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        json_decref(j);
        if (text == NULL) {
            cli_error("out of memory");
            goto done;
        }
        puts(text);
        free(text);
    } else {
        printf("| %-28s | %10s | %8s | %7s | %8s | %20s |\n", "model", "size", "params", "threads", "test", "t/s");
        printf("| %-28s | %10s | %8s | %7s | %8s | %20s |\n", "----------------------------", "----------", "--------",
               "-------", "--------", "--------------------");
        const char *base = strrchr(info.path, '/');
        base = base && base[1] ? base + 1 : info.path;
        char size[32], params[32], test[32], tps[48];
        snprintf(size, sizeof size, "%.2f GiB", (double)info.weight_bytes / (1 << 30));
        snprintf(params, sizeof params, "%.2f B", (double)info.n_params / 1e9);
        if (n_prompt > 0) {
            snprintf(test, sizeof test, "pp%d", n_prompt);
            snprintf(tps, sizeof tps, "%.2f ± %.2f", sp.mean, sp.stddev);
            printf("| %-28.28s | %10s | %8s | %7d | %8s | %21s |\n", base, size, params, threads, test, tps);
        }
        if (n_gen > 0) {
            snprintf(test, sizeof test, "tg%d", n_gen);
            snprintf(tps, sizeof tps, "%.2f ± %.2f", sg.mean, sg.stddev);
            printf("| %-28.28s | %10s | %8s | %7d | %8s | %21s |\n", base, size, params, threads, test, tps);
        }
    }
    rc = 0;
done:
    free(pp);
    free(tg);
    free(tokens);
    free(batch);
    bc_context_free(ctx);
    bc_model_free(model);
    return rc;
}

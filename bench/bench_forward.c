/*
 * bench_forward.c - forward-pass speed of a model directory (public API only).
 *
 *   bench_forward MODEL_DIR [THREADS] [PROMPT_TOKENS] [GEN_TOKENS]
 *
 * Runs one prompt of PROMPT_TOKENS (128) tokens as a single batch, then
 * GEN_TOKENS (32) single-token decode steps, and prints tokens/s of each
 * (best of 3 repetitions, fresh context each time). Token ids are arbitrary
 * and fixed; the figures do not depend on them.
 */
#include "baichuan.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [THREADS] [PROMPT_TOKENS] [GEN_TOKENS]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2, n_prompt = argc > 3 ? atoi(argv[3]) : 128,
        n_gen = argc > 4 ? atoi(argv[4]) : 32;
    char err[1024];
    bc_model *model = NULL;
    if (bc_model_load(argv[1], bc_model_default_params(), &model, err, sizeof err) != BC_STATUS_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    bc_model_info info;
    bc_model_get_info(model, &info);
    bc_batch_entry *e = calloc((size_t)n_prompt, sizeof *e);
    double best_pp = 1e30, best_tg = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        bc_context_params p = bc_context_default_params();
        p.n_ctx = n_prompt + n_gen + 1;
        p.n_batch = n_prompt;
        p.n_threads = threads;
        bc_context *ctx = NULL;
        if (bc_context_init(model, p, &ctx, err, sizeof err) != BC_STATUS_OK) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        for (int i = 0; i < n_prompt; i++) {
            e[i].seq = 0;
            e[i].pos = i;
            e[i].token = 3 + (i * 7919) % (info.n_vocab - 3);
            e[i].logits = i == n_prompt - 1;
        }
        double t0 = now();
        if (bc_context_decode(ctx, e, n_prompt) != BC_STATUS_OK) return 1;
        double t1 = now();
        for (int i = 0; i < n_gen; i++) {
            bc_batch_entry one = {0, n_prompt + i, 3 + (i * 104729) % (info.n_vocab - 3), true};
            if (bc_context_decode(ctx, &one, 1) != BC_STATUS_OK) return 1;
        }
        double t2 = now();
        if (t1 - t0 < best_pp) best_pp = t1 - t0;
        if (t2 - t1 < best_tg) best_tg = t2 - t1;
        bc_context_free(ctx);
    }
    printf("%s: %.3f B params, %.2f GiB weights, %d threads: pp%d %.1f tokens/s, tg%d %.2f tokens/s\n", argv[1],
           (double)info.n_params * 1e-9, (double)info.weight_bytes / (1 << 30), threads, n_prompt, n_prompt / best_pp,
           n_gen, n_gen / best_tg);
    free(e);
    bc_model_free(model);
    return 0;
}

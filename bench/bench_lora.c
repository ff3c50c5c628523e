/*
 * bench_lora.c - what LoRA adapters cost a decode step, measured side by
 * side in one process: the same steps with and without adapters, taking
 * turns step by step, so that whatever else the machine runs slows both
 * alike (this is how the README's ratios were measured on a shared VM).
 *
 *   bench_lora MODEL ADAPTER... [-n STEPS] [-t THREADS] [-s STREAMS]
 *
 * STREAMS sequences (default 1) decode one token a step each, in two groups
 * of STREAMS sequences: the base group (no adapter) and the adapter group,
 * where sequence i runs under ADAPTER[i mod count]. Each group first gets a
 * 16-token prompt (not timed); then STEPS steps of each group alternate
 * (base, adapters, base, ...). Prints tokens/s of each group (the median of
 * 8 slices of the steps) and the adapters' speed relative to the base.
 * Public API only.
 */
#include "baichuan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { PROMPT = 16, SLICES = 8, MAX_ADAPTERS = 256 };

int main(int argc, char **argv) {
    const char *model_path = NULL, *adapters[MAX_ADAPTERS];
    int n_adapters = 0, steps = 64, threads = 0, streams = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            streams = atoi(argv[++i]);
        else if (model_path == NULL)
            model_path = argv[i];
        else if (n_adapters < MAX_ADAPTERS)
            adapters[n_adapters++] = argv[i];
    }
    if (model_path == NULL || n_adapters == 0 || steps < SLICES || streams < 1 || streams > 512) {
        fprintf(stderr, "usage: bench_lora MODEL ADAPTER... [-n STEPS >= 8] [-t THREADS] [-s STREAMS]\n");
        return 2;
    }
    char err[1024];
    bc_model *model = NULL;
    if (bc_model_load(model_path, bc_model_default_params(), &model, err, sizeof err) != BC_STATUS_OK) {
        fprintf(stderr, "bench_lora: %s\n", err);
        return 1;
    }
    bc_lora **loras = calloc((size_t)n_adapters, sizeof *loras);
    uint64_t lora_bytes = 0;
    for (int k = 0; k < n_adapters; k++) {
        if (bc_lora_load(model, adapters[k], 1.0f, &loras[k], err, sizeof err) != BC_STATUS_OK) {
            fprintf(stderr, "bench_lora: %s\n", err);
            return 1;
        }
        bc_lora_info li;
        bc_lora_get_info(loras[k], &li);
        lora_bytes += li.bytes;
    }
    bc_context_params p = bc_context_default_params();
    p.n_ctx = PROMPT + steps + 1;
    p.n_seq = 2 * streams;
    p.n_batch = streams * PROMPT;
    p.n_threads = threads;
    p.prefix_cache = false;
    bc_context *ctx = NULL;
    if (bc_context_init(model, p, &ctx, err, sizeof err) != BC_STATUS_OK) {
        fprintf(stderr, "bench_lora: %s\n", err);
        return 1;
    }
    for (int s = 0; s < streams; s++) {
        const bc_lora *set[1] = {loras[s % n_adapters]};
        if (bc_context_seq_set_loras(ctx, streams + s, set, 1) != BC_STATUS_OK) {
            fprintf(stderr, "bench_lora: %s\n", bc_context_error(ctx));
            return 1;
        }
    }
    bc_model_info info;
    bc_model_get_info(model, &info);
    bc_batch_entry *b = malloc((size_t)streams * PROMPT * sizeof *b);
    /* the prompts, not timed (group g: sequences g * streams .. + streams - 1) */
    for (int g = 0; g < 2; g++) {
        int n = 0;
        for (int s = 0; s < streams; s++)
            for (int i = 0; i < PROMPT; i++)
                b[n++] = (bc_batch_entry){g * streams + s, i, (int32_t)((s * 131 + i * 7 + 1) % info.n_vocab), false};
        if (bc_context_decode(ctx, b, n) != BC_STATUS_OK) {
            fprintf(stderr, "bench_lora: %s\n", bc_context_error(ctx));
            return 1;
        }
    }
    double t[2][SLICES] = {{0}};
    for (int step = 0; step < steps; step++)
        for (int g = 0; g < 2; g++) {
            for (int s = 0; s < streams; s++)
                b[s] =
                    (bc_batch_entry){g * streams + s, PROMPT + step, (int32_t)((step * 977 + s) % info.n_vocab), true};
            double t0 = now();
            if (bc_context_decode(ctx, b, streams) != BC_STATUS_OK) {
                fprintf(stderr, "bench_lora: %s\n", bc_context_error(ctx));
                return 1;
            }
            t[g][step * SLICES / steps] += now() - t0;
        }
    double rate[2];
    for (int g = 0; g < 2; g++) {
        double r[SLICES];
        for (int k = 0; k < SLICES; k++) {
            int n_steps = (k + 1) * steps / SLICES - k * steps / SLICES;
            r[k] = streams * n_steps / t[g][k];
        }
        qsort(r, SLICES, sizeof r[0], cmp_double);
        rate[g] = (r[SLICES / 2 - 1] + r[SLICES / 2]) / 2;
    }
    printf("model %s, %d stream%s, %d threads, %d steps of each group, taking turns\n", model_path, streams,
           streams == 1 ? "" : "s", bc_context_n_threads(ctx), steps);
    printf("adapters: %d (%.1f MiB), sequence i of the adapter group under adapter i mod %d\n", n_adapters,
           (double)lora_bytes / (1 << 20), n_adapters);
    printf("base:     %8.2f tokens/s\n", rate[0]);
    printf("adapters: %8.2f tokens/s  (%.1f%% of the base)\n", rate[1], 100.0 * rate[1] / rate[0]);
    free(b);
    bc_context_free(ctx);
    for (int k = 0; k < n_adapters; k++) bc_lora_free(loras[k]);
    free(loras);
    bc_model_free(model);
    return 0;
}

/*
 * bench_matmul.c - matmul speed per weight dtype and kernel level.
 *
 *   bench_matmul [-t THREADS] [-d DTYPE,...] [-l LEVEL,...] [-n N,...] [-s SHAPE,...] [-m SECONDS] [-c 0|1]
 *
 * For each shape (rows x cols: 4096x4096 and 11008x4096 by default), dtype,
 * level (c, avx2, avx512; those this CPU has) and number of activation rows
 * n (1 and 128 by default), times y = x @ W^T (bc__matmul, including the
 * on-the-fly quantization of the activations) on random weights and prints
 *   GFLOP/s = 2 * rows * cols * n / time,   GB/s = weight bytes / time
 * (GB/s is the weight stream; at n = 1 it is what memory bandwidth bounds).
 * A dtype with a repacked layout at a level is timed twice: row-major as
 * stored (level "avx2") and repacked as the model loader does ("avx2rp").
 * Each figure is the best of repeated runs for at least -m seconds (0.3).
 * -b 1 rounds the activations of bf16 weights to bf16 (BC__MATMUL_BF16_ACT).
 * -c 1 times each run by the CPU time of the calling thread instead of the
 * wall clock, on a machine shared with other work: the time the thread waits
 * descheduled is left out (not the caches the others evict). -t 1 only: the
 * matmul then runs on the calling thread.
 */
#include "kernels/kernels.h"
#include "quants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Whether name is in the comma-separated list (NULL: everything). */
static int listed(const char *list, const char *name) {
    if (list == NULL) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p += len + (e != NULL);
    }
    return 0;
}

int main(int argc, char **argv) {
    int threads = 2;
    const char *dtypes = NULL, *levels = NULL, *ns = "1,128", *shapes = "4096x4096,11008x4096";
    double min_time = 0.3;
    unsigned flags = 0;
    int cpu_time = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-t") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-d") == 0)
            dtypes = argv[i + 1];
        else if (strcmp(argv[i], "-l") == 0)
            levels = argv[i + 1];
        else if (strcmp(argv[i], "-n") == 0)
            ns = argv[i + 1];
        else if (strcmp(argv[i], "-s") == 0)
            shapes = argv[i + 1];
        else if (strcmp(argv[i], "-m") == 0)
            min_time = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-b") == 0)
            flags = atoi(argv[i + 1]) ? BC__MATMUL_BF16_ACT : 0;
        else if (strcmp(argv[i], "-c") == 0)
            cpu_time = atoi(argv[i + 1]) != 0;
        else {
            fprintf(stderr,
                    "usage: %s [-t THREADS] [-d DTYPE,...] [-l LEVEL,...] [-n N,...] [-s RxC,...] [-m SEC] [-b 0|1] "
                    "[-c 0|1]\n",
                    argv[0]);
            return 2;
        }
    }
    if (cpu_time && threads != 1) {
        fprintf(stderr, "-c 1 needs -t 1: the CPU time of the calling thread is that of the matmul only then\n");
        return 2;
    }
    double (*timer)(void) = cpu_time ? thread_cpu : now;
    bc__f16_init();
    bc__pool *pool = bc__pool_create(threads);
    bc__isa top = bc__kernels_detect();
    printf("threads %d, detected level %s%s\n", threads, bc__isa_name(top),
           cpu_time ? ", timed by thread CPU time" : "");
    printf("%-11s %-6s %-7s %5s %10s %9s %8s\n", "shape", "dtype", "level", "n", "ms", "GFLOP/s", "GB/s");
    uint64_t seed = 88172645463325252ULL;
    for (const char *sp = shapes; *sp;) {
        long long rows = 0, cols = 0;
        if (sscanf(sp, "%lldx%lld", &rows, &cols) != 2 || rows <= 0 || cols <= 0) {
            fprintf(stderr, "bad shape %s\n", sp);
            return 2;
        }
        const char *comma = strchr(sp, ',');
        sp = comma ? comma + 1 : sp + strlen(sp);
        float *wf = malloc((size_t)(rows * cols) * sizeof(float));
        float *x = malloc((size_t)(128 * cols) * sizeof(float));
        float *y = malloc((size_t)(128 * rows) * sizeof(float));
        void *scratch = malloc(bc__matmul_scratch_bytes(cols, 128));
        for (long long i = 0; i < rows * cols; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            wf[i] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5) * 0.1f;
        }
        for (long long i = 0; i < 128 * cols; i++) x[i] = (float)((i * 7919) % 2003) / 2003.0f - 0.5f;
        for (int d = 0; d < BC_DTYPE_COUNT; d++) {
            const bc__dtype_traits *tr = bc__dtype_traits_of((bc_dtype)d);
            uint64_t row_bytes;
            if (!listed(dtypes, tr->name) || bc__dtype_row_bytes((bc_dtype)d, (uint64_t)cols, &row_bytes) != 0)
                continue;
            uint8_t *wq = malloc((size_t)rows * row_bytes);
            for (long long r = 0; r < rows; r++)
                bc__quantize_row((bc_dtype)d, wf + r * cols, wq + (size_t)r * row_bytes, cols);
            bc__weight w = {wq, (bc_dtype)d, rows, cols, "bench", NULL, NULL};
            for (int l = 0, rp = 0; l <= (int)top; rp ? (l++, rp = 0) : (rp = 1)) {
                if (!listed(levels, bc__isa_name((bc__isa)l))) continue;
                bc__kernels_force(l);
                if (rp) {
                    /* The same level again on the repacked copy, where there is one. */
                    if (!bc__weight_repack(&w)) continue;
                }
                char level[16];
                snprintf(level, sizeof level, "%s%s", bc__isa_name((bc__isa)l), rp ? "rp" : "");
                for (const char *np = ns; *np;) {
                    int n = atoi(np);
                    const char *c2 = strchr(np, ',');
                    np = c2 ? c2 + 1 : np + strlen(np);
                    if (n < 1 || n > 128) continue;
                    bc__matmul(pool, &w, x, n, y, scratch, flags); /* warm up */
                    double best = 1e30, start = now();
                    do {
                        double t0 = timer();
                        bc__matmul(pool, &w, x, n, y, scratch, flags);
                        double t = timer() - t0;
                        if (t < best) best = t;
                    } while (now() - start < min_time);
                    printf("%5lldx%-5lld %-6s %-7s %5d %10.3f %9.1f %8.2f\n", rows, cols, tr->name, level, n,
                           best * 1e3, 2.0 * (double)rows * (double)cols * n / best * 1e-9,
                           (double)rows * (double)row_bytes / best * 1e-9);
                    fflush(stdout);
                }
                bc__weight_repack_free(&w);
            }
            free(wq);
        }
        free(wf);
        free(x);
        free(y);
        free(scratch);
    }
    bc__kernels_force(-1);
    bc__pool_free(pool);
    return 0;
}

/*
 * bench_matmul.c - matmul speed per weight dtype and kernel level.
 *
 *   bench_matmul [-t THREADS] [-d DTYPE,...] [-l LEVEL,...] [-n N,...] [-s SHAPE,...] [-m SECONDS] [-c 0|1]
 *   bench_matmul -a KEYS [-D DIM] [-d DTYPE,...] [-l LEVEL,...] [-m SECONDS] [-c 0|1]
 *
 * For each shape (rows x cols: 4096x4096 and 11008x4096 by default), dtype,
 * level (c, avx2, avx512; those this CPU has) and number of activation rows
 * n (1 and 128 by default), times y = x @ W^T (bc__matmul, including the
 * on-the-fly quantization of the activations) on random weights and prints
 *   GFLOP/s = 2 * rows * cols * n / time,   GB/s = weight bytes / time
 * (GB/s is the weight stream; at n = 1 it is what memory bandwidth bounds).
 * Every dtype is covered, the weights quantized by bc__quantize_row (for
 * nf4, fp4 and q4_gptq, which no file we write holds, its test quantizers:
 * the same blocks the checkpoint converters produce).
 * A dtype with a repacked layout at a level is timed twice: row-major as
 * stored (level "avx2") and repacked as the model loader does ("avx2rp").
 * Each figure is the best of repeated runs for at least -m seconds (0.3).
 * -b 1 rounds the activations of bf16 weights to bf16 (BC__MATMUL_BF16_ACT).
 * -c 1 times each run by the CPU time of the calling thread instead of the
 * wall clock, on a machine shared with other work: the time the thread waits
 * descheduled is left out (not the caches the others evict). -t 1 only: the
 * matmul then runs on the calling thread.
 *
 * -a KEYS times attention instead: bc__attend_tile of one head of -D DIM
 * values (128) for a tile of -R ROWS query rows (1: a decode step; up to 64:
 * a prompt chunk's tile) at the last positions of KEYS keys, on the calling
 * thread, keys and values in f32, f16 and q8_0 (-d selects), in blocks of 16
 * positions scattered over a pool, per level; prints ns per key (of one
 * row) and the multiply-adds per second (2 * D per row and key it attends).
 * The keys and values of 2048 positions at D = 128 take 1 MiB in f32: they
 * fit L2 on most CPUs.
 */
#include "kernels/isa.h"
#include "kernels/kernels.h"
#include "quant/quants.h"

#include <math.h>
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

/* The -a figures: ns per key and GMAC/s of bc__attend_tile per KV dtype and
 * level. */
static void bench_attend(int n_keys, int D, int rows, const char *dtypes, const char *levels, double min_time,
                         double (*timer)(void)) {
    static const bc_dtype kv_dtypes[] = {BC_DTYPE_F32, BC_DTYPE_F16, BC_DTYPE_Q8_0};
    const int shift = 4, n_blocks = (n_keys + 15) >> shift;
    uint64_t seed = 88172645463325252ULL;
    float *x = malloc((size_t)D * sizeof(float)), *q = malloc((size_t)D * sizeof(float));
    float *scratch = malloc(bc__attend_scratch_floats(rows, D) * sizeof(float));
    float *out = malloc((size_t)rows * (size_t)D * sizeof(float));
    int32_t *blocks = malloc((size_t)n_blocks * sizeof(int32_t));
    free(q);
    q = malloc((size_t)rows * (size_t)D * sizeof(float));
    for (int i = 0; i < rows * D; i++) q[i] = (float)((i * 7919) % 2003) / 2003.0f - 0.5f;
    double macs = 0; /* per run */
    for (int r = 0; r < rows; r++) macs += 2.0 * D * (n_keys - rows + r + 1);
    /* Block b of the sequence at pool block (b * stride) mod n_blocks, the
     * stride coprime to n_blocks: every pool block once, out of order. */
    int stride = 7;
    while (n_blocks % stride == 0) stride += 2;
    for (int b = 0; b < n_blocks; b++) blocks[b] = (int32_t)(((int64_t)b * stride) % n_blocks);
    printf("attention of one head: D %d, %d query rows, %d keys, blocks of %d positions, one thread\n", D, rows, n_keys,
           1 << shift);
    printf("%-6s %-7s %10s %10s %8s\n", "dtype", "level", "us", "ns/key", "GMAC/s");
    for (size_t t = 0; t < sizeof kv_dtypes / sizeof kv_dtypes[0]; t++) {
        const bc_dtype dtype = kv_dtypes[t];
        uint64_t row_bytes;
        if (!listed(dtypes, bc_dtype_name(dtype)) || bc__dtype_row_bytes(dtype, (uint64_t)D, &row_bytes) != 0) continue;
        const size_t block_stride = (size_t)row_bytes << shift, pool_bytes = (size_t)n_blocks * block_stride;
        uint8_t *pool[2] = {malloc(pool_bytes), malloc(pool_bytes)};
        for (int k = 0; k < 2; k++)
            for (size_t r = 0; r < pool_bytes / row_bytes; r++) {
                for (int i = 0; i < D; i++) {
                    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                    x[i] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5) * 2.0f;
                }
                bc__quantize_row(dtype, x, pool[k] + r * row_bytes, D);
            }
        const bc__att_head head = {{pool[0], blocks, block_stride, row_bytes, shift, dtype},
                                   {pool[1], blocks, block_stride, row_bytes, shift, dtype},
                                   D,
                                   1.0f / sqrtf((float)D),
                                   NULL};
        const bc__att_tile tile = {q, (size_t)D, rows, n_keys - rows};
        for (int l = 0; l <= (int)bc__kernels_detect(); l++) {
            if (!listed(levels, bc__isa_name((bc__isa)l))) continue;
            bc__kernels_force(l);
            bc__attend_tile(&tile, &head, scratch, out, (size_t)D); /* warm up */
            double best = 1e30, start = now();
            do {
                double t0 = timer();
                bc__attend_tile(&tile, &head, scratch, out, (size_t)D);
                double el = timer() - t0;
                if (el < best) best = el;
            } while (now() - start < min_time);
            printf("%-6s %-7s %10.2f %10.2f %8.2f\n", bc_dtype_name(dtype), bc__isa_name((bc__isa)l), best * 1e6,
                   best * 1e9 / n_keys, macs / 2 / best * 1e-9);
            fflush(stdout);
        }
        free(pool[0]);
        free(pool[1]);
    }
    bc__kernels_force(-1);
    free(x);
    free(q);
    free(scratch);
    free(out);
    free(blocks);
}

int main(int argc, char **argv) {
    int threads = 2;
    const char *dtypes = NULL, *levels = NULL, *ns = "1,128", *shapes = "4096x4096,11008x4096";
    double min_time = 0.3;
    unsigned flags = 0;
    int cpu_time = 0, attend_keys = 0, attend_dim = 128, attend_rows = 1;
    static const char usage[] = "usage: %s [-t THREADS] [-d DTYPE,...] [-l LEVEL,...] [-n N,...] [-s RxC,...] "
                                "[-m SEC] [-b 0|1] [-c 0|1] [-a KEYS [-D DIM] [-R ROWS]]\n";
    for (int i = 1; i < argc; i += 2) {
        /* --help, or a last option without its value: the usage, not a run of every case */
        const int help = strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0;
        if (help || i + 1 == argc) {
            fprintf(help ? stdout : stderr, usage, argv[0]);
            return help ? 0 : 2;
        }
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
        else if (strcmp(argv[i], "-a") == 0)
            attend_keys = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-D") == 0)
            attend_dim = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-R") == 0)
            attend_rows = atoi(argv[i + 1]);
        else {
            fprintf(stderr, usage, argv[0]);
            return 2;
        }
    }
    double (*timer)(void) = cpu_time ? thread_cpu : now;
    bc__f16_init();
    if (attend_keys > 0) { /* on the calling thread: -c 1 needs no -t 1 */
        if (attend_dim <= 0 || attend_dim % 32 != 0) {
            fprintf(stderr, "-D %d: the head dimension must be a positive multiple of 32 (q8_0 blocks)\n", attend_dim);
            return 2;
        }
        if (attend_rows < 1 || attend_rows > BC__ATT_MAX_ROWS || attend_rows > attend_keys) {
            fprintf(stderr, "-R %d: the query rows must be 1..%d and at most the keys\n", attend_rows,
                    BC__ATT_MAX_ROWS);
            return 2;
        }
        bench_attend(attend_keys, attend_dim, attend_rows, dtypes, levels, min_time, timer);
        return 0;
    }
    if (cpu_time && threads != 1) {
        fprintf(stderr, "-c 1 needs -t 1: the CPU time of the calling thread is that of the matmul only then\n");
        return 2;
    }
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
            bc__weight w = {wq, (bc_dtype)d, rows, cols, "bench", NULL, NULL, NULL, NULL};
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

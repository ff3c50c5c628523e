/*
 * test_kernels.c - the matmul kernels, at each instruction-set level this
 * CPU reports (the lower ones forced in turn), in three steps:
 *
 *   test_c_kernels         the portable C kernels (level C, through
 *                          bc__matmul) against the reference dot product of
 *                          quants.c in double, within the quantization bound
 *                          below: the spec the others are held to;
 *   test_kernels_vs_c      every other kernel (row, four-row, bf16
 *                          activations, every repacked layout) against the C
 *                          kernel on the same activation bytes, within f32
 *                          rounding of the sum (kcase_make's bound), for
 *                          n = 1..5, 8, 16, 32 activation rows;
 *   test_batch_invariance  bc__matmul: a row of a batch gets exactly the bits
 *                          it gets alone, on 1 and 2 threads alike.
 *
 * Bounds of test_c_kernels, for y = sum_i w_i x_i with the reference r
 * computed in double from the dequantized weights:
 *   f32, f16, bf16  |y - r| <= 1e-5 * sum |w_i x_i| + 1e-6 (f32 rounding only)
 *   block formats   |y - r| <= sum over activation blocks B of
 *                              (d_B / 2) * sum_{i in B} |w_i|  + the term above,
 *                   where d_B = max_{i in B} |x_i| / 127 is the step of the
 *                   8-bit activation block (32 values, 256 for the K
 *                   formats): each activation moves by at most d_B / 2.
 *
 * test_attend holds the attention kernels over the paged KV pool (f32, f16,
 * q8_0 rows) to a double reference; its bounds are written above it.
 *
 * Levels: every level the CPU reports (bc__kernels_detect) is run, the lower
 * ones forced, and a test fails there rather than skips (test_levels: each
 * of them must run kernels of its own, and the bf16-activation kernels must
 * run exactly where the CPU has AVX512_BF16); the tests print the levels
 * they ran. A test that needs a level above the CPU's skips.
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

#include "kernels/act.h"
#include "kernels/x86_attend.h"
#include "kernels/code4.h"
#include "kernels/dispatch.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"
#include "kernels/ref.h"
#include "kernels/x86.h"
#include "quant/quants.h"
#include "quant/blocks.h"

static uint64_t rng_state = 1;
static float rng_uniform(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 2685821657736338717ULL;
    return (float)((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int setup(void **state) {
    (void)state;
    bc__f16_init();
    return 0;
}

/* Prints the levels the kernel tests run here: each one the CPU reports. */
static void print_levels_run(void) {
    const bc__isa top = bc__kernels_detect();
    printf("levels run:");
    for (int l = 0; l <= (int)top; l++) printf(" %s", bc__isa_name((bc__isa)l));
    printf(" (this CPU reports %s)", bc__isa_name(top));
}

/* Returns when the CPU has level need; otherwise skips the test, saying what
 * it needed and which levels the kernel tests ran instead. Never skips a
 * level the CPU reports. */
static void skip_unless_level(bc__isa need, const char *test) {
    if (bc__kernels_detect() >= need) return;
    printf("# %s skipped: it needs %s; ", test, bc__isa_name(need));
    print_levels_run();
    printf("\n");
    skip();
}

static const bc_dtype dtypes[] = {BC_DTYPE_F32,  BC_DTYPE_F16,  BC_DTYPE_BF16, BC_DTYPE_Q8_0,   BC_DTYPE_Q4_0,
                                  BC_DTYPE_Q4_1, BC_DTYPE_Q5_0, BC_DTYPE_Q5_1, BC_DTYPE_Q4_K,   BC_DTYPE_Q5_K,
                                  BC_DTYPE_Q6_K, BC_DTYPE_NF4,  BC_DTYPE_FP4,  BC_DTYPE_Q4_GPTQ};

/* Checks one (dtype, rows, cols, n) case of bc__matmul at the current level
 * against the reference in double; returns the largest |y - r| / bound. */
static double check_case(bc__pool *pool, bc_dtype t, int64_t rows, int64_t cols, int n) {
    const bc__dtype_traits *tr = bc__dtype_traits_of(t);
    uint64_t row_bytes;
    assert_int_equal(bc__dtype_row_bytes(t, (uint64_t)cols, &row_bytes), 0);
    float *wf = malloc((size_t)(rows * cols) * sizeof(float)), *x = malloc((size_t)(n * cols) * sizeof(float));
    float *wd = malloc((size_t)cols * sizeof(float));
    uint8_t *wq = malloc((size_t)rows * row_bytes);
    float *y = malloc((size_t)n * (size_t)rows * sizeof(float));
    void *scratch = malloc(bc__matmul_scratch_bytes(cols, n));
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = rng_uniform() * (1.0f + (float)((i / 32) % 3));
    for (int64_t i = 0; i < n * cols; i++) x[i] = rng_uniform() * (i % 17 == 0 ? 4.0f : 1.0f);
    for (int64_t r = 0; r < rows; r++)
        assert_int_equal(bc__quantize_row(t, wf + r * cols, wq + r * row_bytes, cols), 0);
    bc__weight w = {wq, t, rows, cols, "test", NULL, NULL, NULL, NULL};
    bc__matmul(pool, &w, x, n, y, scratch, 0);
    int kind = bc__act_kind(t), ab = kind == 2 ? 256 : 32;
    const double qmax = kind == BC__ACT_A16 || kind == BC__ACT_A16D ? 8191 : 127;
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        bc__dequantize_row(t, wq + r * row_bytes, wd, cols);
        for (int k = 0; k < n; k++) {
            const float *xk = x + (size_t)k * (size_t)cols;
            double ref = bc__dot_ref(t, wq + r * row_bytes, xk, cols), mag = 0, qerr = 0;
            for (int64_t i = 0; i < cols; i++) mag += fabs((double)wd[i] * xk[i]);
            if (kind != 0)
                for (int64_t b = 0; b < cols; b += ab) {
                    double amax = 0, sw = 0;
                    for (int64_t i = b; i < b + ab; i++) {
                        amax = fmax(amax, fabs(xk[i]));
                        sw += fabs(wd[i]);
                    }
                    qerr += amax / qmax / 2 * sw;
                }
            /* nf4 / fp4: the kernels' int16 codes are within 2^-15 of the
             * table, times the block's absmax, against activations within
             * d_a / 2 = amax / 8191 / 2 of x. */
            if (bc__code4_table(t) != NULL)
                for (int64_t b = 0; b < cols; b += 64) {
                    double sx = 0, amax = 0;
                    for (int64_t i = b; i < b + 64; i++) amax = fmax(amax, fabs(xk[i]));
                    for (int64_t i = b; i < b + 64; i++) sx += fabs(xk[i]) + amax / 8191 / 2;
                    qerr += ((const bc__block_nf4 *)(wq + r * row_bytes))[b / 64].d * 0x1p-15 * sx;
                }
            double bound = qerr + 1e-5 * mag + 1e-6, err = fabs(y[(size_t)k * (size_t)rows + (size_t)r] - ref);
            if (err > bound)
                fail_msg("%s %s rows %lld cols %lld n %d: row %lld act %d: got %.7g, reference %.7g, bound %.3g",
                         bc__isa_name(bc__kernels_isa()), tr->name, (long long)rows, (long long)cols, n, (long long)r,
                         k, y[(size_t)k * (size_t)rows + (size_t)r], ref, bound);
            if (err / bound > worst) worst = err / bound;
        }
    }
    free(wf);
    free(x);
    free(wd);
    free(wq);
    free(y);
    free(scratch);
    return worst;
}

/* The C kernels (level C, through bc__matmul on 1 and 2 threads) against
 * the reference in double with the quantization bound above: the spec every
 * other kernel is held to at f32 rounding (test_kernels_vs_c). */
static void test_c_kernels(void **state) {
    (void)state;
    const int64_t rows_list[] = {1, 3, 16, 38};
    const int64_t cols_list[] = {32, 256, 4096 + 256, 33, 47};
    const int n_list[] = {1, 2, 5};
    assert_int_equal(bc__kernels_force(BC__ISA_C), BC__ISA_C);
    for (int threads = 1; threads <= 2; threads++) {
        bc__pool *pool = bc__pool_create(threads);
        assert_non_null(pool);
        for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
            double worst = 0;
            int cases = 0;
            for (size_t ci = 0; ci < sizeof cols_list / sizeof cols_list[0]; ci++) {
                const int64_t cols = cols_list[ci];
                if (cols % bc__dtype_traits_of(dtypes[d])->block_elems) continue;
                for (size_t ri = 0; ri < sizeof rows_list / sizeof rows_list[0]; ri++)
                    for (size_t ni = 0; ni < sizeof n_list / sizeof n_list[0]; ni++) {
                        /* The largest shapes on one thread only. */
                        if (cols > 256 && (rows_list[ri] > 3 || threads == 2)) continue;
                        const double w = check_case(pool, dtypes[d], rows_list[ri], cols, n_list[ni]);
                        if (w > worst) worst = w;
                        cases++;
                    }
            }
            if (threads == 1)
                printf("# C      %-7s %3d cases against the double reference, max error / bound %.3f\n",
                       bc_dtype_name(dtypes[d]), cases, worst);
        }
        bc__pool_free(pool);
    }
    bc__kernels_force(-1);
}

/* The 13-bit activations: a16 and a16d hold the same q (128 hi + lo, lo in
 * 0..127), |q| <= 8191, d = amax / 8191, every value within d / 2, and the
 * sums of q; an all-zero block gives d = 0 and q = 0. */
static void test_quantize_act_a16(void **state) {
    (void)state;
    const int64_t cols = 256;
    float x[256];
    for (int i = 0; i < cols; i++) x[i] = i >= 64 && i < 96 ? 0.0f : rng_uniform() * (i % 7 == 0 ? 9.0f : 1.0f);
    bc__block_a16 a[8];
    bc__block_a16d b[8];
    bc__quantize_act(BC__ACT_A16, x, a, cols);
    bc__quantize_act(BC__ACT_A16D, x, b, cols);
    for (int k = 0; k < 8; k++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[32 * k + i]));
        assert_true(a[k].d == amax / 8191 && b[k].d == a[k].d);
        int sum = 0;
        for (int i = 0; i < 32; i++) {
            const int q = a[k].qs[i];
            assert_true(q >= -8191 && q <= 8191);
            assert_int_equal(128 * b[k].hi[i] + b[k].lo[i], q);
            assert_true(b[k].lo[i] >= 0);
            assert_true(fabs((double)x[32 * k + i] - (double)a[k].d * q) <= a[k].d / 2 * (1 + 1e-6));
            sum += q;
        }
        assert_int_equal(a[k].sum, sum);
        assert_int_equal(b[k].sum, sum);
    }
    assert_true(a[2].d == 0 && a[2].sum == 0);
}

/* The kernels' int16 code tables are round(code * 2^14) of the float ones. */
static void test_code4_tables(void **state) {
    (void)state;
    for (int q = 0; q < 16; q++) {
        assert_int_equal(bc__nf4_i16[q], (int)lrint((double)bc__nf4_code[q] * 16384));
        assert_int_equal(bc__fp4_i16[q], (int)lrint((double)bc__fp4_code[q] * 16384));
    }
}

/* Forcing above the detected level clamps; -1 restores detection. */
static void test_force(void **state) {
    (void)state;
    bc__isa top = bc__kernels_detect();
    assert_int_equal(bc__kernels_force(BC__ISA_COUNT + 5), top);
    assert_int_equal(bc__kernels_force(0), BC__ISA_C);
    assert_int_equal(bc__kernels_force(-1), top);
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
        for (int l = 0; l < BC__ISA_COUNT; l++) assert_non_null(bc__dot_kernel(dtypes[d], (bc__isa)l));
    assert_null(bc__dot_kernel(BC_DTYPE_COUNT, BC__ISA_C));
}

/* Every level the CPU reports runs kernels of its own: a level whose tables
 * were left empty would fall back to the level below and pass every other
 * test on its kernels. The bf16-activation kernels (BC__MATMUL_BF16_ACT) run
 * exactly where the level is AVX-512 and the CPU has AVX512_BF16. */
static void test_levels(void **state) {
    (void)state;
    const bc__isa top = bc__kernels_detect();
    assert_int_equal(bc__kernels_force(-1), top);
    const bool bf16 = top >= BC__ISA_AVX512 && bc__cpu_has_avx512_bf16();
    printf("# ");
    print_levels_run();
    printf("; bf16 activations: %s\n", bf16 ? "run" : "not run (no AVX512_BF16)");
    for (int l = 1; l <= (int)top; l++) {
        int own = 0;
        for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
            own += bc__dot_kernel(dtypes[d], (bc__isa)l) != bc__dot_kernel(dtypes[d], (bc__isa)(l - 1));
        if (own == 0) fail_msg("the CPU reports %s, but no dtype has a kernel of that level", bc__isa_name((bc__isa)l));
    }
    assert_int_equal(bc__kernels_bf16(), bf16);
}

/* bc__matmul_multi over parts of different dtypes (and activation formats)
 * gives each part exactly what bc__matmul gives it alone (the same kernel
 * computes each output), and with BC__MATMUL_SILU_MUL the first part becomes
 * silu(y0) * y1 of those outputs, on 1 and 2 threads. */
static void test_matmul_multi(void **state) {
    (void)state;
    const bc_dtype types[3] = {BC_DTYPE_Q4_0, BC_DTYPE_Q6_K, BC_DTYPE_F16};
    const int64_t rows = 40, cols = 512;
    for (int threads = 1; threads <= 2; threads++) {
        bc__pool *pool = bc__pool_create(threads);
        for (int n = 1; n <= 9; n += 4) {
            float *x = malloc((size_t)(n * cols) * sizeof(float));
            for (int64_t i = 0; i < n * cols; i++) x[i] = rng_uniform();
            void *scratch = malloc(bc__matmul_scratch_bytes(cols, n));
            bc__weight w[3];
            const bc__weight *ws[3];
            float *alone[3], *multi[3];
            uint8_t *q[3];
            for (int p = 0; p < 3; p++) {
                uint64_t row_bytes;
                assert_int_equal(bc__dtype_row_bytes(types[p], (uint64_t)cols, &row_bytes), 0);
                q[p] = malloc((size_t)rows * row_bytes);
                float *wf = malloc((size_t)cols * sizeof(float));
                for (int64_t r = 0; r < rows; r++) {
                    for (int64_t i = 0; i < cols; i++) wf[i] = rng_uniform();
                    bc__quantize_row(types[p], wf, q[p] + r * row_bytes, cols);
                }
                free(wf);
                w[p] = (bc__weight){q[p], types[p], rows, cols, "test", NULL, NULL, NULL, NULL};
                bc__weight_repack(&w[p]);
                ws[p] = &w[p];
                alone[p] = malloc((size_t)(n * rows) * sizeof(float));
                multi[p] = malloc((size_t)(n * rows) * sizeof(float));
                bc__matmul(pool, &w[p], x, n, alone[p], scratch, 0);
            }
            bc__matmul_multi(pool, ws, 3, x, n, multi, scratch, 0);
            for (int p = 0; p < 3; p++) assert_memory_equal(alone[p], multi[p], (size_t)(n * rows) * sizeof(float));
            bc__matmul_multi(pool, ws, 2, x, n, multi, scratch, BC__MATMUL_SILU_MUL);
            for (int64_t i = 0; i < n * rows; i++) {
                float g = alone[0][i], want = g / (1.0f + expf(-g)) * alone[1][i];
                assert_float_equal(multi[0][i], want, 1e-6 * fabs(want));
                assert_true(multi[1][i] == alone[1][i]);
            }
            for (int p = 0; p < 3; p++) {
                bc__weight_repack_free(&w[p]);
                free(q[p]);
                free(alone[p]);
                free(multi[p]);
            }
            free(x);
            free(scratch);
        }
        bc__pool_free(pool);
    }
}

/* A weight with a column order (bc__weight.perm, GPTQ desc_act) multiplies
 * x[:, perm]: bit for bit what the same weight without it gives on the
 * activations gathered by hand, alone and as parts of bc__matmul_multi with
 * different orders (gate and up) under BC__MATMUL_SILU_MUL; and its rows
 * read back in the input order (row[perm[c]] = stored column c). */
static void test_matmul_perm(void **state) {
    (void)state;
    const int64_t rows = 24, cols = 256;
    const int n = 3;
    bc__pool *pool = bc__pool_create(2);
    uint64_t row_bytes;
    assert_int_equal(bc__dtype_row_bytes(BC_DTYPE_Q4_GPTQ, (uint64_t)cols, &row_bytes), 0);
    float *wf = malloc((size_t)cols * sizeof(float)), *row = malloc((size_t)cols * sizeof(float));
    float *stored = malloc((size_t)cols * sizeof(float));
    float *x = malloc((size_t)(n * cols) * sizeof(float)), *xg = malloc((size_t)(n * cols) * sizeof(float));
    float *y[2], *want[2];
    void *scratch = malloc(bc__matmul_scratch_bytes(cols, n));
    uint8_t *q[2];
    int32_t *perm[2];
    bc__weight w[2], plain[2];
    for (int64_t i = 0; i < n * cols; i++) x[i] = rng_uniform();
    for (int p = 0; p < 2; p++) {
        q[p] = malloc((size_t)rows * row_bytes);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < cols; i++) wf[i] = rng_uniform();
            bc__quantize_row(BC_DTYPE_Q4_GPTQ, wf, q[p] + r * row_bytes, cols);
        }
        perm[p] = malloc((size_t)cols * sizeof(int32_t)); /* a random order (Fisher-Yates) */
        for (int64_t i = 0; i < cols; i++) perm[p][i] = (int32_t)i;
        for (int64_t i = cols - 1; i > 0; i--) {
            int64_t j = (int64_t)((rng_uniform() + 1.0f) * 0.5f * (float)(i + 1)) % (i + 1);
            int32_t tmp = perm[p][i];
            perm[p][i] = perm[p][j];
            perm[p][j] = tmp;
        }
        plain[p] = (bc__weight){q[p], BC_DTYPE_Q4_GPTQ, rows, cols, "test", NULL, NULL, NULL, NULL};
        w[p] = plain[p];
        w[p].perm = perm[p];
        y[p] = malloc((size_t)(n * rows) * sizeof(float));
        want[p] = malloc((size_t)(n * rows) * sizeof(float));
        for (int k = 0; k < n; k++)
            for (int64_t c = 0; c < cols; c++) xg[k * cols + c] = x[k * cols + perm[p][c]];
        bc__matmul(pool, &plain[p], xg, n, want[p], scratch, 0);
        bc__matmul(pool, &w[p], x, n, y[p], scratch, 0);
        assert_memory_equal(y[p], want[p], (size_t)(n * rows) * sizeof(float));
        for (int64_t r = 0; r < rows; r++) {
            bc__weight_row_f32(&w[p], r, row);
            bc__weight_row_f32(&plain[p], r, stored);
            for (int64_t c = 0; c < cols; c++) assert_true(row[perm[p][c]] == stored[c]);
        }
    }
    const bc__weight *ws[2] = {&w[0], &w[1]};
    bc__matmul_multi(pool, ws, 2, x, n, y, scratch, BC__MATMUL_SILU_MUL);
    for (int64_t i = 0; i < n * rows; i++) {
        float g = want[0][i], expect = g / (1.0f + expf(-g)) * want[1][i];
        assert_float_equal(y[0][i], expect, 1e-6 * fabs(expect));
        assert_true(y[1][i] == want[1][i]);
    }
    for (int p = 0; p < 2; p++) {
        free(q[p]);
        free(perm[p]);
        free(y[p]);
        free(want[p]);
    }
    free(wf);
    free(row);
    free(stored);
    free(x);
    free(xg);
    free(scratch);
    bc__pool_free(pool);
}

/* The AVX2 activation quantizer writes exactly the blocks of the C one. */
static void test_quantize_act(void **state) {
    (void)state;
    skip_unless_level(BC__ISA_AVX2, "test_quantize_act");
    const int64_t cols = 4096;
    float *x = malloc((size_t)cols * sizeof(float));
    for (int64_t i = 0; i < cols; i++) x[i] = rng_uniform() * (i % 97 == 0 ? 50.0f : 1.0f);
    for (int64_t i = 256; i < 512; i++) x[i] = 0.0f; /* an all-zero block of each kind */
    x[1000] = 3e38f;                                 /* extremes */
    x[1001] = -3e38f;
    x[2000] = 1e-38f;
    for (int kind = 1; kind <= 2; kind++) {
        size_t bytes = bc__act_row_bytes(kind, cols);
        void *c = malloc(bytes), *v = malloc(bytes);
        memset(c, 0xAB, bytes);
        memset(v, 0xCD, bytes);
        bc__kernels_force(BC__ISA_C);
        bc__quantize_act(kind, x, c, cols);
        bc__kernels_force(BC__ISA_AVX2);
        bc__quantize_act(kind, x, v, cols);
        bc__kernels_force(-1);
        assert_memory_equal(c, v, bytes);
        free(c);
        free(v);
    }
    free(x);
}

/* |offset| of weight i of a row whose kernel adds the offset apart from the
 * quants, through the activation's sums: m of q4_1 / q5_1, dmin * m_j of
 * q4_K / q5_K; 0 where the offset is a zero point subtracted in integers. */
static double min_offset(bc_dtype t, const uint8_t *row, int64_t i) {
    switch (t) {
    case BC_DTYPE_Q4_1: return fabs(bc__f16_to_f32(((const bc__block_q4_1 *)row)[i / 32].m));
    case BC_DTYPE_Q5_1: return fabs(bc__f16_to_f32(((const bc__block_q5_1 *)row)[i / 32].m));
    case BC_DTYPE_Q4_K:
    case BC_DTYPE_Q5_K: {
        const uint8_t *scales = t == BC_DTYPE_Q4_K ? ((const bc__block_q4_K *)row)[i / 256].scales
                                                   : ((const bc__block_q5_K *)row)[i / 256].scales;
        const uint16_t dmin = t == BC_DTYPE_Q4_K ? ((const bc__block_q4_K *)row)[i / 256].dmin
                                                 : ((const bc__block_q5_K *)row)[i / 256].dmin;
        uint8_t sc, m;
        bc__k_scale_min((int)(i % 256 / 32), scales, &sc, &m);
        return fabs(bc__f16_to_f32(dmin)) * m;
    }
    default: return 0;
    }
}

/* Value i of activation block b as the kernels see it (d * q). */
static float act_value(int kind, const void *act, int64_t b, int i) {
    switch (kind) {
    case 2: return ((const bc__block_a8k *)act)[b].d * ((const bc__block_a8k *)act)[b].qs[i];
    case BC__ACT_A16: return ((const bc__block_a16 *)act)[b].d * ((const bc__block_a16 *)act)[b].qs[i];
    case BC__ACT_A16D: {
        const bc__block_a16d *y = (const bc__block_a16d *)act + b;
        return y->d * (float)(128 * y->hi[i] + y->lo[i]);
    }
    default: return ((const bc__block_a8 *)act)[b].d * ((const bc__block_a8 *)act)[b].qs[i];
    }
}

/* ------------------------------------------------------------------------ */
/* Every kernel against the C kernel on the same activation bytes           */
/* ------------------------------------------------------------------------ */

/* |o_i|: the part of weight i's terms that a kernel adds apart from the
 * weight's value w_i, and takes away again, in f32 or in an int32 lane that
 * is rounded to f32 on its own: the zero point of q4_0 (8 d), q5_0 (16 d),
 * q4_gptq (z d), and of q8_0 biased to unsigned under VNNI (128 d); the
 * -32 of q6_K (32 d sc); the min added through the activation sums of q4_1 /
 * q5_1 (m) and q4_K / q5_K (dmin m_j). For nf4 / fp4, whose kernels multiply
 * the int16 codes round(code * 2^14), the code's rounding (absmax 2^-15). */
static double term_offset(bc_dtype t, const uint8_t *row, int64_t i) {
    switch (t) {
    case BC_DTYPE_Q8_0: return 128 * fabs(bc__f16_to_f32(((const bc__block_q8_0 *)row)[i / 32].d));
    case BC_DTYPE_Q4_0: return 8 * fabs(bc__f16_to_f32(((const bc__block_q4_0 *)row)[i / 32].d));
    case BC_DTYPE_Q5_0: return 16 * fabs(bc__f16_to_f32(((const bc__block_q5_0 *)row)[i / 32].d));
    case BC_DTYPE_Q4_GPTQ: {
        const bc__block_q4_gptq *b = (const bc__block_q4_gptq *)row + i / 32;
        return b->z * fabs(bc__f16_to_f32(b->d));
    }
    case BC_DTYPE_Q6_K: {
        const bc__block_q6_K *b = (const bc__block_q6_K *)row + i / 256;
        return 32 * fabs(bc__f16_to_f32(b->d) * b->scales[i % 256 / 16]);
    }
    case BC_DTYPE_NF4:
    case BC_DTYPE_FP4: return fabs(((const bc__block_nf4 *)row)[i / 64].d) * 0x1p-15;
    default: return min_offset(t, row, i);
    }
}

/* One matrix and its activation rows, made once for every kernel that reads
 * them: the weights quantized to t, the activation rows in t's format (the
 * same bytes for the kernel under test and the C kernel), and per weight row
 * r and activation row k the C kernel's output yc and the bound on the
 * difference of any other kernel from it. */
typedef struct kcase {
    bc_dtype t;
    int64_t rows, cols;
    int n_act;
    bool bf16_act; /* bf16 weights against bf16 activations (BC__ACT_BF16) */
    uint64_t row_bytes;
    uint8_t *wq;   /* (rows, row_bytes) */
    float *x;      /* (n_act, cols) the f32 activations */
    size_t as;     /* bytes of an activation row as the kernels read it */
    uint8_t *act;  /* (n_act, as) */
    float *yc;     /* (n_act, rows) */
    double *bound; /* (n_act, rows) */
} kcase;

/* The bound, for y = sum of terms t_j, each a product (a weight value, or a
 * block's exact integer sum, times f32 scales) rounded a few times (scale
 * products, the conversion of an int32 lane, the multiply or the FMA: at
 * most 4 roundings of u = 2^-24), then summed in f32 in some order (lanes,
 * even and odd accumulators, a horizontal sum, the min terms apart). In any
 * order, a term goes through at most D additions, each rounding the partial
 * sum that holds it by at most u of that partial sum, and a partial sum is
 * at most the sum of the |t_j| under it; so to first order
 *   |y - exact| <= (D + 4) u M,   M = sum_j |t_j|,
 * for the kernel under test and for the C kernel alike, and
 *   |y - yc| <= 2 (D + 4) u M.
 * M: the terms are per element (or per lane of a few elements) products of
 * the weight and activation values as the kernels see them (xa = d * q for
 * the quantized activations): at most |w_i| |xa_i| for a weight w_i, plus
 * 2 |o_i| |xa_i| where a kernel adds an offset o_i apart and takes it away
 * again (term_offset), so M = sum_i (|w_i| + 2 |o_i|) |xa_i|.
 * D: a block format adds at most two f32 terms per 32 columns (some kernels
 * split a block's integer sum in two), a float format at most one term per
 * 8 columns in a lane; plus the horizontal sums (16 lanes: 4), the tails of
 * the floats (up to 15 columns one by one) and the separate min or offset
 * sums: D = 2 cols / 32 + 16 for the blocks, cols / 8 + 24 for the floats.
 * At 4352 columns, 2 (D + 4) u is about 3.4e-5 (q8_0), 6.7e-5 (f16) of M,
 * while a block of 32 terms left out, a kernel returning 0, or one row
 * scaled by another's scales moves y by about sqrt(32 / cols) of M or more. */
static void kcase_make(kcase *c, bc_dtype t, int64_t rows, int64_t cols, int n_act, bool bf16_act) {
    *c = (kcase){.t = t, .rows = rows, .cols = cols, .n_act = n_act, .bf16_act = bf16_act};
    const int kind = bf16_act ? BC__ACT_BF16 : bc__act_kind(t);
    assert_int_equal(bc__dtype_row_bytes(t, (uint64_t)cols, &c->row_bytes), 0);
    float *wf = malloc((size_t)cols * sizeof(float)), *wd = malloc((size_t)cols * sizeof(float));
    float *xa = malloc((size_t)(n_act * cols) * sizeof(float));
    double *o = malloc((size_t)cols * sizeof(double));
    c->wq = malloc((size_t)rows * c->row_bytes);
    c->x = malloc((size_t)(n_act * cols) * sizeof(float));
    c->as = bc__act_row_bytes(kind, cols);
    c->act = malloc((size_t)n_act * c->as);
    c->yc = malloc((size_t)(n_act * rows) * sizeof(float));
    c->bound = malloc((size_t)(n_act * rows) * sizeof(double));
    /* Weights of either sign or one sign per row (large mins), each row on
     * its own scale so that one row's scales in another's place show. */
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++)
            wf[i] = (rng_uniform() * (1.0f + (float)((i / 32) % 3)) + (float)(r % 3) - 1.0f) *
                    (1.0f + 0.37f * (float)(r % 5));
        assert_int_equal(bc__quantize_row(t, wf, c->wq + r * c->row_bytes, cols), 0);
    }
    for (int64_t i = 0; i < n_act * cols; i++) c->x[i] = rng_uniform() * (i % 17 == 0 ? 4.0f : 1.0f);
    /* The activations once, and their values as the kernels see them. */
    const int ab = kind == BC__ACT_A8K ? 256 : 32;
    float *ref_act = malloc((size_t)(n_act * cols) * sizeof(float)); /* the C kernel's f32 rows (bf16_act) */
    for (int k = 0; k < n_act; k++) {
        const float *xk = c->x + (size_t)k * (size_t)cols;
        uint8_t *ak = c->act + (size_t)k * c->as;
        float *xak = xa + (size_t)k * (size_t)cols;
        bc__quantize_act(kind, xk, ak, cols);
        if (kind == BC__ACT_F32)
            memcpy(xak, xk, (size_t)cols * sizeof(float));
        else if (kind == BC__ACT_BF16)
            for (int64_t i = 0; i < cols; i++) xak[i] = bc__bf16_to_f32(((const uint16_t *)ak)[i]);
        else
            for (int64_t b = 0; b < cols / ab; b++)
                for (int i = 0; i < ab; i++) xak[b * ab + i] = act_value(kind, ak, b, i);
    }
    memcpy(ref_act, xa, (size_t)(n_act * cols) * sizeof(float));
    const bc__dot_fn ref = bc__dot_c[t];
    const uint8_t *ra = bf16_act ? (const uint8_t *)ref_act : c->act;
    const size_t ras = bf16_act ? (size_t)cols * sizeof(float) : c->as;
    const bool blocks = bc__dtype_traits_of(t)->block_elems > 1;
    const double D = blocks ? 2.0 * (double)(cols / 32) + 16 : (double)(cols / 8) + 24;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *row = c->wq + r * c->row_bytes;
        bc__dequantize_row(t, row, wd, cols);
        for (int64_t i = 0; i < cols; i++) o[i] = term_offset(t, row, i);
        for (int k = 0; k < n_act; k += BC__MAX_NA) {
            const int na = n_act - k < BC__MAX_NA ? n_act - k : BC__MAX_NA;
            float out[BC__MAX_NA];
            ref(cols, row, ra + (size_t)k * ras, ras, na, out);
            for (int j = 0; j < na; j++) c->yc[(size_t)(k + j) * (size_t)rows + (size_t)r] = out[j];
        }
        for (int k = 0; k < n_act; k++) {
            const float *xak = xa + (size_t)k * (size_t)cols;
            double M = 0;
            for (int64_t i = 0; i < cols; i++) M += (fabs(wd[i]) + 2 * o[i]) * fabs(xak[i]);
            c->bound[(size_t)k * (size_t)rows + (size_t)r] = 2 * (D + 4) * 0x1p-24 * M + 1e-30;
        }
    }
    free(wf);
    free(wd);
    free(xa);
    free(o);
    free(ref_act);
}

static void kcase_free(kcase *c) {
    free(c->wq);
    free(c->x);
    free(c->act);
    free(c->yc);
    free(c->bound);
}

/* A kernel of a level, of one of the three kinds (kernel_types.h). */
typedef struct kkind {
    char name[48];
    bc__dot_fn dot;
    bc__gemm4_fn gemm4;
    const bc__pack_layout *pack;
} kkind;

/* y (n, rows): the kernel on every row of c against activation rows [0, n),
 * in calls of as many activation rows as it takes (as the matmul makes
 * them). */
static void kkind_run(const kkind *kk, const kcase *c, int n, float *y) {
    const int64_t rows = c->rows, cols = c->cols;
    const size_t rb = c->row_bytes;
    for (size_t i = 0; i < (size_t)(n * rows); i++) y[i] = NAN;
    if (kk->pack != NULL) {
        const bc__pack_layout *l = kk->pack;
        const size_t gb = l->group_bytes(cols);
        void *packed = aligned_alloc(64, ((size_t)(rows / l->rows) * gb + 63) / 64 * 64);
        float out[BC__PACK_MAX_NA * BC__PACK_MAX_ROWS];
        for (int64_t g = 0; g < rows / l->rows; g++) {
            char *group = (char *)packed + (size_t)g * gb;
            l->pack(c->wq + (size_t)g * (size_t)l->rows * rb, rb, cols, group);
            for (int i = 0; i < n; i += l->max_na) {
                const int na = n - i < l->max_na ? n - i : l->max_na;
                l->kernel(cols, group, c->act + (size_t)i * c->as, c->as, na, out);
                for (int k = 0; k < na; k++)
                    memcpy(y + (size_t)(i + k) * (size_t)rows + (size_t)(g * l->rows), out + k * l->rows,
                           (size_t)l->rows * sizeof(float));
            }
        }
        free(packed);
        return;
    }
    for (int64_t r = 0; r < rows; r += kk->gemm4 != NULL ? 4 : 1)
        for (int i = 0; i < n; i += BC__MAX_NA) {
            const int na = n - i < BC__MAX_NA ? n - i : BC__MAX_NA;
            const uint8_t *a = c->act + (size_t)i * c->as;
            float out[4 * BC__MAX_NA];
            if (kk->gemm4 != NULL) {
                kk->gemm4(cols, c->wq + (size_t)r * rb, rb, a, c->as, na, out);
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < na; k++)
                        y[(size_t)(i + k) * (size_t)rows + (size_t)(r + j)] = out[j * BC__MAX_NA + k];
            } else {
                kk->dot(cols, c->wq + (size_t)r * rb, a, c->as, na, out);
                for (int k = 0; k < na; k++) y[(size_t)(i + k) * (size_t)rows + (size_t)r] = out[k];
            }
        }
}

/* The kernels of dtype t at level (forced): the row kernel, the four-row
 * kernel where there is one, the bf16-activation kernels where they run,
 * and every layout a matrix of 8, 16, 24 or 48 rows gets (an AVX-512 CPU
 * gives 24 rows the AVX2 layout); returns how many. */
static int kernels_of(bc_dtype t, bc__isa level, bool bf16_act, kkind *out) {
    int n = 0;
    if (bf16_act) {
        out[n++] = (kkind){"bf16-act row", bc__dot_bf16_act_bf16, NULL, NULL};
        out[n++] = (kkind){"bf16-act 4-row", NULL, bc__gemm4_bf16_act_bf16, NULL};
        return n;
    }
    out[n++] = (kkind){"row", bc__dot_kernel(t, level), NULL, NULL};
    if (bc__gemm4_kernel(t, level) != NULL) out[n++] = (kkind){"4-row", NULL, bc__gemm4_kernel(t, level), NULL};
    const int64_t rows_list[] = {8, 16, 24, 48};
    for (size_t i = 0; i < sizeof rows_list / sizeof rows_list[0]; i++) {
        const bc__pack_layout *l = bc__pack_layout_for(t, level, rows_list[i]);
        bool seen = l == NULL;
        for (int j = 0; j < n; j++) seen |= out[j].pack == l;
        if (seen) continue;
        out[n] = (kkind){"", NULL, NULL, l};
        snprintf(out[n].name, sizeof out[n].name, "layout %s %d rows", bc__isa_name(l->isa), l->rows);
        n++;
    }
    return n;
}

/* Every kernel of every level the CPU reports (the lower ones forced), for
 * every dtype, against the C kernel (bc__dot_c, ref.c) on the same
 * activation bytes, within f32 rounding of the sum (kcase_make's bound):
 * the row kernel, the four-row kernel, the bf16-activation kernels (against
 * the C kernel on the bf16 activations widened back to f32) and every
 * layout, with n = 1..5, 8, 16, 32 activation rows (in calls of at most
 * what the kernel takes, as the matmul makes them). Shapes: 8, 24, 48 and 16
 * rows (whole groups of the layouts that fit) by 1 and 3 block columns, a
 * few hundred columns and 4096 + 256; the floats also by 47 and 424 columns
 * (the SIMD tails of 8 and 16). A level the CPU reports is never skipped. */
static void test_kernels_vs_c(void **state) {
    (void)state;
    const int n_list[] = {1, 2, 3, 4, 5, 8, 16, 32};
    const bc__isa top = bc__kernels_detect();
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
        for (int bf16_act = 0; bf16_act <= (dtypes[d] == BC_DTYPE_BF16); bf16_act++) {
            const bc_dtype t = dtypes[d];
            const int64_t be = bc__dtype_traits_of(t)->block_elems, blk = be == 1 ? 32 : be;
            const int64_t shapes[][2] = {{8, blk},
                                         {24, 3 * blk},
                                         {48, blk > 32 ? 5 * blk : 13 * blk},
                                         {16, 4096 + 256},
                                         {24, 4096 + 256},
                                         {16, be == 1 ? 47 : 0},
                                         {24, be == 1 ? 424 : 0}};
            kcase cases[sizeof shapes / sizeof shapes[0]];
            int n_cases = 0;
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                if (shapes[s][1] > 0) kcase_make(&cases[n_cases++], t, shapes[s][0], shapes[s][1], 32, bf16_act);
            for (int level = 0; level <= (int)top; level++) {
                assert_int_equal(bc__kernels_force(level), level);
                if (bf16_act && !bc__kernels_bf16()) continue;
                kkind kinds[8];
                const int n_kinds = kernels_of(t, (bc__isa)level, bf16_act, kinds);
                for (int ki = 0; ki < n_kinds; ki++) {
                    const kkind *kk = &kinds[ki];
                    double worst = 0;
                    int runs = 0;
                    for (int ci = 0; ci < n_cases; ci++) {
                        const kcase *c = &cases[ci];
                        if (kk->pack != NULL && c->rows % kk->pack->rows != 0) continue;
                        float *y = malloc((size_t)(32 * c->rows) * sizeof(float));
                        for (size_t ni = 0; ni < sizeof n_list / sizeof n_list[0]; ni++) {
                            const int n = n_list[ni];
                            kkind_run(kk, c, n, y);
                            runs++;
                            for (int k = 0; k < n; k++)
                                for (int64_t r = 0; r < c->rows; r++) {
                                    const size_t i = (size_t)k * (size_t)c->rows + (size_t)r;
                                    const double err = fabs((double)y[i] - c->yc[i]);
                                    if (!(err <= c->bound[i]))
                                        fail_msg("%s %s %s%s rows %lld cols %lld n %d: row %lld act %d: got %.9g, "
                                                 "C kernel %.9g, difference %.3g > bound %.3g",
                                                 bc__isa_name((bc__isa)level), kk->name, bc_dtype_name(t),
                                                 bf16_act ? " (bf16 activations)" : "", (long long)c->rows,
                                                 (long long)c->cols, n, (long long)r, k, y[i], c->yc[i], err,
                                                 c->bound[i]);
                                    if (err / c->bound[i] > worst) worst = err / c->bound[i];
                                }
                        }
                        free(y);
                    }
                    if (runs == 0)
                        fail_msg("%s %s %s: no shape fills its groups", bc__isa_name((bc__isa)level), kk->name,
                                 bc_dtype_name(t));
                    printf("# %-6s %-22s %-7s %3d runs, max |y - C| / bound %.4f\n", bc__isa_name((bc__isa)level),
                           kk->name, bc_dtype_name(t), runs, worst);
                }
            }
            for (int ci = 0; ci < n_cases; ci++) kcase_free(&cases[ci]);
        }
    bc__kernels_force(-1);
    printf("# ");
    print_levels_run();
    printf("\n");
}

/* A row of a batch gets the bits it gets alone (a user's output does not
 * depend on who else is in the batch), whatever kernel computes it: for
 * every level the CPU reports, every dtype, row-major and repacked (bf16:
 * f32 and, where they run, bf16 activations), bc__matmul of n = 2, 3, 5, 8,
 * 16, 32, 33 activation rows gives each row exactly (memcmp) what
 * bc__matmul of that row alone gives, on 1 and on 2 threads alike; and
 * those outputs are within kcase_make's bound of the C kernel, which checks
 * the matmul's plumbing (which output a kernel's result lands in). Rows:
 * 48 (the AVX-512 layouts), 40 (the AVX2 layout on an AVX-512 CPU) and 22
 * (no layout: the four-row kernels and then the row kernel on the last 2). */
static void test_batch_invariance(void **state) {
    (void)state;
    const int n_list[] = {2, 3, 5, 8, 16, 32, 33};
    const int64_t rows_list[] = {48, 40, 22};
    const bc__isa top = bc__kernels_detect();
    bc__pool *pools[2] = {bc__pool_create(1), bc__pool_create(2)};
    assert_non_null(pools[0]);
    assert_non_null(pools[1]);
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
        for (size_t ri = 0; ri < sizeof rows_list / sizeof rows_list[0]; ri++) {
            const bc_dtype t = dtypes[d];
            const int64_t rows = rows_list[ri], cols = bc__dtype_traits_of(t)->block_elems == 1 ? 768 + 13 : 768;
            kcase c[2];
            kcase_make(&c[0], t, rows, cols, 33, false);
            const bool bf16 = t == BC_DTYPE_BF16;
            if (bf16) kcase_make(&c[1], t, rows, cols, 33, true);
            float *y = malloc((size_t)(33 * rows) * sizeof(float)), *y2 = malloc((size_t)(33 * rows) * sizeof(float));
            float *one = malloc((size_t)rows * sizeof(float));
            void *scratch = malloc(bc__matmul_scratch_bytes(cols, 33));
            for (int level = 0; level <= (int)top; level++) {
                assert_int_equal(bc__kernels_force(level), level);
                /* variant 0 row-major, 1 repacked (bf16: bf16 activations) */
                for (int v = 0; v <= 1; v++) {
                    const kcase *k0 = &c[bf16 ? v : 0];
                    const unsigned flags = bf16 && v ? BC__MATMUL_BF16_ACT : 0;
                    bc__weight w = {k0->wq, t, rows, cols, "test", NULL, NULL, NULL, NULL};
                    if (v && !bf16) {
                        /* a copy exactly where the level has a layout whose groups divide the rows */
                        const bc__pack_layout *l = bc__pack_layout_for(t, (bc__isa)level, rows);
                        assert_int_equal(bc__weight_repack(&w), l != NULL);
                        if (l == NULL) continue;
                        assert_ptr_equal(w.pack, l);
                    }
                    if (flags && !bc__kernels_bf16()) continue;
                    const char *how = w.packed != NULL ? "repacked" : flags ? "bf16 activations" : "row-major";
                    for (size_t ni = 0; ni < sizeof n_list / sizeof n_list[0]; ni++) {
                        const int n = n_list[ni];
                        bc__matmul(pools[0], &w, k0->x, n, y, scratch, flags);
                        bc__matmul(pools[1], &w, k0->x, n, y2, scratch, flags);
                        if (memcmp(y, y2, (size_t)(n * rows) * sizeof(float)) != 0)
                            fail_msg("%s %s %s rows %lld n %d: 1 and 2 threads differ in bits",
                                     bc__isa_name((bc__isa)level), bc_dtype_name(t), how, (long long)rows, n);
                        for (int k = 0; k < n; k++) {
                            bc__matmul(pools[0], &w, k0->x + (size_t)k * (size_t)cols, 1, one, scratch, flags);
                            for (int64_t r = 0; r < rows; r++) {
                                const size_t i = (size_t)k * (size_t)rows + (size_t)r;
                                if (memcmp(&one[r], &y[i], sizeof(float)) != 0)
                                    fail_msg("%s %s %s rows %lld n %d: row %lld act %d: %.9g in the batch, %.9g "
                                             "alone (not batch invariant)",
                                             bc__isa_name((bc__isa)level), bc_dtype_name(t), how, (long long)rows, n,
                                             (long long)r, k, y[i], one[r]);
                                if (!(fabs((double)y[i] - k0->yc[i]) <= k0->bound[i]))
                                    fail_msg("%s %s %s rows %lld n %d: row %lld act %d: %.9g, C kernel %.9g, "
                                             "bound %.3g",
                                             bc__isa_name((bc__isa)level), bc_dtype_name(t), how, (long long)rows, n,
                                             (long long)r, k, y[i], k0->yc[i], k0->bound[i]);
                            }
                        }
                    }
                    bc__weight_repack_free(&w);
                }
            }
            kcase_free(&c[0]);
            if (bf16) kcase_free(&c[1]);
            free(y);
            free(y2);
            free(one);
            free(scratch);
        }
    bc__kernels_force(-1);
    bc__pool_free(pools[0]);
    bc__pool_free(pools[1]);
    printf("# ");
    print_levels_run();
    printf("\n");
}

/* ------------------------------------------------------------------------ */
/* Attention over the paged KV pool                                         */
/* ------------------------------------------------------------------------ */

/* An IEEE half as a double, decoded here from its bits (not through the
 * table of quants.c that the C kernel uses). */
static double half_to_double(uint16_t h) {
    const int e = (h >> 10) & 31, m = h & 1023;
    double x = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return h >> 15 ? -x : x;
}

/* Value i of a row of dtype, from the layout of kernels.h. */
static double kv_value(bc_dtype dtype, const uint8_t *row, int i) {
    if (dtype == BC_DTYPE_F32) {
        float f;
        memcpy(&f, row + 4 * (size_t)i, sizeof f);
        return f;
    }
    if (dtype == BC_DTYPE_F16) return half_to_double((uint16_t)(row[2 * i] | row[2 * i + 1] << 8));
    const uint8_t *b = row + (size_t)(i / 32) * 34;
    return half_to_double((uint16_t)(b[0] | b[1] << 8)) * (double)(int8_t)b[2 + i % 32];
}

static size_t kv_row_bytes(bc_dtype dtype, int D) {
    return dtype == BC_DTYPE_F32 ? 4 * (size_t)D : dtype == BC_DTYPE_F16 ? 2 * (size_t)D : (size_t)D / 32 * 34;
}

/* A random row of D values of dtype, values below about 3 in size. */
static void kv_random_row(bc_dtype dtype, int D, uint8_t *row) {
    for (int i = 0; i < D; i++) {
        if (dtype == BC_DTYPE_F32) {
            float f = rng_uniform() * 3;
            memcpy(row + 4 * (size_t)i, &f, sizeof f);
        } else if (dtype == BC_DTYPE_F16) {
            uint16_t h = bc__f32_to_f16(rng_uniform() * 3);
            memcpy(row + 2 * (size_t)i, &h, sizeof h);
        } else {
            uint8_t *b = row + (size_t)(i / 32) * 34;
            if (i % 32 == 0) {
                uint16_t d = bc__f32_to_f16(0.002f + 0.02f * fabsf(rng_uniform()));
                memcpy(b, &d, sizeof d);
            }
            /* -128 .. 127, the whole int8 range */
            b[2 + i % 32] = (uint8_t)(int8_t)(int)floorf(rng_uniform() * 128);
        }
    }
}

#define ATT_MAX_KEYS 600

/* The keys and values of positions 0 .. ATT_MAX_KEYS - 1 laid out in a pool
 * of blocks of 1 << shift positions: K and V of a position side by side in a
 * slot with padding (as the heads of a layer would sit), the blocks of the
 * sequence scattered over the pool in a shuffled order, a few pool blocks
 * unused. */
typedef struct att_layout {
    uint8_t *pool;
    int32_t *blocks;
    bc__kv_rows k, v;
} att_layout;

static void att_layout_make(att_layout *l, bc_dtype dtype, int D, int shift, uint8_t *const *krows,
                            uint8_t *const *vrows) {
    const size_t row_bytes = kv_row_bytes(dtype, D), row_stride = 2 * row_bytes + 16;
    const int bsize = 1 << (shift < 16 ? shift : 16);
    const int n_blocks = shift >= 16 ? 1 : (ATT_MAX_KEYS + bsize - 1) / bsize, n_pool = n_blocks + 3;
    const size_t block_stride = (size_t)(shift >= 16 ? ATT_MAX_KEYS : bsize) * row_stride + 32;
    int32_t *perm = malloc((size_t)n_pool * sizeof(int32_t));
    for (int i = 0; i < n_pool; i++) perm[i] = i;
    for (int i = n_pool - 1; i > 0; i--) {
        int r = (int)((rng_uniform() + 1) * 0.5f * (float)(i + 1));
        if (r > i) r = i;
        int32_t t = perm[i];
        perm[i] = perm[r];
        perm[r] = t;
    }
    l->pool = calloc((size_t)n_pool, block_stride);
    l->blocks = perm;
    for (int j = 0; j < ATT_MAX_KEYS; j++) {
        const int b = shift >= 16 ? 0 : j >> shift, in = shift >= 16 ? j : j & (bsize - 1);
        uint8_t *slot = l->pool + (size_t)perm[b] * block_stride + (size_t)in * row_stride;
        memcpy(slot, krows[j], row_bytes);
        memcpy(slot + row_bytes + 8, vrows[j], row_bytes);
    }
    l->k = (bc__kv_rows){l->pool, perm, block_stride, row_stride, shift, dtype};
    l->v = l->k;
    l->v.base = l->pool + row_bytes + 8;
}

/* The output rows of a tile of n_rows rows at the last positions before
 * n_keys, at the level forced (bc__kernels_force(level) around the call). */
static void attend_at(int level, const float *q, int D, int n_rows, int n_keys, const bc__kv_rows *k,
                      const bc__kv_rows *v, const float *slope, float *out) {
    const bc__att_tile tile = {q, (size_t)D, n_rows, n_keys - n_rows};
    const bc__att_head head = {*k, *v, D, 1.0f / sqrtf((float)D), slope};
    float *scratch = malloc(bc__attend_scratch_floats(n_rows, D) * sizeof(float));
    bc__kernels_force(level);
    bc__attend_tile(&tile, &head, scratch, out, (size_t)D);
    bc__kernels_force(-1);
    free(scratch);
}

/* The attention kernels (the portable C one, and the AVX2 and AVX-512 ones
 * where the CPU has them: every level it reports) for keys and values in f32, f16 and q8_0, D = 8, 12 (C only),
 * 32, 64, 96, 128, tiles of up to 9 query rows at the last positions of 1 to
 * 600 keys (three segments of BC__ATT_SEGMENT), with and without an ALiBi
 * slope, over pools of blocks of 1, 4 and 16 positions (block ids shuffled)
 * and one contiguous block. Against a reference in double on the values
 * decoded here:
 *   |out_i - r_i| <= 1e-5 * sum_j p_j |v_ji|
 * (scores below about 20 in size carry f32 rounding of about 1e-6 into the
 * weights, the sums over the keys about as much again). And in bits, at each
 * level (what keeps a token's logits the same however its prompt is chunked
 * and whatever else is in the batch):
 *   - a row of a tile == the same row alone (a tile of one);
 *   - the segments' parts made one by one (bc__attend_part, as a pass split
 *     over threads makes them) and merged in order == the tile;
 *   - every pool layout == the first;
 *   - f16 and q8_0 rows == f32 rows of their values (converted exactly). */
static void test_attend(void **state) {
    (void)state;
    enum { MAX_KEYS = 600, MAX_ROWS = 9 };
    static const bc_dtype kv_dtypes[] = {BC_DTYPE_F32, BC_DTYPE_F16, BC_DTYPE_Q8_0};
    static const int Ds[] = {8, 12, 32, 64, 96, 128};
    static const int shifts[] = {4, 0, 2, 30};
    static const int ns[] = {1, 5, 16, 17, 70, 256, 257, 300, MAX_KEYS};
    enum { N_SHIFTS = sizeof shifts / sizeof shifts[0] };
    const float slope = 0.25f;
    const int top = (int)bc__kernels_detect();
    double worst[BC__ISA_COUNT] = {0};
    int checked[BC__ISA_COUNT] = {0};
    for (size_t t = 0; t < sizeof kv_dtypes / sizeof kv_dtypes[0]; t++)
        for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++) {
            const bc_dtype dtype = kv_dtypes[t];
            const int D = Ds[di];
            if (dtype == BC_DTYPE_Q8_0 && D % 32 != 0) continue;
            const size_t row_bytes = kv_row_bytes(dtype, D);
            uint8_t *krows[MAX_KEYS], *vrows[MAX_KEYS], *krows32[MAX_KEYS], *vrows32[MAX_KEYS];
            for (int j = 0; j < MAX_KEYS; j++) {
                kv_random_row(dtype, D, krows[j] = malloc(row_bytes));
                kv_random_row(dtype, D, vrows[j] = malloc(row_bytes));
                /* the same values as f32 rows (f16 and q8_0 values are exact in f32) */
                krows32[j] = malloc(4 * (size_t)D);
                vrows32[j] = malloc(4 * (size_t)D);
                for (int i = 0; i < D; i++) {
                    const float kf = (float)kv_value(dtype, krows[j], i), vf = (float)kv_value(dtype, vrows[j], i);
                    memcpy(krows32[j] + 4 * (size_t)i, &kf, sizeof kf);
                    memcpy(vrows32[j] + 4 * (size_t)i, &vf, sizeof vf);
                }
            }
            float *q = malloc((size_t)MAX_ROWS * (size_t)D * sizeof(float));
            for (int i = 0; i < MAX_ROWS * D; i++) q[i] = rng_uniform() * 4;
            const float scale = 1.0f / sqrtf((float)D);
            att_layout layouts[N_SHIFTS], as_f32;
            for (int l = 0; l < N_SHIFTS; l++) att_layout_make(&layouts[l], dtype, D, shifts[l], krows, vrows);
            att_layout_make(&as_f32, BC_DTYPE_F32, D, 2, krows32, vrows32);
            const size_t out_floats = (size_t)MAX_ROWS * (size_t)D;
            double *ref = malloc((size_t)D * sizeof(double)), *mag = malloc((size_t)D * sizeof(double));
            double *p = malloc(MAX_KEYS * sizeof(double));
            float *out = malloc(out_floats * sizeof(float)), *other = malloc(out_floats * sizeof(float));
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (int alibi = 0; alibi <= 1; alibi++) {
                    const int n = ns[ni], R = n < MAX_ROWS ? n : MAX_ROWS;
                    const float *sl = alibi ? &slope : NULL;
                    for (int level = 0; level <= top; level++) {
                        if (level > BC__ISA_C && D % 32 != 0) continue; /* the C kernel runs there */
                        const char *name = bc__isa_name((bc__isa)level);
                        for (int i = 0; i < (int)out_floats; i++) out[i] = NAN;
                        attend_at(level, q, D, R, n, &layouts[0].k, &layouts[0].v, sl, out);
                        for (int r = 0; r < R; r++) {
                            const int pos = n - R + r;
                            const float *qr = q + (size_t)r * (size_t)D, *o = out + (size_t)r * (size_t)D;
                            double max = -INFINITY, sum = 0;
                            for (int j = 0; j <= pos; j++) {
                                double d = 0;
                                for (int i = 0; i < D; i++) d += (double)qr[i] * kv_value(dtype, krows[j], i);
                                p[j] = d * scale + (alibi ? slope * (double)(j - pos) : 0);
                                max = fmax(max, p[j]);
                            }
                            for (int j = 0; j <= pos; j++) sum += (p[j] = exp(p[j] - max));
                            for (int i = 0; i < D; i++) {
                                ref[i] = mag[i] = 0;
                                for (int j = 0; j <= pos; j++) {
                                    const double x = kv_value(dtype, vrows[j], i);
                                    ref[i] += p[j] / sum * x;
                                    mag[i] += p[j] / sum * fabs(x);
                                }
                            }
                            for (int i = 0; i < D; i++) {
                                const double err = fabs(o[i] - ref[i]), bound = 1e-5 * mag[i];
                                if (!(err <= bound))
                                    fail_msg("%s attend %s D %d row %d of %d at %d alibi %d: out[%d] %.9g, "
                                             "reference %.9g",
                                             name, bc_dtype_name(dtype), D, r, R, pos, alibi, i, o[i], ref[i]);
                                if (bound > 0 && err / bound > worst[level]) worst[level] = err / bound;
                            }
                            checked[level]++;
                            /* the row alone */
                            attend_at(level, qr, D, 1, pos + 1, &layouts[0].k, &layouts[0].v, sl, other);
                            if (memcmp(other, o, (size_t)D * sizeof(float)) != 0)
                                fail_msg("%s attend %s D %d n %d alibi %d: row %d of a tile of %d differs in bits "
                                         "from the row alone",
                                         name, bc_dtype_name(dtype), D, n, alibi, r, R);
                        }
                        /* the last row's parts one by one, merged in order */
                        {
                            const float *qr = q + (size_t)(R - 1) * (size_t)D;
                            const bc__att_tile tile = {qr, (size_t)D, 1, n - 1};
                            const bc__att_head head = {layouts[0].k, layouts[0].v, D, scale, sl};
                            float *scratch = malloc(bc__attend_scratch_floats(1, D) * sizeof(float));
                            const int n_seg = bc__att_segments(&tile);
                            float *po = malloc((size_t)n_seg * (size_t)D * sizeof(float));
                            float *O = calloc((size_t)D, sizeof(float)), pm[8], pl[8], M = -INFINITY, L = 0.0f;
                            /* made last to first (as threads may finish), merged first to last */
                            bc__kernels_force(level);
                            for (int seg = n_seg - 1; seg >= 0; seg--)
                                bc__attend_part(&tile, &head, seg, scratch, &pm[seg], &pl[seg],
                                                po + (size_t)seg * (size_t)D);
                            bc__kernels_force(-1);
                            for (int seg = 0; seg < n_seg; seg++)
                                bc__attend_merge(D, &M, &L, O, pm[seg], pl[seg], po + (size_t)seg * (size_t)D);
                            bc__attend_finish(D, L, O, po);
                            if (memcmp(po, out + (size_t)(R - 1) * (size_t)D, (size_t)D * sizeof(float)) != 0)
                                fail_msg("%s attend %s D %d n %d alibi %d: the parts merged differ in bits from "
                                         "the tile",
                                         name, bc_dtype_name(dtype), D, n, alibi);
                            free(scratch);
                            free(po);
                            free(O);
                        }
                        for (int l = 1; l < N_SHIFTS; l++) {
                            attend_at(level, q, D, R, n, &layouts[l].k, &layouts[l].v, sl, other);
                            if (memcmp(other, out, (size_t)R * (size_t)D * sizeof(float)) != 0)
                                fail_msg("%s attend %s D %d n %d alibi %d: block shift %d differs in bits from "
                                         "block shift %d",
                                         name, bc_dtype_name(dtype), D, n, alibi, shifts[l], shifts[0]);
                        }
                        if (dtype != BC_DTYPE_F32) {
                            attend_at(level, q, D, R, n, &as_f32.k, &as_f32.v, sl, other);
                            if (memcmp(other, out, (size_t)R * (size_t)D * sizeof(float)) != 0)
                                fail_msg("%s attend %s D %d n %d: not the bits of f32 on the same values", name,
                                         bc_dtype_name(dtype), D, n);
                        }
                    }
                }
            for (int l = 0; l < N_SHIFTS; l++) {
                free(layouts[l].pool);
                free(layouts[l].blocks);
            }
            free(as_f32.pool);
            free(as_f32.blocks);
            for (int j = 0; j < MAX_KEYS; j++) {
                free(krows[j]);
                free(vrows[j]);
                free(krows32[j]);
                free(vrows32[j]);
            }
            free(q);
            free(ref);
            free(mag);
            free(p);
            free(out);
            free(other);
        }
    for (int level = 0; level <= top; level++)
        printf("# attend %-6s %d rows, max error / bound %.4f\n", bc__isa_name((bc__isa)level), checked[level],
               worst[level]);
    if (top < BC__ISA_COUNT - 1) {
        printf("# attend: the levels above %s not run (the CPU lacks them); ", bc__isa_name((bc__isa)top));
        print_levels_run();
        printf("\n");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_force),        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_c_kernels),    cmocka_unit_test(test_code4_tables),
        cmocka_unit_test(test_kernels_vs_c), cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_matmul_multi), cmocka_unit_test(test_matmul_perm),
        cmocka_unit_test(test_quantize_act), cmocka_unit_test(test_quantize_act_a16),
        cmocka_unit_test(test_attend),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

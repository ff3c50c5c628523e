/*
 * test_kernels.c - every matmul path (each instruction-set level this CPU
 * has, forced in turn) against the reference dot product of quants.c, for
 * every dtype, n = 1, 2, 3, 5, 7, 16 activation rows (5: the four-row
 * kernels with one activation row), 1, 3, 16, 38, 48, 257 weight rows
 * and rows of 32, 256 and 4352 (4096 + 256) columns (plus 33 and 47 for the
 * unblocked dtypes, to reach the SIMD tails), on 1 and 2 threads. At the
 * AVX2 and AVX-512 levels every case runs a second time on the repacked copy
 * where the dtype has a layout at that level and the rows fill its groups
 * (the others must refuse to repack and keep the row-major kernels). The
 * repacked kernels are also held to the row-major ones at f32 rounding
 * (test_repack_matches_rowmajor).
 *
 * Bounds, for y = sum_i w_i x_i with the reference r computed in double
 * from the dequantized weights:
 *   f32, f16, bf16  |y - r| <= 1e-5 * sum |w_i x_i| + 1e-6 (f32 rounding only)
 *   block formats   |y - r| <= sum over activation blocks B of
 *                              (d_B / 2) * sum_{i in B} |w_i|  + the term above,
 *                   where d_B = max_{i in B} |x_i| / 127 is the step of the
 *                   8-bit activation block (32 values, 256 for the K
 *                   formats): each activation moves by at most d_B / 2.
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

#include "kernels/kernels.h"
#include "quants.h"
#include "quants_blocks.h"

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

static const bc_dtype dtypes[] = {BC_DTYPE_F32,  BC_DTYPE_F16,  BC_DTYPE_BF16, BC_DTYPE_Q8_0,
                                  BC_DTYPE_Q4_0, BC_DTYPE_Q4_1, BC_DTYPE_Q5_0, BC_DTYPE_Q5_1,
                                  BC_DTYPE_Q4_K, BC_DTYPE_Q5_K, BC_DTYPE_Q6_K};

/* Checks one (dtype, rows, cols, n) case at the current level, on the
 * repacked copy with repack (which must exist exactly when the level has a
 * layout for the dtype and the shape allows it), and for bf16 weights the
 * bf16-activation kernels (BC__MATMUL_BF16_ACT) in its place; returns the
 * largest |y - r| / bound seen. */
static double check_case(bc__pool *pool, bc_dtype t, int64_t rows, int64_t cols, int n, int repack) {
    const unsigned flags = repack && t == BC_DTYPE_BF16 ? BC__MATMUL_BF16_ACT : 0;
    if (t == BC_DTYPE_BF16) repack = 0;
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
    bc__weight w = {wq, t, rows, cols, "test", NULL, NULL};
    if (repack) {
        const bc__pack_layout *l = bc__pack_layout_of(t, bc__kernels_isa());
        assert_int_equal(bc__weight_repack(&w), l != NULL && rows % l->rows == 0);
        assert_int_equal(bc__pack_supported(&w), w.packed != NULL);
        if (w.packed != NULL) assert_ptr_equal(w.pack, l);
    }
    bc__matmul(pool, &w, x, n, y, scratch, flags);
    bc__weight_repack_free(&w);
    int kind = bc__act_kind(t), ab = kind == 2 ? 256 : 32;
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
                    qerr += amax / 127 / 2 * sw;
                }
            /* bf16 weights in a batch on an AVX512_BF16 CPU: activations
             * rounded to bf16, a relative error of at most 2^-9 each. */
            if (flags && bc__kernels_bf16()) qerr += mag / 512;
            double bound = qerr + 1e-5 * mag + 1e-6, err = fabs(y[(size_t)k * (size_t)rows + (size_t)r] - ref);
            if (err > bound)
                fail_msg("%s%s %s rows %lld cols %lld n %d: row %lld act %d: got %.7g, reference %.7g, bound %.3g",
                         bc__isa_name(bc__kernels_isa()), repack ? " repacked" : "", tr->name, (long long)rows,
                         (long long)cols, n, (long long)r, k, y[(size_t)k * (size_t)rows + (size_t)r], ref, bound);
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

static void test_all_paths(void **state) {
    (void)state;
    const int64_t rows_list[] = {1, 3, 16, 38, 48, 257};
    const int64_t cols_list[] = {32, 256, 4096 + 256, 33, 47};
    const int n_list[] = {1, 2, 3, 5, 7, 16};
    bc__isa top = bc__kernels_detect();
    printf("# detected level: %s\n", bc__isa_name(top));
    for (int threads = 1; threads <= 2; threads++) {
        bc__pool *pool = bc__pool_create(threads);
        assert_non_null(pool);
        for (int level = 0; level <= (int)top; level++) {
            assert_int_equal(bc__kernels_force(level), level);
            for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
                double worst = 0;
                int cases = 0;
                for (size_t ci = 0; ci < sizeof cols_list / sizeof cols_list[0]; ci++) {
                    int64_t cols = cols_list[ci];
                    if (cols % bc__dtype_traits_of(dtypes[d])->block_elems) continue;
                    for (size_t ri = 0; ri < sizeof rows_list / sizeof rows_list[0]; ri++)
                        for (size_t ni = 0; ni < sizeof n_list / sizeof n_list[0]; ni++) {
                            /* The largest shapes once per level and dtype is enough. */
                            if (cols > 256 && rows_list[ri] > 33 && n_list[ni] > 3) continue;
                            for (int rp = 0; rp <= (level >= BC__ISA_AVX2); rp++) {
                                double w = check_case(pool, dtypes[d], rows_list[ri], cols, n_list[ni], rp);
                                if (w > worst) worst = w;
                                cases++;
                            }
                        }
                }
                if (threads == 1)
                    printf("# %-6s %-5s %3d cases, max error / bound %.3f\n", bc__isa_name((bc__isa)level),
                           bc_dtype_name(dtypes[d]), cases, worst);
            }
        }
        bc__pool_free(pool);
    }
    bc__kernels_force(-1);
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

/* The repacked path of every dtype with a layout at the detected level gives
 * the same bits on 1 and 2 threads (each output is computed by one kernel
 * call). */
static void test_repack_threads(void **state) {
    (void)state;
    const bc_dtype *types = dtypes;
    const int64_t rows = 48, cols = 4096 + 256;
    const int n = 7;
    int tested = 0;
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        if (bc__pack_layout_of(types[d], bc__kernels_isa()) == NULL) continue;
        tested++;
        uint64_t row_bytes;
        assert_int_equal(bc__dtype_row_bytes(types[d], (uint64_t)cols, &row_bytes), 0);
        float *wf = malloc((size_t)(rows * cols) * sizeof(float)), *x = malloc((size_t)(n * cols) * sizeof(float));
        uint8_t *wq = malloc((size_t)rows * row_bytes);
        float *y[2] = {malloc((size_t)(n * rows) * sizeof(float)), malloc((size_t)(n * rows) * sizeof(float))};
        void *scratch = malloc(bc__matmul_scratch_bytes(cols, n));
        for (int64_t i = 0; i < rows * cols; i++) wf[i] = rng_uniform();
        for (int64_t i = 0; i < n * cols; i++) x[i] = rng_uniform();
        for (int64_t r = 0; r < rows; r++) bc__quantize_row(types[d], wf + r * cols, wq + r * row_bytes, cols);
        bc__weight w = {wq, types[d], rows, cols, "test", NULL, NULL};
        assert_true(bc__weight_repack(&w));
        for (int threads = 1; threads <= 2; threads++) {
            bc__pool *pool = bc__pool_create(threads);
            bc__matmul(pool, &w, x, n, y[threads - 1], scratch, 0);
            bc__pool_free(pool);
        }
        assert_memory_equal(y[0], y[1], (size_t)(n * rows) * sizeof(float));
        bc__weight_repack_free(&w);
        free(wf);
        free(x);
        free(wq);
        free(y[0]);
        free(y[1]);
        free(scratch);
    }
    if (tested == 0) skip();
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
                w[p] = (bc__weight){q[p], types[p], rows, cols, "test", NULL, NULL};
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

/* The AVX2 activation quantizer writes exactly the blocks of the C one. */
static void test_quantize_act(void **state) {
    (void)state;
    if (bc__kernels_detect() < BC__ISA_AVX2) skip();
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

/* The repacked kernels against the row-major ones at the AVX2 level, for
 * every dtype with a repacked layout there: both add the same exact integer
 * block sums, scaled in f32, so they may differ by f32 rounding only:
 *   |y_packed - y_rowmajor| <= 1e-5 * M + 1e-6,
 *   M = sum_i (|w_i| + 2 |o_i|) * |xa_i|,
 * xa the 8-bit activations as the kernels see them (d * q) and o_i the
 * offset the kernel adds through the activation sums (min_offset): M bounds
 * sum_i (|w_i - o_i| + |o_i|) * |xa_i|, the magnitudes of the terms either
 * kernel adds. Shapes: 8, 16
 * and 48 rows; block columns 1, 3 and 129 (runs of 4 with a short last one),
 * 8 and 136; n = 1..5 and 16. */
static void test_repack_matches_rowmajor(void **state) {
    (void)state;
    if (bc__kernels_detect() < BC__ISA_AVX2) skip();
    assert_int_equal(bc__kernels_force(BC__ISA_AVX2), BC__ISA_AVX2);
    const int64_t rows_list[] = {8, 16, 48};
    const int64_t cols_list[] = {32, 96, 256, 4096 + 32, 4096 + 256};
    const int n_list[] = {1, 2, 3, 4, 5, 16};
    bc__pool *pool = bc__pool_create(1);
    int tested = 0;
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        const bc_dtype t = dtypes[d];
        if (bc__pack_layout_of(t, BC__ISA_AVX2) == NULL) continue;
        tested++;
        const int kind = bc__act_kind(t), ab = kind == 2 ? 256 : 32;
        double worst = 0;
        for (size_t ci = 0; ci < sizeof cols_list / sizeof cols_list[0]; ci++) {
            const int64_t cols = cols_list[ci];
            if (cols % bc__dtype_traits_of(t)->block_elems) continue;
            for (size_t ri = 0; ri < sizeof rows_list / sizeof rows_list[0]; ri++) {
                const int64_t rows = rows_list[ri];
                const int n = 16;
                uint64_t row_bytes;
                assert_int_equal(bc__dtype_row_bytes(t, (uint64_t)cols, &row_bytes), 0);
                float *wf = malloc((size_t)(rows * cols) * sizeof(float)),
                      *x = malloc((size_t)(n * cols) * sizeof(float));
                float *wd = malloc((size_t)cols * sizeof(float)), *xa = malloc((size_t)cols * sizeof(float));
                uint8_t *wq = malloc((size_t)rows * row_bytes), *act = malloc(bc__act_row_bytes(kind, cols));
                float *y[2] = {malloc((size_t)(n * rows) * sizeof(float)), malloc((size_t)(n * rows) * sizeof(float))};
                void *scratch = malloc(bc__matmul_scratch_bytes(cols, n));
                /* Weights of either sign or one sign per row (large mins). */
                for (int64_t i = 0; i < rows * cols; i++)
                    wf[i] = rng_uniform() * (1.0f + (float)((i / 32) % 3)) + (float)((i / cols) % 3) - 1.0f;
                for (int64_t i = 0; i < n * cols; i++) x[i] = rng_uniform() * (i % 17 == 0 ? 4.0f : 1.0f);
                for (int64_t r = 0; r < rows; r++)
                    assert_int_equal(bc__quantize_row(t, wf + r * cols, wq + r * row_bytes, cols), 0);
                for (size_t ni = 0; ni < sizeof n_list / sizeof n_list[0]; ni++) {
                    const int nn = n_list[ni];
                    bc__weight w = {wq, t, rows, cols, "test", NULL, NULL};
                    bc__matmul(pool, &w, x, nn, y[0], scratch, 0);
                    assert_true(bc__weight_repack(&w));
                    bc__matmul(pool, &w, x, nn, y[1], scratch, 0);
                    bc__weight_repack_free(&w);
                    for (int k = 0; k < nn; k++) {
                        bc__quantize_act(kind, x + (size_t)k * (size_t)cols, act, cols);
                        for (int64_t b = 0; b < cols / ab; b++) {
                            const float da =
                                kind == 2 ? ((const bc__block_a8k *)act)[b].d : ((const bc__block_a8 *)act)[b].d;
                            const int8_t *qa =
                                kind == 2 ? ((const bc__block_a8k *)act)[b].qs : ((const bc__block_a8 *)act)[b].qs;
                            for (int i = 0; i < ab; i++) xa[b * ab + i] = da * qa[i];
                        }
                        for (int64_t r = 0; r < rows; r++) {
                            const uint8_t *row = wq + r * row_bytes;
                            bc__dequantize_row(t, row, wd, cols);
                            double mag = 0;
                            for (int64_t i = 0; i < cols; i++) {
                                const double o = min_offset(t, row, i);
                                mag += (fabs(wd[i]) + 2 * o) * fabs(xa[i]);
                            }
                            const float a = y[1][(size_t)k * (size_t)rows + (size_t)r];
                            const float ref = y[0][(size_t)k * (size_t)rows + (size_t)r];
                            const double bound = 1e-5 * mag + 1e-6, err = fabs((double)a - ref);
                            if (err > bound)
                                fail_msg("%s rows %lld cols %lld n %d: row %lld act %d: repacked %.9g, row-major %.9g, "
                                         "bound %.3g",
                                         bc_dtype_name(t), (long long)rows, (long long)cols, nn, (long long)r, k, a,
                                         ref, bound);
                            if (err / bound > worst) worst = err / bound;
                        }
                    }
                }
                free(wf);
                free(x);
                free(wd);
                free(xa);
                free(wq);
                free(act);
                free(y[0]);
                free(y[1]);
                free(scratch);
            }
        }
        printf("# avx2 repacked vs row-major %-5s max difference / bound %.4f\n", bc_dtype_name(t), worst);
    }
    bc__pool_free(pool);
    bc__kernels_force(-1);
    if (tested == 0) skip();
}

/* The AVX2 attention of one head matches the C one (a reference in double
 * here) to f32 rounding: with and without an ALiBi slope, 1 to 70 keys,
 * keys and values strided as in the cache. */

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_force),          cmocka_unit_test(test_all_paths),
        cmocka_unit_test(test_repack_threads), cmocka_unit_test(test_repack_matches_rowmajor),
        cmocka_unit_test(test_matmul_multi),   cmocka_unit_test(test_quantize_act),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

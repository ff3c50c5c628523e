/*
 * avx2_half.c - AVX2 four-row kernels (bc__gemm4_fn) of the f16 and bf16
 * weights, for batches (prompts, batched decode); single rows keep the
 * one-row kernel of x86.c, which streams a matrix faster.
 *
 * The weights are widened to f32 exactly as they are loaded (F16C for f16, a
 * 16-bit shift for bf16) and multiplied with the f32 activations by FMA, and
 * every (weight row, activation row) pair is summed exactly as the one-row
 * kernel of x86.c sums it: two accumulators, the even 8-column steps in
 * one and the odd ones in the other (an 8-column step left over goes to the
 * even one), added, summed across the lanes, then the last columns one by
 * one. So a row of a batch gets the bits it gets alone, whichever kernel
 * runs it and whatever na (test_batch_invariance).
 *
 * Register blocking: the 16 ymm registers hold the accumulators (one per
 * weight row, activation row and parity of the step, 8 to 12 of them), the
 * widened weights and one activation register. Four weight rows against
 * na = 1 or 2 activation rows run as one pass of 4 rows x na x both
 * parities; na = 3 as two passes of 2 rows x 3 x both; na = 4 as four
 * passes of 2 rows x 4 x one parity (each activation load feeding two FMAs
 * and each widened weight four). The activations are loaded into a register
 * once per step: GCC otherwise folds the load into every FMA that uses it,
 * and those extra loads cost a third of the speed (one core of a Zen 3,
 * data in cache: about 17 -> 26 flop/cycle at na = 4).
 *
 * Memory: the columns go in chunks small enough that the activation rows'
 * chunk, read from L2 by the first pass, is still in L1 for the second. The
 * matmul calls the kernel on consecutive blocks of 4 rows, so each call
 * prefetches the next 4 rows as it reads its own: in a batch of 4 the matrix
 * streams from memory once, and it did so at 15 GB/s instead of 13
 * (f16 11008x4096, one thread, timed by its CPU time).
 */
#include "kernels/avx2_half.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

/* Columns per chunk: 4 activation rows of it take 8 KB of the 32 KB L1. */
#define CHUNK 512

/* 8 weights at w as f32: f16 or bf16, both exact. */
INLINE_AVX2 __m256 widen8(const int bf16, const uint16_t *w) {
    const __m128i h = _mm_loadu_si128((const __m128i *)w);
    if (!bf16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* acc[u][r0 + r][k] += weight row r0 + r (r < nr) times activation row k
 * (k < na) over the 8-column steps of parity u in [u0, u1) of columns
 * [c0, c1) (c0 a multiple of 16, c1 of 8). */
INLINE_AVX2 void pass(const int bf16, const int r0, const int nr, const int na, const int u0, const int u1,
                      const uint16_t *const *w, size_t next, const float *const *x, int64_t c0, int64_t c1,
                      __m256 acc[2][4][BC__MAX_NA]) {
    __m256 s[2][4][BC__MAX_NA];
    for (int u = u0; u < u1; u++)
        for (int r = 0; r < nr; r++)
            for (int k = 0; k < na; k++) s[u][r][k] = acc[u][r0 + r][k];
    for (int64_t i = c0; i < c1; i += 16) {
        if (i % 32 == 0 && u0 == 0) /* the same line of the next 4 rows, 64 bytes a row */
            for (int r = 0; r < nr; r++) _mm_prefetch((const char *)(w[r0 + r] + i) + next, _MM_HINT_T1);
        for (int u = u0; u < u1 && i + 8 * u < c1; u++) {
            __m256 wv[4];
            for (int r = 0; r < nr; r++) wv[r] = widen8(bf16, w[r0 + r] + i + 8 * u);
            for (int k = 0; k < na; k++) {
                __m256 xv = _mm256_loadu_ps(x[k] + i + 8 * u);
                /* one load for the nr FMAs: GCC would fold it into each */
                __asm__("" : "+x"(xv));
                for (int r = 0; r < nr; r++) s[u][r][k] = _mm256_fmadd_ps(wv[r], xv, s[u][r][k]);
            }
        }
    }
    for (int u = u0; u < u1; u++)
        for (int r = 0; r < nr; r++)
            for (int k = 0; k < na; k++) acc[u][r0 + r][k] = s[u][r][k];
}

INLINE_AVX2 void gemm4_half(const int bf16, int64_t cols, const void *w, size_t ws, const void *a, size_t as,
                            const int na, float *out) {
    const uint16_t *row[4];
    const float *x[BC__MAX_NA];
    for (int r = 0; r < 4; r++) row[r] = (const uint16_t *)((const char *)w + (size_t)r * ws);
    for (int k = 0; k < na; k++) x[k] = (const float *)((const char *)a + (size_t)k * as);
    __m256 acc[2][4][BC__MAX_NA];
    for (int u = 0; u < 2; u++)
        for (int r = 0; r < 4; r++)
            for (int k = 0; k < na; k++) acc[u][r][k] = _mm256_setzero_ps();
    /* The one-row kernel's steps: 16 columns (both parities), then 8. */
    const int64_t c8 = cols / 8 * 8;
    for (int64_t c0 = 0; c0 < c8; c0 += CHUNK) {
        const int64_t c1 = c0 + CHUNK < c8 ? c0 + CHUNK : c8;
        if (na <= 2) {
            pass(bf16, 0, 4, na, 0, 2, row, 4 * ws, x, c0, c1, acc);
        } else if (na == 3) {
            pass(bf16, 0, 2, na, 0, 2, row, 4 * ws, x, c0, c1, acc);
            pass(bf16, 2, 2, na, 0, 2, row, 4 * ws, x, c0, c1, acc);
        } else {
            /* written out: constant rows and parities keep the accumulators in registers */
            pass(bf16, 0, 2, na, 0, 1, row, 4 * ws, x, c0, c1, acc);
            pass(bf16, 0, 2, na, 1, 2, row, 4 * ws, x, c0, c1, acc);
            pass(bf16, 2, 2, na, 0, 1, row, 4 * ws, x, c0, c1, acc);
            pass(bf16, 2, 2, na, 1, 2, row, 4 * ws, x, c0, c1, acc);
        }
    }
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < na; k++) {
            float s = hsum8(_mm256_add_ps(acc[0][r][k], acc[1][r][k]));
            for (int64_t j = c8; j < cols; j++)
                s += (bf16 ? bc__bf16_to_f32(row[r][j]) : bc__f16_to_f32(row[r][j])) * x[k][j];
            out[r * BC__MAX_NA + k] = s;
        }
}

#define GEMM4(name, bf16)                                                                                              \
    static ATTR_AVX2 void name(int64_t cols, const void *w, size_t ws, const void *a, size_t as, int na, float *out) { \
        switch (na) {                                                                                                  \
        case 1: gemm4_half(bf16, cols, w, ws, a, as, 1, out); break;                                                   \
        case 2: gemm4_half(bf16, cols, w, ws, a, as, 2, out); break;                                                   \
        case 3: gemm4_half(bf16, cols, w, ws, a, as, 3, out); break;                                                   \
        default: gemm4_half(bf16, cols, w, ws, a, as, 4, out); break;                                                  \
        }                                                                                                              \
    }
GEMM4(gemm4_f16_avx2, 0)
GEMM4(gemm4_bf16_avx2, 1)

const bc__gemm4_fn bc__gemm4_avx2[BC_DTYPE_COUNT] = {
    [BC_DTYPE_F16] = gemm4_f16_avx2,
    [BC_DTYPE_BF16] = gemm4_bf16_avx2,
};

#else /* not x86-64 with GCC or Clang */

const bc__gemm4_fn bc__gemm4_avx2[BC_DTYPE_COUNT];

#endif

/*
 * avx512_half.c - AVX-512 four-row kernels (bc__gemm4_fn) of the f16 and
 * bf16 weights, for batches; single rows keep the one-row kernel of x86.c.
 *
 * Every (weight row, activation row) pair is summed exactly as that one-row
 * kernel sums it, so that a row of a batch gets the bits it gets alone
 * (test_batch_invariance): the weights widened to f32 as they are loaded
 * (F16C for f16, a 16-bit shift for bf16: exact), FMA'd with the f32
 * activations into two accumulators of 16 lanes, the even 16-column steps
 * in one and the odd ones in the other (a 16-column step left over goes to
 * the even one), the two added and reduced by _mm512_reduce_add_ps, then
 * the last columns one by one. avx2_half.c does the same at the AVX2 level.
 *
 * Register blocking: the 32 zmm registers hold the accumulators (one per
 * weight row, activation row and parity of the step, 8 to 16 of them), the
 * widened weights and one activation register: four weight rows against
 * na = 1 or 2 activation rows as one pass of 4 rows x na x both parities,
 * na = 3 or 4 as two passes of 2 rows. The columns go in chunks of 512, so
 * that the activation rows' chunk read by the first pass is still in L1 for
 * the second; each call prefetches the same lines of the next 4 rows (the
 * matmul calls it on consecutive blocks of 4 rows).
 */
#include "kernels/avx512_half.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

/* Columns per chunk: 4 activation rows of it take 8 KB of L1. */
#define CHUNK 512

/* 16 weights at w as f32: f16 or bf16, both exact. */
INLINE_AVX512 __m512 widen16(const int bf16, const uint16_t *w) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)w);
    if (!bf16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* acc[u][r0 + r][k] += weight row r0 + r (r < nr) times activation row k
 * (k < na) over columns [c0, c1) (c0 a multiple of 32, c1 of 16), the
 * 16-column steps of parity u in acc[u]. */
INLINE_AVX512 void pass(const int bf16, const int r0, const int nr, const int na, const uint16_t *const *w, size_t next,
                        const float *const *x, int64_t c0, int64_t c1, __m512 acc[2][4][BC__MAX_NA]) {
    __m512 s[2][4][BC__MAX_NA];
    for (int u = 0; u < 2; u++)
        for (int r = 0; r < nr; r++)
            for (int k = 0; k < na; k++) s[u][r][k] = acc[u][r0 + r][k];
    for (int64_t i = c0; i < c1; i += 32) {
        /* the same line of the next 4 rows, 64 bytes a row */
        for (int r = 0; r < nr; r++) _mm_prefetch((const char *)(w[r0 + r] + i) + next, _MM_HINT_T1);
        for (int u = 0; u < 2 && i + 16 * u < c1; u++) {
            __m512 wv[4];
            for (int r = 0; r < nr; r++) wv[r] = widen16(bf16, w[r0 + r] + i + 16 * u);
            for (int k = 0; k < na; k++) {
                __m512 xv = _mm512_loadu_ps(x[k] + i + 16 * u);
                /* one load for the nr FMAs: GCC would fold it into each */
                __asm__("" : "+v"(xv));
                for (int r = 0; r < nr; r++) s[u][r][k] = _mm512_fmadd_ps(wv[r], xv, s[u][r][k]);
            }
        }
    }
    for (int u = 0; u < 2; u++)
        for (int r = 0; r < nr; r++)
            for (int k = 0; k < na; k++) acc[u][r0 + r][k] = s[u][r][k];
}

INLINE_AVX512 void gemm4_half(const int bf16, int64_t cols, const void *w, size_t ws, const void *a, size_t as,
                              const int na, float *out) {
    const uint16_t *row[4];
    const float *x[BC__MAX_NA];
    for (int r = 0; r < 4; r++) row[r] = (const uint16_t *)((const char *)w + (size_t)r * ws);
    for (int k = 0; k < na; k++) x[k] = (const float *)((const char *)a + (size_t)k * as);
    __m512 acc[2][4][BC__MAX_NA];
    for (int u = 0; u < 2; u++)
        for (int r = 0; r < 4; r++)
            for (int k = 0; k < na; k++) acc[u][r][k] = _mm512_setzero_ps();
    const int64_t c16 = cols / 16 * 16;
    for (int64_t c0 = 0; c0 < c16; c0 += CHUNK) {
        const int64_t c1 = c0 + CHUNK < c16 ? c0 + CHUNK : c16;
        if (na <= 2) {
            pass(bf16, 0, 4, na, row, 4 * ws, x, c0, c1, acc);
        } else {
            pass(bf16, 0, 2, na, row, 4 * ws, x, c0, c1, acc);
            pass(bf16, 2, 2, na, row, 4 * ws, x, c0, c1, acc);
        }
    }
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < na; k++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][r][k], acc[1][r][k]));
            for (int64_t j = c16; j < cols; j++)
                s += (bf16 ? bc__bf16_to_f32(row[r][j]) : bc__f16_to_f32(row[r][j])) * x[k][j];
            out[r * BC__MAX_NA + k] = s;
        }
}

#define GEMM4(name, bf16)                                                                                              \
    static ATTR_AVX512 void name(int64_t cols, const void *w, size_t ws, const void *a, size_t as, int na,             \
                                 float *out) {                                                                         \
        switch (na) {                                                                                                  \
        case 1: gemm4_half(bf16, cols, w, ws, a, as, 1, out); break;                                                   \
        case 2: gemm4_half(bf16, cols, w, ws, a, as, 2, out); break;                                                   \
        case 3: gemm4_half(bf16, cols, w, ws, a, as, 3, out); break;                                                   \
        default: gemm4_half(bf16, cols, w, ws, a, as, 4, out); break;                                                  \
        }                                                                                                              \
    }
GEMM4(gemm4_f16_avx512, 0)
GEMM4(gemm4_bf16_avx512, 1)

const bc__gemm4_fn bc__gemm4_avx512_half[BC_DTYPE_COUNT] = {
    [BC_DTYPE_F16] = gemm4_f16_avx512,
    [BC_DTYPE_BF16] = gemm4_bf16_avx512,
};

#else /* not x86-64 with GCC or Clang */

const bc__gemm4_fn bc__gemm4_avx512_half[BC_DTYPE_COUNT];

#endif

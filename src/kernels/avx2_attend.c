/*
 * avx2_attend.c - AVX2 attention of one head over the paged KV pool
 * (bc__attend_avx2, see attend.h), keys and values in f32, f16 or q8_0.
 *
 * Rows are read 32 values at a time, converted to f32 exactly (f16 with
 * vcvtph2ps; q8_0 as int8 -> int32 -> f32 times the block's d, a product of
 * at most 19 significant bits), so every dtype shares the arithmetic of f32:
 *   scores   q . k_j on four FMA chains of 8 lanes (value i in chain
 *            (i / 8) % 4), added pairwise and summed across lanes
 *   softmax  as the C version: max, expf, sum and division in the order of j
 *   V        the weighted sum of the rows in registers, 64 outputs (8
 *            registers) at a time and 32 for the rest, each v_j read once
 *            per 64 outputs, the outputs written once
 * The positions are walked a block at a time (bc__kv_run) and nothing in the
 * arithmetic depends on where a block starts or ends.
 */
#include "kernels/avx2_attend.h"

#include "quant/blocks.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

/* Values i .. i + 31 (i % 32 == 0) of a row of dtype as f32, in x[0..3]. */
INLINE_AVX2 void load32(const bc_dtype dtype, const uint8_t *row, int i, __m256 x[4]) {
    if (dtype == BC_DTYPE_F32) {
        const float *r = (const float *)row + i;
        for (int c = 0; c < 4; c++) x[c] = _mm256_loadu_ps(r + 8 * c);
    } else if (dtype == BC_DTYPE_F16) {
        const uint16_t *r = (const uint16_t *)row + i;
        for (int c = 0; c < 4; c++) x[c] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 8 * c)));
    } else {
        const bc__block_q8_0 *b = (const bc__block_q8_0 *)row + i / 32;
        const __m256 d = _mm256_set1_ps(F16C(b->d));
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + 8 * c)));
            x[c] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q));
        }
    }
}

/* scores[j] = q . k_j * scale (+ slope * (j - pos)) for j < n_keys; returns
 * their maximum. */
INLINE_AVX2 float scores_(const bc_dtype dtype, const float *q, const bc__kv_rows *k, int n_keys, int D, float scale,
                          const float *slope, int pos, float *scores) {
    float max = -INFINITY;
    for (int j = 0; j < n_keys;) {
        const uint8_t *row;
        for (int run = bc__kv_run(k, j, n_keys, &row); run > 0; run--, j++, row += k->row_stride) {
            __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int d = 0; d < D; d += 32) {
                __m256 x[4];
                load32(dtype, row, d, x);
                for (int c = 0; c < 4; c++) a[c] = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8 * c), x[c], a[c]);
            }
            float s = hsum8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]))) * scale;
            if (slope) s += *slope * (float)(j - pos);
            scores[j] = s;
            if (s > max) max = s;
        }
    }
    return max;
}

/* out (D) = sum_j p[j] * v_j: the outputs d0 .. d0 + 32 * R - 1 (R = 2 or 1
 * runs of 32 values) at a time in 4 * R registers. */
INLINE_AVX2 void vsum_(const bc_dtype dtype, const bc__kv_rows *v, int n_keys, int D, const float *p, float *out) {
    for (int d0 = 0; d0 < D;) {
        const int R = D - d0 >= 64 ? 2 : 1;
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        for (int j = 0; j < n_keys;) {
            const uint8_t *row;
            for (int run = bc__kv_run(v, j, n_keys, &row); run > 0; run--, j++, row += v->row_stride) {
                const __m256 pj = _mm256_set1_ps(p[j]);
                for (int r = 0; r < R; r++) {
                    __m256 x[4];
                    load32(dtype, row, d0 + 32 * r, x);
                    for (int c = 0; c < 4; c++) acc[4 * r + c] = _mm256_fmadd_ps(pj, x[c], acc[4 * r + c]);
                }
            }
        }
        for (int i = 0; i < 4 * R; i++) _mm256_storeu_ps(out + d0 + 8 * i, acc[i]);
        d0 += 32 * R;
    }
}

/* One copy of each per dtype, the dtype's branches folded away. */
#define PER_DTYPE(name, T)                                                                                             \
    static ATTR_AVX2 float scores_##name(const float *q, const bc__kv_rows *k, int n_keys, int D, float scale,         \
                                         const float *slope, int pos, float *scores) {                                 \
        return scores_(T, q, k, n_keys, D, scale, slope, pos, scores);                                                 \
    }                                                                                                                  \
    static ATTR_AVX2 void vsum_##name(const bc__kv_rows *v, int n_keys, int D, const float *p, float *out) {           \
        vsum_(T, v, n_keys, D, p, out);                                                                                \
    }
PER_DTYPE(f32, BC_DTYPE_F32)
PER_DTYPE(f16, BC_DTYPE_F16)
PER_DTYPE(q8_0, BC_DTYPE_Q8_0)

ATTR_AVX2 void bc__attend_avx2(const float *q, const bc__kv_rows *k, const bc__kv_rows *v, int n_keys, int D,
                               float scale, const float *slope, int pos, float *scores, float *out) {
    float max;
    switch (k->dtype) {
    case BC_DTYPE_F16: max = scores_f16(q, k, n_keys, D, scale, slope, pos, scores); break;
    case BC_DTYPE_Q8_0: max = scores_q8_0(q, k, n_keys, D, scale, slope, pos, scores); break;
    default: max = scores_f32(q, k, n_keys, D, scale, slope, pos, scores); break;
    }
    float sum = 0.0f;
    for (int j = 0; j < n_keys; j++) {
        scores[j] = expf(scores[j] - max);
        sum += scores[j];
    }
    for (int j = 0; j < n_keys; j++) scores[j] /= sum;
    switch (v->dtype) {
    case BC_DTYPE_F16: vsum_f16(v, n_keys, D, scores, out); break;
    case BC_DTYPE_Q8_0: vsum_q8_0(v, n_keys, D, scores, out); break;
    default: vsum_f32(v, n_keys, D, scores, out); break;
    }
}

#endif

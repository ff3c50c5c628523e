/*
 * x86.c - AVX2 and AVX-512 kernels (see kernel_types.h for the contract
 * of a bc__dot_fn and ref.c for the portable versions they must match), and
 * the tables per level that dispatch.c picks from (x86.h).
 *
 *   f32 / f16 / bf16   weights widened to f32 in registers (F16C for f16, a
 *                      16-bit shift for bf16: both exact), FMA into two
 *                      accumulators per activation row
 *   32-weight blocks   x86_dot32.h, instantiated for AVX2 and VNNI
 *   K blocks           AVX2 maddubs row kernels (also used at the AVX-512 level)
 *
 * Every function carries a target attribute, so the file builds without any
 * -m flag and the code only runs after isa.c has checked the CPU.
 */
#include "kernels/x86.h"

#include "kernels/avx2_k.h"
#include "kernels/avx2_q32.h"
#include "kernels/avx2_q4x.h"
#include "kernels/avx512_k.h"
#include "kernels/avx512_q32.h"
#include "kernels/avx512_q4x.h"
#include "quant/blocks.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

#define F16(h) bc__f16_to_f32(h)

static inline float half_scalar(int kind, const void *w, int64_t i) {
    if (kind == 0) return ((const float *)w)[i];
    uint16_t h = ((const uint16_t *)w)[i];
    return kind == 1 ? F16(h) : bc__bf16_to_f32(h);
}

/* ------------------------------------------------------------------------ */
/* AVX2                                                                     */
/* ------------------------------------------------------------------------ */

/* 8 weights at index i as f32: kind 0 f32, 1 f16, 2 bf16. */
INLINE_AVX2 __m256 load8(const int kind, const void *w, int64_t i) {
    if (kind == 0) return _mm256_loadu_ps((const float *)w + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (kind == 1) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* f32 / f16 / bf16 row (cols values) against f32 activation rows. */
INLINE_AVX2 void dot_float_avx2(const int kind, int64_t cols, const void *w, const void *a, size_t as, const int na,
                                float *out) {
    __m256 acc0[BC__MAX_NA], acc1[BC__MAX_NA];
    const float *x[BC__MAX_NA];
    for (int k = 0; k < na; k++) {
        acc0[k] = acc1[k] = _mm256_setzero_ps();
        x[k] = (const float *)((const char *)a + (size_t)k * as);
    }
    int64_t i = 0;
    for (; i + 16 <= cols; i += 16) {
        const __m256 w0 = load8(kind, w, i), w1 = load8(kind, w, i + 8);
        for (int k = 0; k < na; k++) {
            acc0[k] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[k] + i), acc0[k]);
            acc1[k] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[k] + i + 8), acc1[k]);
        }
    }
    for (; i + 8 <= cols; i += 8) {
        const __m256 w0 = load8(kind, w, i);
        for (int k = 0; k < na; k++) acc0[k] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[k] + i), acc0[k]);
    }
    for (int k = 0; k < na; k++) {
        float s = hsum8(_mm256_add_ps(acc0[k], acc1[k]));
        for (int64_t j = i; j < cols; j++) s += half_scalar(kind, w, j) * x[k][j];
        out[k] = s;
    }
}
WRAP_NA(ATTR_AVX2, dot_f32_avx2, dot_float_avx2, 0)
WRAP_NA(ATTR_AVX2, dot_f16_avx2, dot_float_avx2, 1)
WRAP_NA(ATTR_AVX2, dot_bf16_avx2, dot_float_avx2, 2)

#define DOT32_TARGET T_AVX2
#define DOT32_SFX    avx2
#define DOT32_VNNI   0
#include "kernels/x86_dot32.h"
#undef DOT32_TARGET
#undef DOT32_SFX
#undef DOT32_VNNI

/* q4_K (bits 4) / q5_K (bits 5) against a8k. Per 64-weight chunk c the 32
 * bytes qs[32c..] hold sub-block 2c in the low nibbles and 2c+1 in the high
 * ones; q5_K's fifth bits are bits 2c and 2c+1 of qh[0..31]. Products by
 * maddubs (q <= 31 so no saturation), scaled by the 6-bit sub-block scale
 * with madd, summed in int32 over the block; the mins go through the
 * activation's per-16 sums. */
INLINE_AVX2 void dot_k45_avx2(const int bits, int64_t cols, const void *w, const void *a, size_t as, const int na,
                              float *out) {
    __m256 acc[BC__MAX_NA];
    float corr[BC__MAX_NA];
    for (int k = 0; k < na; k++) {
        acc[k] = _mm256_setzero_ps();
        corr[k] = 0.0f;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < cols / 256; b++) {
        const uint8_t *qs, *scales;
        __m256i hb = _mm256_setzero_si256();
        float d, dmin;
        if (bits == 4) {
            const bc__block_q4_K *x = (const bc__block_q4_K *)w + b;
            qs = x->qs;
            scales = x->scales;
            d = F16C(x->d);
            dmin = F16C(x->dmin);
        } else {
            const bc__block_q5_K *x = (const bc__block_q5_K *)w + b;
            qs = x->qs;
            scales = x->scales;
            d = F16C(x->d);
            dmin = F16C(x->dmin);
            hb = _mm256_loadu_si256((const __m256i *)x->qh);
        }
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; j++) bc__k_scale_min(j, scales, &sc[j], &m[j]);
        __m256i sumi[BC__MAX_NA];
        for (int k = 0; k < na; k++) sumi[k] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            if (bits == 5) {
                const __m256i b0 = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c)), one);
                const __m256i b1 = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c + 1)), one);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(b0, 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(b1, 4));
            }
            const __m256i s_lo = _mm256_set1_epi16(sc[2 * c]), s_hi = _mm256_set1_epi16(sc[2 * c + 1]);
            for (int k = 0; k < na; k++) {
                const int8_t *yq = ((const bc__block_a8k *)((const char *)a + (size_t)k * as) + b)->qs + 64 * c;
                const __m256i p_lo =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)yq)), s_lo);
                const __m256i p_hi =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(yq + 32))), s_hi);
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(p_lo, p_hi));
            }
        }
        for (int k = 0; k < na; k++) {
            const bc__block_a8k *y = (const bc__block_a8k *)((const char *)a + (size_t)k * as) + b;
            int summ = 0;
            for (int j = 0; j < 8; j++) summ += m[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
            corr[k] -= dmin * y->d * (float)summ;
        }
    }
    for (int k = 0; k < na; k++) out[k] = hsum8(acc[k]) + corr[k];
}
WRAP_NA(ATTR_AVX2, dot_q4_K_avx2, dot_k45_avx2, 4)
WRAP_NA(ATTR_AVX2, dot_q5_K_avx2, dot_k45_avx2, 5)

/* Two int16 scale halves: lanes 0-7 s0, lanes 8-15 s1 (bytes 0-15 / 16-31). */
INLINE_AVX2 __m256i scale_pair(int s0, int s1) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)s0)), _mm_set1_epi16((short)s1), 1);
}

/* q6_K against a8k. Per 128-weight half h: ql[64h..64h+63], qh[32h..32h+31];
 * weight 128h + 32p + l (p = 0..3, l < 32) has its low nibble in ql[l] (p 0,
 * 2: low, high nibble) or ql[32+l] (p 1, 3) and its top two bits at bits 2p
 * of qh[l]; q in [0, 63], value q - 32, scale sc[(128h + 32p + l) / 16]. The
 * -32 goes in as -32 * sum_g sc_g * bsums_g, exactly, in int32. */
INLINE_AVX2 void dot_q6k_avx2(const int unused, int64_t cols, const void *w, const void *a, size_t as, const int na,
                              float *out) {
    (void)unused;
    __m256 acc[BC__MAX_NA];
    for (int k = 0; k < na; k++) acc[k] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < cols / 256; b++) {
        const bc__block_q6_K *x = (const bc__block_q6_K *)w + b;
        __m256i sumi[BC__MAX_NA];
        for (int k = 0; k < na; k++) {
            const bc__block_a8k *y = (const bc__block_a8k *)((const char *)a + (size_t)k * as) + b;
            int c = 0;
            for (int g = 0; g < 16; g++) c += x->scales[g] * y->bsums[g];
            sumi[k] = _mm256_castsi128_si256(_mm_cvtsi32_si128(-32 * c));
        }
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
            __m256i s[4];
            for (int p = 0; p < 4; p++) s[p] = scale_pair(x->scales[8 * h + 2 * p], x->scales[8 * h + 2 * p + 1]);
            for (int k = 0; k < na; k++) {
                const int8_t *yq = ((const bc__block_a8k *)((const char *)a + (size_t)k * as) + b)->qs + 128 * h;
                for (int p = 0; p < 4; p++) {
                    const __m256i y8 = _mm256_loadu_si256((const __m256i *)(yq + 32 * p));
                    sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(_mm256_maddubs_epi16(q[p], y8), s[p]));
                }
            }
        }
        for (int k = 0; k < na; k++) {
            const bc__block_a8k *y = (const bc__block_a8k *)((const char *)a + (size_t)k * as) + b;
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(F16C(x->d) * y->d), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
        }
    }
    for (int k = 0; k < na; k++) out[k] = hsum8(acc[k]);
}
WRAP_NA(ATTR_AVX2, dot_q6_K_avx2, dot_q6k_avx2, 0)

/* Activations to a8 (kind 1) or a8k (kind 2) blocks, exactly as
 * bc__quantize_act's C loop does (the same amax, d = amax / 127, 1 / d and
 * round-half-even), eight values at a time. */
INLINE_AVX2 float amax_avx2(const float *x, int n) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* q[i] = round-half-even(x[i] * id) for i < n (a multiple of 32); returns
 * the per-16 sums in sums16[n / 16]. */
INLINE_AVX2 void round_block_avx2(const float *x, int n, float id, int8_t *q, int16_t *sums16) {
    const __m256 idv = _mm256_set1_ps(id);
    for (int i = 0; i < n; i += 32) {
        __m256i v[4];
        for (int j = 0; j < 4; j++)
            v[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), idv),
                                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        /* packs interleave 128-bit lanes: the permute puts the 32 bytes back in order */
        const __m256i w01 = _mm256_packs_epi32(v[0], v[1]), w23 = _mm256_packs_epi32(v[2], v[3]);
        const __m256i b =
            _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), b);
        const __m256i s16 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), b), _mm256_set1_epi16(1));
        /* s16: 8 int32 sums of 4 bytes each; lanes 0-3 the first 16, 4-7 the second */
        const __m128i lo = _mm256_castsi256_si128(s16), hi = _mm256_extracti128_si256(s16, 1);
        const __m128i t = _mm_hadd_epi32(lo, hi); /* (0+1, 2+3, 4+5, 6+7) */
        const __m128i u = _mm_hadd_epi32(t, t);   /* (0+1+2+3, 4+5+6+7, ...) */
        sums16[i / 16] = (int16_t)_mm_cvtsi128_si32(u);
        sums16[i / 16 + 1] = (int16_t)_mm_extract_epi32(u, 1);
    }
}

ATTR_AVX2 void bc__quantize_act_avx2(int kind, const float *x, void *dst, int64_t cols) {
    if (kind == BC__ACT_A8) {
        bc__block_a8 *y = dst;
        for (int64_t b = 0; b < cols / 32; b++, x += 32) {
            const float amax = amax_avx2(x, 32), d = amax / 127, id = d ? 1.0f / d : 0.0f;
            int16_t s[2];
            round_block_avx2(x, 32, id, y[b].qs, s);
            y[b].d = d;
            y[b].sum = s[0] + s[1];
        }
    } else {
        bc__block_a8k *y = dst;
        for (int64_t b = 0; b < cols / 256; b++, x += 256) {
            const float amax = amax_avx2(x, 256), d = amax / 127, id = d ? 1.0f / d : 0.0f;
            round_block_avx2(x, 256, id, y[b].qs, y[b].bsums);
            y[b].d = d;
        }
    }
}

/* exp(x) for any float x, to about 1 ulp for normal results: x = n ln2 + r
 * with |r| <= ln2 / 2 (ln2 in two parts, the first exact in few bits), e^r
 * by a degree-7 series fitted on that interval, times 2^n through the
 * exponent bits; x is clamped to [-87, 88] first (e^-87 is near the
 * smallest normal; e^88 near the largest float), so below it gives about
 * 1.6e-38 and above it 1.65e38, not 0 and inf. */
INLINE_AVX2 __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* n in [-126, 127]: 2^n is a normal float */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

ATTR_AVX2 void bc__silu_mul_avx2(float *g, const float *u, int n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    if (i < n) { /* the tail through the same lanes, so every element gets the same bits */
        float xg[8] = {0}, xu[8] = {0};
        memcpy(xg, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(xu, u + i, (size_t)(n - i) * sizeof(float));
        bc__silu_mul_avx2(xg, xu, 8);
        memcpy(g + i, xg, (size_t)(n - i) * sizeof(float));
    }
}

const bc__dot_fn bc__dot_avx2[BC_DTYPE_COUNT] = {
    [BC_DTYPE_F32] = dot_f32_avx2,     [BC_DTYPE_F16] = dot_f16_avx2,         [BC_DTYPE_BF16] = dot_bf16_avx2,
    [BC_DTYPE_Q8_0] = dot_q8_0_avx2,   [BC_DTYPE_Q4_0] = dot_q4_0_avx2,       [BC_DTYPE_Q4_1] = dot_q4_1_avx2,
    [BC_DTYPE_Q5_0] = dot_q5_0_avx2,   [BC_DTYPE_Q5_1] = dot_q5_1_avx2,       [BC_DTYPE_Q4_K] = dot_q4_K_avx2,
    [BC_DTYPE_Q5_K] = dot_q5_K_avx2,   [BC_DTYPE_Q6_K] = dot_q6_K_avx2,       [BC_DTYPE_NF4] = bc__dot_nf4_avx2,
    [BC_DTYPE_FP4] = bc__dot_fp4_avx2, [BC_DTYPE_Q4_GPTQ] = dot_q4_gptq_avx2,
};

/* ------------------------------------------------------------------------ */
/* AVX-512                                                                  */
/* ------------------------------------------------------------------------ */

/* 16 weights at index i as f32: kind 0 f32, 1 f16, 2 bf16. */
INLINE_AVX512 __m512 load16(const int kind, const void *w, int64_t i) {
    if (kind == 0) return _mm512_loadu_ps((const float *)w + i);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    if (kind == 1) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

INLINE_AVX512 void dot_float_avx512(const int kind, int64_t cols, const void *w, const void *a, size_t as, const int na,
                                    float *out) {
    __m512 acc0[BC__MAX_NA], acc1[BC__MAX_NA];
    const float *x[BC__MAX_NA];
    for (int k = 0; k < na; k++) {
        acc0[k] = acc1[k] = _mm512_setzero_ps();
        x[k] = (const float *)((const char *)a + (size_t)k * as);
    }
    int64_t i = 0;
    for (; i + 32 <= cols; i += 32) {
        const __m512 w0 = load16(kind, w, i), w1 = load16(kind, w, i + 16);
        for (int k = 0; k < na; k++) {
            acc0[k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[k] + i), acc0[k]);
            acc1[k] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[k] + i + 16), acc1[k]);
        }
    }
    for (; i + 16 <= cols; i += 16) {
        const __m512 w0 = load16(kind, w, i);
        for (int k = 0; k < na; k++) acc0[k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[k] + i), acc0[k]);
    }
    for (int k = 0; k < na; k++) {
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0[k], acc1[k]));
        for (int64_t j = i; j < cols; j++) s += half_scalar(kind, w, j) * x[k][j];
        out[k] = s;
    }
}
WRAP_NA(ATTR_AVX512, dot_f32_avx512, dot_float_avx512, 0)
WRAP_NA(ATTR_AVX512, dot_f16_avx512, dot_float_avx512, 1)
WRAP_NA(ATTR_AVX512, dot_bf16_avx512, dot_float_avx512, 2)

#define DOT32_TARGET T_AVX512
#define DOT32_SFX    vnni
#define DOT32_VNNI   1
#include "kernels/x86_dot32.h"
#undef DOT32_TARGET
#undef DOT32_SFX
#undef DOT32_VNNI

/* q6_K against a8k with 512-bit registers: both 128-weight halves of a block
 * in one register per part p (bytes 0-31: half 0, 32-63: half 1; the layout
 * of dot_q6k_avx2 above). vpdpbusd leaves in each int32 lane the sum of four
 * products, lanes 4s..4s+3 covering one 16-weight sub-block, which vpmulld
 * scales by that sub-block's scale; the -32 offset goes in through the
 * activation's per-16 sums as in the AVX2 kernel. Everything stays exact in
 * int32 (|lane| <= 4 * 63 * 127 * 127 per part). */
INLINE_AVX512 void dot_q6k_vnni_(const int unused, int64_t cols, const void *w, const void *a, size_t as, const int na,
                                 float *out) {
    (void)unused;
    __m512 acc[BC__MAX_NA];
    for (int k = 0; k < na; k++) acc[k] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    /* Lane l of part p takes scale 2p + (l / 4) for l < 8, 8 + 2p + (l - 8) / 4 above. */
    __m512i sidx[4];
    for (int p = 0; p < 4; p++)
        sidx[p] = _mm512_setr_epi32(2 * p, 2 * p, 2 * p, 2 * p, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 8 + 2 * p,
                                    8 + 2 * p, 8 + 2 * p, 8 + 2 * p, 9 + 2 * p, 9 + 2 * p, 9 + 2 * p, 9 + 2 * p);
    for (int64_t b = 0; b < cols / 256; b++) {
        const bc__block_q6_K *x = (const bc__block_q6_K *)w + b;
        const __m512i qla = _mm512_loadu_si512(x->ql), qlb = _mm512_loadu_si512(x->ql + 64);
        const __m512i ql0 = _mm512_shuffle_i64x2(qla, qlb, _MM_SHUFFLE(1, 0, 1, 0)); /* ql 0-31 | 64-95 */
        const __m512i ql1 = _mm512_shuffle_i64x2(qla, qlb, _MM_SHUFFLE(3, 2, 3, 2)); /* ql 32-63 | 96-127 */
        const __m512i qh = _mm512_loadu_si512(x->qh);
        __m512i q[4];
        q[0] = _mm512_or_si512(_mm512_and_si512(ql0, m4), _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4));
        q[1] = _mm512_or_si512(_mm512_and_si512(ql1, m4),
                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 2), m3), 4));
        q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql0, 4), m4),
                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m3), 4));
        q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql1, 4), m4),
                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 6), m3), 4));
        const __m512i sc32 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x->scales));
        __m512i s[4];
        for (int p = 0; p < 4; p++) s[p] = _mm512_permutexvar_epi32(sidx[p], sc32);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
        const float dw = F16C(x->d);
        for (int k = 0; k < na; k++) {
            const bc__block_a8k *y = (const bc__block_a8k *)((const char *)a + (size_t)k * as) + b;
            /* -32 * sum_g scale_g * bsums_g, in eight int32 lanes */
            const __m256i c = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y->bsums));
            __m512i sumi = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(c, 5)));
            for (int p = 0; p < 4; p++) {
                const __m512i y8 =
                    _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(y->qs + 32 * p))),
                                       _mm256_loadu_si256((const __m256i *)(y->qs + 128 + 32 * p)), 1);
                const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[p], y8);
                sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(dot, s[p]));
            }
            acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(dw * y->d), _mm512_cvtepi32_ps(sumi), acc[k]);
        }
    }
    for (int k = 0; k < na; k++) out[k] = _mm512_reduce_add_ps(acc[k]);
}
WRAP_NA(ATTR_AVX512, dot_q6_K_vnni, dot_q6k_vnni_, 0)

/* q4_K and q5_K: the AVX2 kernels (their per-32 scales and mins fit the int16
 * maddubs/madd chain). */
const bc__dot_fn bc__dot_avx512[BC_DTYPE_COUNT] = {
    [BC_DTYPE_F32] = dot_f32_avx512,       [BC_DTYPE_F16] = dot_f16_avx512, [BC_DTYPE_BF16] = dot_bf16_avx512,
    [BC_DTYPE_Q8_0] = dot_q8_0_vnni,       [BC_DTYPE_Q4_0] = dot_q4_0_vnni, [BC_DTYPE_Q4_1] = dot_q4_1_vnni,
    [BC_DTYPE_Q5_0] = dot_q5_0_vnni,       [BC_DTYPE_Q5_1] = dot_q5_1_vnni, [BC_DTYPE_Q6_K] = dot_q6_K_vnni,
    [BC_DTYPE_Q4_GPTQ] = dot_q4_gptq_vnni,
};

/* q8_0 has no entry: its four-row kernel measured slower than row by row
 * (bench_matmul, n = 2..32), its weight bytes needing no unpacking to share. */
const bc__gemm4_fn bc__gemm4_avx512[BC_DTYPE_COUNT] = {
    [BC_DTYPE_Q4_0] = gemm_q4_0_vnni,
    [BC_DTYPE_Q4_1] = gemm_q4_1_vnni,
    [BC_DTYPE_Q5_0] = gemm_q5_0_vnni,
    [BC_DTYPE_Q5_1] = gemm_q5_1_vnni,
};

/* The AVX-512 layouts (avx512_q32.c, avx512_q4x.c, avx512_k.c). */
const bc__pack_layout *const bc__pack_avx512[BC_DTYPE_COUNT] = {
    [BC_DTYPE_Q4_0] = &bc__layout_q4_0_avx512, [BC_DTYPE_Q4_1] = &bc__layout_q4_1_avx512,
    [BC_DTYPE_Q5_0] = &bc__layout_q5_0_avx512, [BC_DTYPE_Q5_1] = &bc__layout_q5_1_avx512,
    [BC_DTYPE_Q8_0] = &bc__layout_q8_0_avx512, [BC_DTYPE_Q4_GPTQ] = &bc__layout_q4_gptq_avx512,
    [BC_DTYPE_NF4] = &bc__layout_nf4_avx512,   [BC_DTYPE_FP4] = &bc__layout_fp4_avx512,
    [BC_DTYPE_Q4_K] = &bc__layout_q4_K_avx512, [BC_DTYPE_Q5_K] = &bc__layout_q5_K_avx512,
    [BC_DTYPE_Q6_K] = &bc__layout_q6_K_avx512,
};

/* The AVX2 layouts (avx2_q32.c, avx2_k.c, avx2_q4x.c). */
const bc__pack_layout *const bc__pack_avx2[BC_DTYPE_COUNT] = {
    [BC_DTYPE_Q4_0] = &bc__layout_q4_0_avx2,       [BC_DTYPE_Q4_1] = &bc__layout_q4_1_avx2,
    [BC_DTYPE_Q5_0] = &bc__layout_q5_0_avx2,       [BC_DTYPE_Q5_1] = &bc__layout_q5_1_avx2,
    [BC_DTYPE_Q8_0] = &bc__layout_q8_0_avx2,       [BC_DTYPE_Q4_K] = &bc__layout_q4_K_avx2,
    [BC_DTYPE_Q5_K] = &bc__layout_q5_K_avx2,       [BC_DTYPE_Q6_K] = &bc__layout_q6_K_avx2,
    [BC_DTYPE_Q4_GPTQ] = &bc__layout_q4_gptq_avx2, [BC_DTYPE_NF4] = &bc__layout_nf4_avx2,
    [BC_DTYPE_FP4] = &bc__layout_fp4_avx2,
};

/* ------------------------------------------------------------------------ */
/* AVX-512 BF16: bf16 weights against bf16 activations                      */
/* ------------------------------------------------------------------------ */

/* For batches (prompts, batched decode) of bf16 weights: the activations are
 * rounded to bf16 once per matmul (BC__ACT_BF16, as llama.cpp does for its
 * bf16 weights) and vdpbf16ps multiplies 32 weight/activation pairs into 16
 * f32 sums per instruction, twice the rate of widening the weights to f32.
 * Single rows keep f32 activations and the exact widening kernel. */
#define T_BF16      "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16"
#define INLINE_BF16 static inline __attribute__((always_inline, target(T_BF16)))
#define ATTR_BF16   __attribute__((target(T_BF16)))

/* nr weight rows (row r at w + r * ws) against na bf16 activation rows:
 * out[r * BC__MAX_NA + k]. */
INLINE_BF16 void dot_bf16x_(const int nr, int64_t cols, const void *w, size_t ws, const void *a, size_t as,
                            const int na, float *out) {
    __m512 acc[4][BC__MAX_NA];
    _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++) _Pragma("GCC unroll 4") for (int k = 0; k < na; k++)
        acc[r][k] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= cols; i += 32) {
        __m512bh wv[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++) wv[r] =
            (__m512bh)_mm512_loadu_si512((const uint16_t *)((const char *)w + (size_t)r * ws) + i);
        _Pragma("GCC unroll 4") for (int k = 0; k < na; k++) {
            const __m512bh av = (__m512bh)_mm512_loadu_si512((const uint16_t *)((const char *)a + (size_t)k * as) + i);
            _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++) acc[r][k] = _mm512_dpbf16_ps(acc[r][k], wv[r], av);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int k = 0; k < na; k++) {
            const uint16_t *wr = (const uint16_t *)((const char *)w + (size_t)r * ws);
            const uint16_t *ak = (const uint16_t *)((const char *)a + (size_t)k * as);
            float s = _mm512_reduce_add_ps(acc[r][k]);
            for (int64_t j = i; j < cols; j++) s += half_scalar(2, wr, j) * half_scalar(2, ak, j);
            out[r * BC__MAX_NA + k] = s;
        }
}

static ATTR_BF16 void dot_bf16x_row(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    float o[4 * BC__MAX_NA];
    switch (na) {
    case 1: dot_bf16x_(1, cols, w, 0, a, as, 1, o); break;
    case 2: dot_bf16x_(1, cols, w, 0, a, as, 2, o); break;
    case 3: dot_bf16x_(1, cols, w, 0, a, as, 3, o); break;
    default: dot_bf16x_(1, cols, w, 0, a, as, 4, o); break;
    }
    for (int k = 0; k < na; k++) out[k] = o[k];
}

static ATTR_BF16 void dot_bf16x_4rows(int64_t cols, const void *w, size_t ws, const void *a, size_t as, int na,
                                      float *out) {
    switch (na) {
    case 1: dot_bf16x_(4, cols, w, ws, a, as, 1, out); break;
    case 2: dot_bf16x_(4, cols, w, ws, a, as, 2, out); break;
    case 3: dot_bf16x_(4, cols, w, ws, a, as, 3, out); break;
    default: dot_bf16x_(4, cols, w, ws, a, as, 4, out); break;
    }
}

const bc__dot_fn bc__dot_bf16_act_bf16 = dot_bf16x_row;
const bc__gemm4_fn bc__gemm4_bf16_act_bf16 = dot_bf16x_4rows;

#else /* not x86-64 with GCC or Clang: the portable kernels only */

const bc__dot_fn bc__dot_avx2[BC_DTYPE_COUNT];
const bc__dot_fn bc__dot_avx512[BC_DTYPE_COUNT];
const bc__gemm4_fn bc__gemm4_avx512[BC_DTYPE_COUNT];
const bc__pack_layout *const bc__pack_avx512[BC_DTYPE_COUNT];
const bc__pack_layout *const bc__pack_avx2[BC_DTYPE_COUNT];
const bc__dot_fn bc__dot_bf16_act_bf16;
const bc__gemm4_fn bc__gemm4_bf16_act_bf16;

void bc__silu_mul_avx2(float *g, const float *u, int n) {
    (void)g;
    (void)u;
    (void)n;
}

#endif

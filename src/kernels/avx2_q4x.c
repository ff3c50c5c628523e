/*
 * avx2_q4x.c - AVX2 kernels of the 4-bit code formats of the published
 * checkpoints: nf4 and fp4 (bitsandbytes), row-major, against a8 activation
 * blocks (see kernels.c, dot_code4_c, for the arithmetic they follow and
 * quants_blocks.h for the block). q4_gptq, a 32-weight block with a zero
 * point, goes through the template of x86_dot32.h with q4_0.
 *
 * Per 64-weight block: the 32 code bytes split into their low nibbles
 * (weights 0..31) and high nibbles (32..63); vpshufb looks each nibble up in
 * two 16-byte tables, the low and the high bytes of the int16 code values
 * round(code * 2^14), and vpunpcklbw / vpunpckhbw put the two bytes back
 * together. Those unpack within 128-bit lanes: from a register of 32 nibbles
 * the low unpack takes bytes 0..7 and 16..23, the high one 8..15 and 24..31.
 * The block's slot order (byte p holds weight bc__nf4_slot(p), bytes 8..15
 * and 16..23 traded) makes the low unpack weights 0..15 and the high one
 * 16..31, in order, so each meets the activation bytes of its half widened to
 * int16 with vpmovsxbw, and vpmaddwd gives int32 sums: at most 64 products
 * of 16384 * 127, exact. Each half (one a8 block) is converted to f32 once
 * and FMA'd with absmax * da into its own accumulator (two chains, so one
 * activation row is not bound by the FMA latency), times 2^-14 at the end.
 *
 * The weights of a block are decoded once for all na activation rows; each
 * row's arithmetic is the same whatever na is, so a row of a batch gives
 * the bits it gives alone.
 */
#include "kernels.h"

#include "quants_blocks.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "x86_common.h"

/* The low (*lo) and high (*hi) bytes of the 16 int16 values of tab, in both
 * 128-bit lanes: vpshufb tables indexed by the 4-bit code. */
INLINE_AVX2 void code_tables(const int16_t *tab, __m256i *lo, __m256i *hi) {
    const __m128i t0 = _mm_loadu_si128((const __m128i *)tab), t1 = _mm_loadu_si128((const __m128i *)(tab + 8));
    const __m128i m8 = _mm_set1_epi16(0xFF);
    *lo = _mm256_broadcastsi128_si256(_mm_packus_epi16(_mm_and_si128(t0, m8), _mm_and_si128(t1, m8)));
    *hi = _mm256_broadcastsi128_si256(_mm_packus_epi16(_mm_srli_epi16(t0, 8), _mm_srli_epi16(t1, 8)));
}

/* The int16 code values of 32 nibbles (one per byte of n, in slot order):
 * q[0] weights 0..15, q[1] weights 16..31. */
INLINE_AVX2 void decode_half(__m256i n, __m256i tlo, __m256i thi, __m256i *q) {
    const __m256i l = _mm256_shuffle_epi8(tlo, n), h = _mm256_shuffle_epi8(thi, n);
    q[0] = _mm256_unpacklo_epi8(l, h);
    q[1] = _mm256_unpackhi_epi8(l, h);
}

/* The int32 lanes summing to dot(q (32 int16 weights), qa (32 int8)). */
INLINE_AVX2 __m256i dot_half(const __m256i *q, const int8_t *qa) {
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)qa));
    const __m256i a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(qa + 16)));
    return _mm256_add_epi32(_mm256_madd_epi16(q[0], a0), _mm256_madd_epi16(q[1], a1));
}

INLINE_AVX2 void dot_code4_avx2(const int16_t *tab, int64_t cols, const void *w, const void *a, size_t as, const int na,
                                float *out) {
    __m256i tlo, thi;
    code_tables(tab, &tlo, &thi);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc0[BC__MAX_NA], acc1[BC__MAX_NA];
    for (int k = 0; k < na; k++) acc0[k] = acc1[k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 64; b++) {
        const bc__block_nf4 *x = (const bc__block_nf4 *)w + b;
        const __m256i raw = _mm256_loadu_si256((const __m256i *)x->qs);
        __m256i q0[2], q1[2];
        decode_half(_mm256_and_si256(raw, m4), tlo, thi, q0);
        decode_half(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), tlo, thi, q1);
        const __m256 dw = _mm256_broadcast_ss(&x->d);
        for (int k = 0; k < na; k++) {
            const bc__block_a8 *y = (const bc__block_a8 *)((const char *)a + (size_t)k * as) + 2 * b;
            const __m256i p0 = dot_half(q0, y[0].qs), p1 = dot_half(q1, y[1].qs);
            acc0[k] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&y[0].d)), _mm256_cvtepi32_ps(p0), acc0[k]);
            acc1[k] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&y[1].d)), _mm256_cvtepi32_ps(p1), acc1[k]);
        }
    }
    for (int k = 0; k < na; k++) out[k] = hsum8(_mm256_add_ps(acc0[k], acc1[k])) * 0x1p-14f;
}

WRAP_NA(ATTR_AVX2, dot_nf4_avx2_, dot_code4_avx2, bc__nf4_i16)
WRAP_NA(ATTR_AVX2, dot_fp4_avx2_, dot_code4_avx2, bc__fp4_i16)

ATTR_AVX2 void bc__dot_nf4_avx2(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    dot_nf4_avx2_(cols, w, a, as, na, out);
}
ATTR_AVX2 void bc__dot_fp4_avx2(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    dot_fp4_avx2_(cols, w, a, as, na, out);
}

#endif

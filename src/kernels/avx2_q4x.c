/*
 * avx2_q4x.c - AVX2 kernels of the 4-bit code formats of the published
 * checkpoints: nf4 and fp4 (bitsandbytes), row-major, against a16 activation
 * blocks (see ref.c, dot_code4_c, for the arithmetic they follow and
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
 * 16..31, in order, so each meets the int16 activations of its half as they
 * are stored, and vpmaddwd gives int32 sums: in each lane at most 4
 * products of 16384 * 8191, exact. Each half (one a16 block) is converted to f32 once
 * and FMA'd with absmax * da into its own accumulator (two chains, so one
 * activation row is not bound by the FMA latency), times 2^-14 at the end.
 *
 * The weights of a block are decoded once for all na activation rows; each
 * row's arithmetic is the same whatever na is, so a row of a batch gives
 * the bits it gives alone.
 */
#include "kernels/avx2_q4x.h"

#include "kernels/code4.h"
#include "quant/blocks.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

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

/* The int32 lanes summing to dot(q (32 int16 weights), qa (32 int16)). */
INLINE_AVX2 __m256i dot_half(const __m256i *q, const int16_t *qa) {
    const __m256i a0 = _mm256_loadu_si256((const __m256i *)qa), a1 = _mm256_loadu_si256((const __m256i *)(qa + 16));
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
            const bc__block_a16 *y = (const bc__block_a16 *)((const char *)a + (size_t)k * as) + 2 * b;
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

/* ------------------------------------------------------------------------ */
/* Repacked: 8 rows at once                                                 */
/* ------------------------------------------------------------------------ */

/* A group is 8 consecutive rows (see kernel_types.h, "Repacked weights"), stored
 * by block column: the 64 weights of block b of each of the 8 rows in 288
 * bytes,
 *   quants  256 bytes, 8 chunks of 32: chunk c holds weights 8c .. 8c+7 of
 *           every row, byte 16h + k (h = 0, 1; k = 0..15) those of row
 *           4h + (k & 7) / 2: for k < 8 weight 8c + k % 2 in the low nibble
 *           and 8c + 4 + k % 2 in the high one, for k >= 8 weights 8c + 2 +
 *           k % 2 and 8c + 6 + k % 2
 *   scales  32 bytes: the 8 rows' f32 absmax
 * so a group takes what its rows took as blocks (36 bytes a block).
 *
 * The table lookups and in-lane unpacks of the row kernel then turn a chunk
 * into 4 registers of int16, each holding 2 consecutive weights of every
 * row, a row per 32-bit lane: vpmaddwd against the matching pair of int16
 * activations, broadcast, gives each row's 2 products summed in its lane,
 * with no horizontal adds. The pairs are broadcast from the int16
 * activations as stored (a load, not a shuffle: vpshufb and the unpacks
 * already keep the shuffle units busy). Per half of a block (one a16 block), the int32
 * sums of the 8 rows convert to f32 once and are FMA'd with absmax * da; the
 * integer sums are those of the row kernel, exact.
 *
 * On Zen 3 this runs at about half the speed of the repacked q4_0 kernel
 * (bench_matmul 4096x4096, n = 1, one thread: 0.60-0.65 ms against 0.31):
 * both are bound by the integer multiplies, and vpmaddwd makes 16 products
 * where q4_0's vpmaddubsw makes 32. Measured no faster: the high nibbles
 * shifted with vpmulhuw (2%); the rows skewed so that each vpmaddwd meets
 * an unaligned load of the activations instead of a broadcast; the codes
 * split into bytes sign * (129 h + l) for vpmaddubsw (7% slower at n = 1,
 * 25% in batches: twice the multiplies). */
#define CODE4_COL      288
#define CODE4_QUANTS   256
#define CODE4_PREFETCH 2048

static size_t group_bytes_code4(int64_t cols) { return (size_t)(cols / 64) * CODE4_COL; }

static void pack_code4(const void *src, size_t row_bytes, int64_t cols, void *dst) {
    memset(dst, 0, group_bytes_code4(cols));
    for (int r = 0; r < 8; r++) {
        const bc__block_nf4 *x = (const bc__block_nf4 *)((const char *)src + (size_t)r * row_bytes);
        for (int64_t b = 0; b < cols / 64; b++) {
            uint8_t q[64], *col = (uint8_t *)dst + (size_t)b * CODE4_COL;
            for (int p = 0; p < 32; p++) {
                q[bc__nf4_slot(p)] = x[b].qs[p] & 0xF;
                q[32 + bc__nf4_slot(p)] = x[b].qs[p] >> 4;
            }
            memcpy(col + CODE4_QUANTS + 4 * r, &x[b].d, sizeof x[b].d);
            for (int j = 0; j < 64; j++) {
                const int c = j / 8, i = j % 8, k = (i & 2 ? 8 : 0) + 2 * (r % 4) + i % 2;
                col[32 * c + 16 * (r / 4) + k] |= (uint8_t)(q[j] << (i >= 4 ? 4 : 0));
            }
        }
    }
}

INLINE_AVX2 void packed_code4_avx2(const int16_t *tab, int64_t cols, const void *group, const void *a, size_t as,
                                   const int na, float *out) {
    __m256i tlo, thi;
    code_tables(tab, &tlo, &thi);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[BC__MAX_NA];
    for (int k = 0; k < na; k++) acc[k] = _mm256_setzero_ps();
    const uint8_t *col = group;
    for (int64_t b = 0; b < cols / 64; b++, col += CODE4_COL) {
        /* Prefetches may pass the group's end: they never fault. */
        for (int off = 0; off < CODE4_COL; off += 64)
            _mm_prefetch((const char *)(col + CODE4_PREFETCH + off), _MM_HINT_T0);
        const bc__block_a16 *y[BC__MAX_NA];
        for (int k = 0; k < na; k++) y[k] = (const bc__block_a16 *)((const char *)a + (size_t)k * as) + 2 * b;
        const __m256 dw = _mm256_load_ps((const float *)(col + CODE4_QUANTS));
        for (int h = 0; h < 2; h++) {
            __m256i p[BC__MAX_NA];
            for (int k = 0; k < na; k++) p[k] = _mm256_setzero_si256();
            for (int c = 4 * h; c < 4 * h + 4; c++) {
                const __m256i raw = _mm256_load_si256((const __m256i *)(col + 32 * c));
                __m256i w[4];
                decode_half(_mm256_and_si256(raw, m4), tlo, thi, w);
                decode_half(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), tlo, thi, w + 2);
                for (int k = 0; k < na; k++)
                    for (int i = 0; i < 4; i++) {
                        int32_t pair;
                        memcpy(&pair, y[k][h].qs + 8 * (c - 4 * h) + 2 * i, sizeof pair);
                        p[k] = _mm256_add_epi32(p[k], _mm256_madd_epi16(w[i], _mm256_set1_epi32(pair)));
                    }
            }
            for (int k = 0; k < na; k++)
                acc[k] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&y[k][h].d)), _mm256_cvtepi32_ps(p[k]),
                                         acc[k]);
        }
    }
    for (int k = 0; k < na; k++) _mm256_storeu_ps(out + 8 * k, _mm256_mul_ps(acc[k], _mm256_set1_ps(0x1p-14f)));
}

WRAP_NA(ATTR_AVX2, packed_nf4_avx2, packed_code4_avx2, bc__nf4_i16)
WRAP_NA(ATTR_AVX2, packed_fp4_avx2, packed_code4_avx2, bc__fp4_i16)

const bc__pack_layout bc__layout_nf4_avx2 = {BC__ISA_AVX2,      8,          BC__MAX_NA,
                                             group_bytes_code4, pack_code4, packed_nf4_avx2};
const bc__pack_layout bc__layout_fp4_avx2 = {BC__ISA_AVX2,      8,          BC__MAX_NA,
                                             group_bytes_code4, pack_code4, packed_fp4_avx2};

#endif

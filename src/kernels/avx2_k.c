/*
 * avx2_k.c - repacked layouts and AVX2 kernels of the K formats q4_K, q5_K
 * and q6_K (see kernel_types.h, "Repacked weights", for the idea; quants.h for
 * the block formats; dot_k45_c and dot_q6_K_c in ref.c for the
 * arithmetic they must match).
 *
 * A group is 8 consecutive weight rows, stored as one column per super-block
 * (256 weights of each of the 8 rows), the columns one after the other. A
 * column's size is a multiple of 32 bytes, so every 32-byte load is aligned.
 *
 * A column's weights unpack into 64 quant registers of 32 bytes: register i
 * holds weights 4i .. 4i+3 of the 8 rows, byte 4r + t weight 4i + t of row
 * r, a row per 32-bit lane. They are stored as:
 *   q4_K  pairs of registers in 32 bytes: for chunk c (64 weights), byte
 *         4r + t of stored register i (0..7) holds register 16c + i in its
 *         low nibble and 16c + 8 + i in its high one (the bytes
 *         qs[32c + 4i + t] of row r as stored): 1.5 operations a register
 *   q5_K  each sub-block j (registers 8j + m, m = 0..7) in 5 stored registers
 *         X0..X4: Xm's low 5 bits are register 8j + m (m < 5), and their top
 *         3 bits hold the others: register 8j + 5 in X0 (bits 0-2) and X1
 *         (3-4, at bits 6-7), 8j + 6 likewise in X2 and X3, 8j + 7 in X4
 *         (0-2), X1 bit 5 (3) and X3 bit 5 (4): 23 operations for 8 registers
 *   q6_K  each 16-weight group g (registers 4g .. 4g+3) in 3 stored registers
 *         A, B, C: their low 6 bits are registers 4g .. 4g+2, their top 2 bits
 *         bits 4-5 (A), 2-3 (B) and 0-1 (C) of register 4g+3: 11 operations
 *         for 4 registers
 * At n = 1 the unpacking costs about as much as the products, so it is worth
 * the odd bit layouts: with ggml's low/high bit planes kept (about 4.3
 * operations a register) q5_K and q6_K ran 20-25% slower from cache.
 * Column maps:
 *
 *   q4_K  1184 bytes a column (8 rows of 144: +2.8%)
 *     0    d      8 f16, row r at 2r
 *     16   dmin   8 f16
 *     32   scales 4 x 16 bytes: pair p, row r at 16p + 2r: the 6-bit scales
 *                 of sub-blocks 2p, 2p+1 as bytes
 *     96   mins   4 x 16 bytes, the same for the 6-bit mins
 *     160  quants 4 chunks of 256 bytes
 *   q5_K  1440 bytes (8 rows of 176: +2.3%): q4_K's first 160 bytes, then
 *     160  quants 8 sub-blocks of 160 bytes
 *   q6_K  1696 bytes (8 rows of 210: +1.0%)
 *     0    d      8 f32 (the f16 d converted at repack: the room is there,
 *                 the column being padded to 32 bytes anyway)
 *     32   scales 8 x 16 bytes: pair p, row r at 16p + 2r: the int8 scales
 *                 of the 16-weight groups 2p, 2p+1
 *     160  quants 16 groups of 96 bytes
 *
 * The kernel runs one group against na activation rows, column by column.
 * The quant registers are unpacked once for all na rows; per activation row,
 * vpmaddubsw against 4 activation bytes broadcast to every lane gives each
 * row's 4 products as two int16 sums, which add in int16
 * while they cannot overflow (|q a| <= q_max * 127 per product, 2 products
 * per vpmaddubsw lane):
 *   q4_K  q <= 15: 8 results, 16 products, at most 30480
 *   q5_K  q <= 31: 4 results, 8 products, at most 31496
 *   q6_K  q <= 63: 2 results, 4 products, at most 32004
 * Then one vpmaddwd against the sub-block's scale in both int16 halves of
 * each row's lane both scales and widens to int32. The int32 sums of a column
 * are exact (at most 8 * 63 * 32 * 31 * 127 for q5_K; for q6_K
 * 16 * 127 * 16 * (63 + 32) * 127), and the offsets go in through the
 * activation's per-16 sums, exactly as in the C kernels:
 *   q4_K/q5_K  the mins: per row sum_j m_j * (sum of the activation's
 *              sub-block j), four vpmaddwd of the rows' (m_2p, m_2p+1)
 *              against the broadcast pair sums, converted apart since they
 *              carry dmin, not d
 *   q6_K       the -32: -32 * sum_g sc_g * bsums_g, eight vpmaddwd of the
 *              rows' scale pairs against broadcast bsums pairs, before the
 *              products are added
 * and one conversion and FMA per column and activation row (two for the
 * mins) finish it.
 */
#include "kernels/avx2_k.h"

#include "quant/blocks.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

/* Column offsets and sizes (see the map above). */
#define K45_D      0
#define K45_DMIN   16
#define K45_SCALES 32
#define K45_MINS   96
#define Q4K_QS     160
#define Q4K_COL    1184
#define Q5K_QS     160
#define Q5K_COL    1440
#define Q6K_D      0
#define Q6K_SCALES 32
#define Q6K_QS     160
#define Q6K_COL    1696

static_assert(Q4K_COL % 32 == 0 && Q5K_COL % 32 == 0 && Q6K_COL % 32 == 0, "columns keep 32-byte alignment");
static_assert(Q4K_QS + 1024 == Q4K_COL && Q5K_QS + 1280 == Q5K_COL && Q6K_QS + 1536 == Q6K_COL, "column maps");

/* Bytes ahead of the column being read that it is prefetched. At n = 1 the
 * group streams from L3 or memory; the q4_K kernel alone on one thread, on
 * 11008x4096 (L3-resident): 18 GB/s without, 27 with 2 KB, 31 with 4 KB, 32
 * with 8 KB; on 32768x4096 (DRAM): 14 GB/s without, 17.5 with any of them. */
#define PREFETCH 4096

static size_t group_bytes_q4_K(int64_t cols) { return (size_t)(cols / 256) * Q4K_COL; }
static size_t group_bytes_q5_K(int64_t cols) { return (size_t)(cols / 256) * Q5K_COL; }
static size_t group_bytes_q6_K(int64_t cols) { return (size_t)(cols / 256) * Q6K_COL; }

/* ------------------------------------------------------------------------ */
/* Writers                                                                  */
/* ------------------------------------------------------------------------ */

/* q4_K (bits 4) / q5_K (bits 5). */
static void pack_k45(const int bits, const void *src, size_t row_bytes, int64_t cols, void *dst) {
    const int64_t nb = cols / 256;
    const size_t col_bytes = bits == 4 ? Q4K_COL : Q5K_COL;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *col = (uint8_t *)dst + (size_t)b * col_bytes;
        uint8_t q[8][256]; /* the rows' quants in weight order, as dot_k45_c reads them */
        for (int r = 0; r < 8; r++) {
            const char *row = (const char *)src + (size_t)r * row_bytes;
            const uint8_t *qs, *qh = NULL, *scales;
            uint16_t d, dmin;
            if (bits == 4) {
                const bc__block_q4_K *x = (const bc__block_q4_K *)row + b;
                qs = x->qs;
                scales = x->scales;
                d = x->d;
                dmin = x->dmin;
            } else {
                const bc__block_q5_K *x = (const bc__block_q5_K *)row + b;
                qs = x->qs;
                qh = x->qh;
                scales = x->scales;
                d = x->d;
                dmin = x->dmin;
            }
            memcpy(col + K45_D + 2 * r, &d, 2);
            memcpy(col + K45_DMIN + 2 * r, &dmin, 2);
            for (int j = 0; j < 8; j++)
                bc__k_scale_min(j, scales, col + K45_SCALES + 16 * (j / 2) + 2 * r + j % 2,
                                col + K45_MINS + 16 * (j / 2) + 2 * r + j % 2);
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) {
                    q[r][64 * c + l] = qs[32 * c + l] & 0xF;
                    q[r][64 * c + 32 + l] = qs[32 * c + l] >> 4;
                    if (qh) {
                        q[r][64 * c + l] |= (uint8_t)(((qh[l] >> (2 * c)) & 1) << 4);
                        q[r][64 * c + 32 + l] |= (uint8_t)(((qh[l] >> (2 * c + 1)) & 1) << 4);
                    }
                }
        }
        for (int r = 0; r < 8; r++)
            for (int t = 0; t < 4; t++) {
                uint8_t *o = col + (bits == 4 ? Q4K_QS : Q5K_QS) + 4 * r + t;
                if (bits == 4) {
                    for (int c = 0; c < 4; c++)
                        for (int i = 0; i < 8; i++)
                            o[256 * c + 32 * i] =
                                (uint8_t)(q[r][64 * c + 4 * i + t] | q[r][64 * c + 32 + 4 * i + t] << 4);
                    continue;
                }
                for (int j = 0; j < 8; j++) {
                    uint8_t w[8], *x = o + 160 * j;
                    for (int m = 0; m < 8; m++) w[m] = q[r][32 * j + 4 * m + t];
                    x[0] = (uint8_t)(w[0] | (w[5] & 7) << 5);
                    x[32] = (uint8_t)(w[1] | ((w[7] >> 3) & 1) << 5 | (w[5] >> 3) << 6);
                    x[64] = (uint8_t)(w[2] | (w[6] & 7) << 5);
                    x[96] = (uint8_t)(w[3] | (w[7] >> 4) << 5 | (w[6] >> 3) << 6);
                    x[128] = (uint8_t)(w[4] | (w[7] & 7) << 5);
                }
            }
    }
}
static void pack_q4_K(const void *src, size_t row_bytes, int64_t cols, void *dst) {
    pack_k45(4, src, row_bytes, cols, dst);
}
static void pack_q5_K(const void *src, size_t row_bytes, int64_t cols, void *dst) {
    pack_k45(5, src, row_bytes, cols, dst);
}

static void pack_q6_K(const void *src, size_t row_bytes, int64_t cols, void *dst) {
    const int64_t nb = cols / 256;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *col = (uint8_t *)dst + (size_t)b * Q6K_COL;
        uint8_t q[8][256]; /* the rows' quants (0..63) in weight order, as dot_q6_K_c reads them */
        for (int r = 0; r < 8; r++) {
            const bc__block_q6_K *x = (const bc__block_q6_K *)((const char *)src + (size_t)r * row_bytes) + b;
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
                uint8_t *o = q[r] + 128 * h;
                for (int l = 0; l < 32; l++) {
                    o[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
                    o[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                    o[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                    o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                }
            }
            const float d = bc__f16_to_f32(x->d);
            memcpy(col + Q6K_D + 4 * r, &d, 4);
            for (int g = 0; g < 16; g++) memcpy(col + Q6K_SCALES + 16 * (g / 2) + 2 * r + g % 2, &x->scales[g], 1);
        }
        for (int r = 0; r < 8; r++)
            for (int t = 0; t < 4; t++)
                for (int g = 0; g < 16; g++) {
                    uint8_t *x = col + Q6K_QS + 96 * g + 4 * r + t;
                    const int w3 = q[r][16 * g + 12 + t];
                    x[0] = (uint8_t)(q[r][16 * g + t] | (w3 >> 4) << 6);
                    x[32] = (uint8_t)(q[r][16 * g + 4 + t] | ((w3 >> 2) & 3) << 6);
                    x[64] = (uint8_t)(q[r][16 * g + 8 + t] | (w3 & 3) << 6);
                }
    }
}

/* ------------------------------------------------------------------------ */
/* Kernels                                                                  */
/* ------------------------------------------------------------------------ */

/* w[j] times the activation bytes qa[4j .. 4j+3] broadcast. The broadcast
 * from memory is a load (measured: it takes no vector ALU slot), so a
 * register of weights costs one vpmaddubsw and one add per activation row. */
#define MUL(j) _mm256_maddubs_epi16(w[j], bcast4(qa + 4 * (j)))

/* sum over the n (2, 4 or 8) registers w[j] of MUL(j), in int16. */
INLINE_AVX2 __m256i dot_i16(const int n, const __m256i *w, const int8_t *qa) {
    __m256i s = _mm256_add_epi16(MUL(0), MUL(1));
    if (n >= 4) s = _mm256_add_epi16(s, _mm256_add_epi16(MUL(2), MUL(3)));
    if (n >= 8)
        s = _mm256_add_epi16(s, _mm256_add_epi16(_mm256_add_epi16(MUL(4), MUL(5)), _mm256_add_epi16(MUL(6), MUL(7))));
    return s;
}
#undef MUL

/* Scale pair p (16 bytes at s: row r's two scales at 2r) as two vectors with
 * row r's first (*s0) or second (*s1) scale in both int16 halves of lane r. */
INLINE_AVX2 void scales_u8(const uint8_t *s, __m256i *s0, __m256i *s1) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)s));
    const __m256i dup0 = _mm256_setr_epi8(0, -1, 0, -1, 2, -1, 2, -1, 4, -1, 4, -1, 6, -1, 6, -1, 8, -1, 8, -1, 10, -1,
                                          10, -1, 12, -1, 12, -1, 14, -1, 14, -1);
    *s0 = _mm256_shuffle_epi8(v, dup0);
    const __m256i dup1 = _mm256_setr_epi8(1, -1, 1, -1, 3, -1, 3, -1, 5, -1, 5, -1, 7, -1, 7, -1, 9, -1, 9, -1, 11, -1,
                                          11, -1, 13, -1, 13, -1, 15, -1, 15, -1);
    *s1 = _mm256_shuffle_epi8(v, dup1);
}

/* Activation row k's blocks. */
#define ACT_ROW(a, as, k) ((const bc__block_a8k *)((const char *)(a) + (size_t)(k) * (as)))

/* Row r's sum_j m_j * bs_j in lane r, for the mins at m (pair p of row r at
 * 16p + 2r) and bs_j = bsums[2j] + bsums[2j+1], the sum of the activation's
 * sub-block j (|bs_j| <= 32 * 127): one vpmaddwd per pair p against
 * (bs_2p, bs_2p+1) broadcast. */
INLINE_AVX2 __m256i mins_dot(const uint8_t *m, const int16_t *bsums) {
    const __m128i bs =
        _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums), _mm_loadu_si128((const __m128i *)(bsums + 8)));
    const __m256i pairs = _mm256_broadcastsi128_si256(bs);
#define MINS(p, imm)                                                                                                   \
    _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_load_si128((const __m128i *)(m + 16 * (p)))),                           \
                      _mm256_shuffle_epi32(pairs, imm))
    return _mm256_add_epi32(_mm256_add_epi32(MINS(0, 0x00), MINS(1, 0x55)),
                            _mm256_add_epi32(MINS(2, 0xAA), MINS(3, 0xFF)));
#undef MINS
}

/* The 8 quant registers of q4_K chunk c's stored registers at qs, low
 * nibbles (half 0) or high (half 1). */
INLINE_AVX2 void unpack_q4(const uint8_t *qs, const int half, __m256i *w) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
        const __m256i raw = _mm256_load_si256((const __m256i *)(qs + 32 * i));
        w[i] = _mm256_and_si256(half ? _mm256_srli_epi16(raw, 4) : raw, m4);
    }
}

/* The 8 quant registers of a q5_K sub-block from its 5 stored registers at
 * x. The 16-bit shifts move no bit that the mask keeps across a byte. */
INLINE_AVX2 void unpack_q5(const uint8_t *x, __m256i *w) {
    const __m256i m5 = _mm256_set1_epi8(0x1F), b012 = _mm256_set1_epi8(0x07), b34 = _mm256_set1_epi8(0x18);
    __m256i v[5];
    _Pragma("GCC unroll 5") for (int m = 0; m < 5; m++) {
        v[m] = _mm256_load_si256((const __m256i *)(x + 32 * m));
        w[m] = _mm256_and_si256(v[m], m5);
    }
    w[5] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v[0], 5), b012),
                           _mm256_and_si256(_mm256_srli_epi16(v[1], 3), b34));
    w[6] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v[2], 5), b012),
                           _mm256_and_si256(_mm256_srli_epi16(v[3], 3), b34));
    w[7] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v[4], 5), b012),
                           _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v[1], 2), _mm256_set1_epi8(0x08)),
                                           _mm256_and_si256(_mm256_srli_epi16(v[3], 1), _mm256_set1_epi8(0x10))));
}

/* Columns [b0, b1) of the group against na (1..4) activation rows; the
 * accumulators start from zero (first) or from out and go back to out (the
 * column blocks of kernel_). */
INLINE_AVX2 void kernel_k45_(const int bits, int64_t b0, int64_t b1, const void *group, const void *a, size_t as,
                             const int na, float *out, bool first, bool prefetch) {
    const size_t col_bytes = bits == 4 ? Q4K_COL : Q5K_COL;
    __m256 acc[BC__MAX_NA];
    for (int k = 0; k < na; k++) acc[k] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + 8 * k);
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *col = (const uint8_t *)group + (size_t)b * col_bytes;
        if (prefetch)
            for (size_t off = 0; off < col_bytes; off += 64) /* past the end is harmless: prefetches never fault */
                _mm_prefetch((const char *)(col + PREFETCH + off), _MM_HINT_T0);
        __m256i sumi[BC__MAX_NA];
        for (int k = 0; k < na; k++) sumi[k] = _mm256_setzero_si256();
        /* Sub-blocks 2c, 2c + 1 (one scale pair; for q4_K one chunk). The
         * loop stays rolled: unrolled, it measured no faster at na = 4 and
         * is four times the code. */
        _Pragma("GCC unroll 1") for (int c = 0; c < 4; c++) {
            __m256i sc[2];
            scales_u8(col + K45_SCALES + 16 * c, &sc[0], &sc[1]);
            _Pragma("GCC unroll 2") for (int e = 0; e < 2; e++) {
                __m256i w[8];
                if (bits == 4)
                    unpack_q4(col + Q4K_QS + 256 * c, e, w);
                else
                    unpack_q5(col + Q5K_QS + 160 * (2 * c + e), w);
                _Pragma("GCC unroll 4") for (int k = 0; k < na; k++) {
                    const int8_t *qa = ACT_ROW(a, as, k)[b].qs + 32 * (2 * c + e);
                    __m256i s;
                    if (bits == 4)
                        s = _mm256_madd_epi16(dot_i16(8, w, qa), sc[e]);
                    else
                        s = _mm256_add_epi32(_mm256_madd_epi16(dot_i16(4, w, qa), sc[e]),
                                             _mm256_madd_epi16(dot_i16(4, w + 4, qa + 16), sc[e]));
                    sumi[k] = _mm256_add_epi32(sumi[k], s);
                }
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(col + K45_D)));
        const __m256 dmin = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(col + K45_DMIN)));
        for (int k = 0; k < na; k++) {
            const bc__block_a8k *y = ACT_ROW(a, as, k) + b;
            const __m256i summ = mins_dot(col + K45_MINS, y->bsums);
            const __m256 da = _mm256_set1_ps(y->d);
            acc[k] = _mm256_fmadd_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
            acc[k] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(summ), acc[k]);
        }
    }
    for (int k = 0; k < na; k++) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

/* The 4 quant registers of q6_K group g from its 3 stored registers at x. */
INLINE_AVX2 void unpack_q6(const uint8_t *x, __m256i *w) {
    const __m256i m6 = _mm256_set1_epi8(0x3F), top = _mm256_set1_epi8((char)0xC0);
    const __m256i va = _mm256_load_si256((const __m256i *)x), vb = _mm256_load_si256((const __m256i *)(x + 32)),
                  vc = _mm256_load_si256((const __m256i *)(x + 64));
    w[0] = _mm256_and_si256(va, m6);
    w[1] = _mm256_and_si256(vb, m6);
    w[2] = _mm256_and_si256(vc, m6);
    /* top bits of A at 6-7, B at 4-5, C at 2-3, then all down by 2; a byte's
     * bits 0-1 are clear at each 16-bit shift, so none crosses a byte */
    const __m256i u =
        _mm256_or_si256(_mm256_and_si256(va, top), _mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(vb, top), 2),
                                                                   _mm256_srli_epi16(_mm256_and_si256(vc, top), 4)));
    w[3] = _mm256_srli_epi16(u, 2);
}

INLINE_AVX2 void kernel_q6_K_(const int unused, int64_t b0, int64_t b1, const void *group, const void *a, size_t as,
                              const int na, float *out, bool first, bool prefetch) {
    (void)unused; /* the leading argument the dispatch passes */
    /* int16 word 0 / word 1 of each 32-bit lane to both words */
    const __m256i dup0 = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5, 8,
                                          9, 8, 9, 12, 13, 12, 13);
    const __m256i dup1 = _mm256_add_epi8(dup0, _mm256_set1_epi8(2));
    __m256 acc[BC__MAX_NA];
    for (int k = 0; k < na; k++) acc[k] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + 8 * k);
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *col = (const uint8_t *)group + (size_t)b * Q6K_COL;
        if (prefetch)
            for (size_t off = 0; off < Q6K_COL; off += 64)
                _mm_prefetch((const char *)(col + PREFETCH + off), _MM_HINT_T0);
        const uint8_t *scales = col + Q6K_SCALES;
        /* Row r's scale pair p (groups 2p, 2p+1) as int16 in lane r. */
#define SCALE_PAIR(p) _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(scales + 16 * (p))))
        __m256i sumi[BC__MAX_NA];
        for (int k = 0; k < na; k++) {
            /* -32 * sum_g sc_g * bsums_g (|sum| <= 16 * 127 * 16 * 127) */
            const int16_t *bsums = ACT_ROW(a, as, k)[b].bsums;
            __m256i o = _mm256_madd_epi16(SCALE_PAIR(0), bcast4(bsums));
            for (int p = 1; p < 8; p++)
                o = _mm256_add_epi32(o, _mm256_madd_epi16(SCALE_PAIR(p), bcast4(bsums + 2 * p)));
            sumi[k] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(o, 5));
        }
        _Pragma("GCC unroll 1") for (int p = 0; p < 8; p++) {
            const __m256i sp = SCALE_PAIR(p), sc[2] = {_mm256_shuffle_epi8(sp, dup0), _mm256_shuffle_epi8(sp, dup1)};
            _Pragma("GCC unroll 2") for (int e = 0; e < 2; e++) {
                const int g = 2 * p + e;
                __m256i w[4];
                unpack_q6(col + Q6K_QS + 96 * g, w);
                _Pragma("GCC unroll 4") for (int k = 0; k < na; k++) {
                    const int8_t *qa = ACT_ROW(a, as, k)[b].qs + 16 * g;
                    sumi[k] = _mm256_add_epi32(sumi[k],
                                               _mm256_add_epi32(_mm256_madd_epi16(dot_i16(2, w, qa), sc[e]),
                                                                _mm256_madd_epi16(dot_i16(2, w + 2, qa + 8), sc[e])));
                }
            }
        }
#undef SCALE_PAIR
        const __m256 d = _mm256_load_ps((const float *)(col + Q6K_D));
        for (int k = 0; k < na; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(ACT_ROW(a, as, k)[b].d)),
                                     _mm256_cvtepi32_ps(sumi[k]), acc[k]);
    }
    for (int k = 0; k < na; k++) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

/* Columns per block: a block of the group (4 columns, 4.6 to 6.6 KB) comes
 * from memory once and is run against every activation row of the call, 4
 * at a time, from L1 (as in avx2_q32.c). Each output adds its column
 * products in column order whatever na is. */
#define BLOCK_COLS 4

#define KERNEL(name, body, lead)                                                                                       \
    static ATTR_AVX2 void name(int64_t cols, const void *g, const void *a, size_t as, int na, float *out) {            \
        const int64_t nb = cols / 256;                                                                                 \
        for (int64_t b0 = 0; b0 < nb; b0 += BLOCK_COLS) {                                                              \
            const int64_t b1 = b0 + BLOCK_COLS < nb ? b0 + BLOCK_COLS : nb;                                            \
            for (int k0 = 0; k0 < na; k0 += 4) {                                                                       \
                const void *ak = (const char *)a + (size_t)k0 * as;                                                    \
                float *ok = out + 8 * k0;                                                                              \
                const bool first = b0 == 0, pf = k0 == 0;                                                              \
                switch (na - k0 < 4 ? na - k0 : 4) {                                                                   \
                case 1: body(lead, b0, b1, g, ak, as, 1, ok, first, pf); break;                                        \
                case 2: body(lead, b0, b1, g, ak, as, 2, ok, first, pf); break;                                        \
                case 3: body(lead, b0, b1, g, ak, as, 3, ok, first, pf); break;                                        \
                default: body(lead, b0, b1, g, ak, as, 4, ok, first, pf); break;                                       \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
    }
KERNEL(kernel_q4_K, kernel_k45_, 4)
KERNEL(kernel_q5_K, kernel_k45_, 5)
KERNEL(kernel_q6_K, kernel_q6_K_, 0)

#define LAYOUT(sfx)                                                                                                    \
    { BC__ISA_AVX2, 8, BC__PACK_MAX_NA, group_bytes_##sfx, pack_##sfx, kernel_##sfx }
const bc__pack_layout bc__layout_q4_K_avx2 = LAYOUT(q4_K);
const bc__pack_layout bc__layout_q5_K_avx2 = LAYOUT(q5_K);
const bc__pack_layout bc__layout_q6_K_avx2 = LAYOUT(q6_K);

#endif

/*
 * avx512_k.c - repacked layouts and AVX-512 VNNI kernels of the K formats
 * q4_K, q5_K and q6_K: groups of 16 rows, a row per 32-bit lane of a zmm
 * register (kernel_types.h, "Repacked weights", for the idea; quant/blocks.h
 * for the block formats; dot_k45_c and dot_q6_K_c in ref.c for the
 * arithmetic they must match; avx2_k.c for the 8-row AVX2 layouts, whose
 * bit arrangements of the 5- and 6-bit quants these keep).
 *
 * A group is stored as one column per super-block (256 weights of each of
 * the 16 rows), the columns one after the other. Every column is a multiple
 * of 64 bytes, so every 64-byte load is aligned.
 *
 * A column's weights unpack into 64 quant registers of 64 bytes: register i
 * holds weights 4i .. 4i+3 of the 16 rows, byte 4r + t weight 4i + t of row
 * r, unsigned (vpdpbusd's unsigned operand). They are stored as:
 *   q4_K  for chunk c (64 weights, sub-blocks 2c and 2c+1), byte 4r + t of
 *         stored register i (0..7) holds register 16c + i in its low nibble
 *         and 16c + 8 + i in its high one: 1.5 operations a register
 *   q5_K  each sub-block j (registers 8j + m, m = 0..7) in 5 stored registers
 *         X0..X4: Xm's low 5 bits are register 8j + m (m < 5), their top 3
 *         bits the others: register 8j + 5 in X0 (bits 0-2) and X1 (3-4, at
 *         bits 6-7), 8j + 6 likewise in X2 and X3, 8j + 7 in X4 (0-2), X1 bit
 *         5 (3) and X3 bit 5 (4): 19 operations for 8 registers, vpternlogd
 *         selecting the bits of one source or the other
 *   q6_K  each 16-weight group g (registers 4g .. 4g+3) in 3 stored registers
 *         A, B, C: their low 6 bits are registers 4g .. 4g+2, their top 2 bits
 *         bits 4-5 (A), 2-3 (B) and 0-1 (C) of register 4g+3: 9 operations
 *         for 4 registers
 * Column maps:
 *
 *   q4_K  2368 bytes a column (16 rows of 144: +2.8%)
 *     0    d      16 f16, row r at 2r
 *     32   dmin   16 f16
 *     64   scales 8 x 16 bytes: sub-block j, row r at 16j + r (6 bits)
 *     192  mins   8 x 16 bytes, the same for the 6-bit mins
 *     320  quants 4 chunks of 512 bytes
 *   q5_K  2880 bytes (16 rows of 176: +2.3%): q4_K's first 320 bytes, then
 *     320  quants 8 sub-blocks of 320 bytes
 *   q6_K  3392 bytes (16 rows of 210: +1.0%)
 *     0    d      16 f32 (the f16 d converted at repack)
 *     64   scales 8 x 32 bytes: pair p, row r at 32p + 2r: the int8 scales
 *                 of the 16-weight groups 2p, 2p+1
 *     320  quants 16 groups of 192 bytes
 *
 * The kernel runs one group against na activation rows, column by column.
 * The quant registers of a sub-block (q4_K, q5_K: 32 weights, 8 registers;
 * q6_K: 16 weights, 4 registers) are unpacked once for up to 8 activation
 * rows; per activation row, vpdpbusd with the row's 4 activation bytes as a
 * {1to16} memory operand adds each weight row's 4 products into its lane,
 * the sub-block's sum in int32; vpmulld by the rows' sub-block scales and an
 * add put it into the column's int32 sum. Exact in int32 (|qa| <= 127):
 *   q4_K  per sub-block 32 * 15 * 127 = 60960, times 63, 8 sub-blocks:
 *         at most 3.1e7
 *   q5_K  32 * 31 * 127 = 125984, times 63, 8 sub-blocks: 6.4e7
 *   q6_K  16 * 63 * 127 = 128016, times 128, 16 groups: 2.6e8, plus the
 *         offset below, 1.4e8
 * and the offsets go in through the activation's per-16 sums, exactly as in
 * the C kernels:
 *   q4_K/q5_K  the mins: per row sum_j m_j * (bsums[2j] + bsums[2j+1]), 8
 *              vpdpwssd of the rows' (m_j, m_j) int16 pairs against the
 *              pair (bsums[2j], bsums[2j+1]) as a {1to16} operand (at most
 *              8 * 63 * 32 * 127 = 2.0e6), converted apart since it carries
 *              dmin, not d
 *   q6_K       the -32: -32 * sum_g sc_g * bsums_g, 8 vpdpwssd of the rows'
 *              scale pairs against bsums pairs, before the products are
 *              added (at most 32 * 16 * 128 * 16 * 127 = 1.3e8)
 * and one conversion and FMA per column and activation row (two for the
 * mins) finish it: the same operations in the same order whatever the
 * number of rows in the call, so a row's output does not depend on its batch.
 *
 * Against the AVX2 layouts on the same CPU (bench_matmul, one thread, one
 * Zen 5 core, 4096x4096, GFLOP/s at n = 1 / 8 / 16): q4_K 184 / 257 / 259
 * -> 277 / 614 / 630, q5_K 147 / 246 / 244 -> 195 / 534 / 567, q6_K
 * 136 / 230 / 232 -> 183 / 595 / 616. Blocks of 2 or 8 columns, prefetch
 * distances of 4 and 16 KB and two vpdpbusd chains measured the same.
 */
#include "kernels/avx512_k.h"

#include "quant/blocks.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

/* Column offsets and sizes (see the maps above). */
#define K45_D      0
#define K45_DMIN   32
#define K45_SCALES 64
#define K45_MINS   192
#define Q4K_QS     320
#define Q4K_COL    2368
#define Q5K_QS     320
#define Q5K_COL    2880
#define Q6K_D      0
#define Q6K_SCALES 64
#define Q6K_QS     320
#define Q6K_COL    3392

static_assert(Q4K_COL % 64 == 0 && Q5K_COL % 64 == 0 && Q6K_COL % 64 == 0, "columns keep 64-byte alignment");
static_assert(Q4K_QS + 2048 == Q4K_COL && Q5K_QS + 2560 == Q5K_COL && Q6K_QS + 3072 == Q6K_COL, "column maps");

/* Bytes ahead of the column being read that it is prefetched, on the first
 * pass over a block of columns (the others find it in L1). */
#define PREFETCH 8192

/* Columns per block: a block of the group (4 columns, 9.3 to 13.3 KB) comes
 * from memory once and is run against every activation row of the call, 8
 * at a time, from L1; the activations of those columns (9.3 KB per 8 rows)
 * stay there too (as in avx512_q32.c). */
#define BLOCK_COLS 4

static size_t group_bytes_q4_K(int64_t cols) { return (size_t)(cols / 256) * Q4K_COL; }
static size_t group_bytes_q5_K(int64_t cols) { return (size_t)(cols / 256) * Q5K_COL; }
static size_t group_bytes_q6_K(int64_t cols) { return (size_t)(cols / 256) * Q6K_COL; }

/* ------------------------------------------------------------------------ */
/* Writers                                                                  */
/* ------------------------------------------------------------------------ */

/* q4_K (bits 4) / q5_K (bits 5). */
static void pack_k45(const int bits, const void *src, size_t row_bytes, int64_t cols, void *dst) {
    const size_t col_bytes = bits == 4 ? Q4K_COL : Q5K_COL;
    for (int64_t b = 0; b < cols / 256; b++) {
        uint8_t *col = (uint8_t *)dst + (size_t)b * col_bytes;
        uint8_t q[16][256]; /* the rows' quants in weight order, as dot_k45_c reads them */
        for (int r = 0; r < 16; r++) {
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
                bc__k_scale_min(j, scales, col + K45_SCALES + 16 * j + r, col + K45_MINS + 16 * j + r);
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
        for (int r = 0; r < 16; r++)
            for (int t = 0; t < 4; t++) {
                uint8_t *o = col + (bits == 4 ? Q4K_QS : Q5K_QS) + 4 * r + t;
                if (bits == 4) {
                    for (int c = 0; c < 4; c++)
                        for (int i = 0; i < 8; i++)
                            o[512 * c + 64 * i] =
                                (uint8_t)(q[r][64 * c + 4 * i + t] | q[r][64 * c + 32 + 4 * i + t] << 4);
                    continue;
                }
                for (int j = 0; j < 8; j++) {
                    uint8_t w[8], *x = o + 320 * j;
                    for (int m = 0; m < 8; m++) w[m] = q[r][32 * j + 4 * m + t];
                    x[0] = (uint8_t)(w[0] | (w[5] & 7) << 5);
                    x[64] = (uint8_t)(w[1] | ((w[7] >> 3) & 1) << 5 | (w[5] >> 3) << 6);
                    x[128] = (uint8_t)(w[2] | (w[6] & 7) << 5);
                    x[192] = (uint8_t)(w[3] | (w[7] >> 4) << 5 | (w[6] >> 3) << 6);
                    x[256] = (uint8_t)(w[4] | (w[7] & 7) << 5);
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
    for (int64_t b = 0; b < cols / 256; b++) {
        uint8_t *col = (uint8_t *)dst + (size_t)b * Q6K_COL;
        uint8_t q[16][256]; /* the rows' quants (0..63) in weight order, as dot_q6_K_c reads them */
        for (int r = 0; r < 16; r++) {
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
            for (int g = 0; g < 16; g++) memcpy(col + Q6K_SCALES + 32 * (g / 2) + 2 * r + g % 2, &x->scales[g], 1);
        }
        for (int r = 0; r < 16; r++)
            for (int t = 0; t < 4; t++)
                for (int g = 0; g < 16; g++) {
                    uint8_t *x = col + Q6K_QS + 192 * g + 4 * r + t;
                    const int w3 = q[r][16 * g + 12 + t];
                    x[0] = (uint8_t)(q[r][16 * g + t] | (w3 >> 4) << 6);
                    x[64] = (uint8_t)(q[r][16 * g + 4 + t] | ((w3 >> 2) & 3) << 6);
                    x[128] = (uint8_t)(q[r][16 * g + 8 + t] | (w3 & 3) << 6);
                }
    }
}

/* ------------------------------------------------------------------------ */
/* Kernels                                                                  */
/* ------------------------------------------------------------------------ */

/* An int32 at any address, of any type. */
typedef int32_t i32_any __attribute__((may_alias, aligned(1)));

/* acc + the dot products of w's unsigned bytes with the 4 signed bytes at p
 * in every lane: vpdpbusd with its {1to16} memory operand (GCC 12 does not
 * fold the broadcast into it; avx512_q32.c measured the folded form 1.5x
 * faster). */
INLINE_AVX512 __m512i dpbusd_bcast(__m512i acc, __m512i w, const void *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const i32_any *)p));
    return acc;
}

/* acc + the dot products of w's int16 pairs with the pair at p in every
 * lane (vpdpwssd, {1to16}). */
INLINE_AVX512 __m512i dpwssd_bcast(__m512i acc, __m512i w, const void *p) {
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const i32_any *)p));
    return acc;
}

/* The bits of a where mask is set, of b elsewhere. */
INLINE_AVX512 __m512i select_bits(__m512i mask, __m512i a, __m512i b) {
    return _mm512_ternarylogic_epi32(a, b, mask, 0xE4);
}

#define BYTES(v) _mm512_set1_epi8((char)(v))

/* Activation row k's blocks. */
#define ACT_ROW(a, as, k) ((const bc__block_a8k *)((const char *)(a) + (size_t)(k) * (as)))

/* Each row lane's dot of the n quant registers w with the 4n activation
 * bytes at qa, in int32: one chain of vpdpbusd (the other activation rows
 * and sub-blocks in flight hide its latency; two chains measured no faster
 * at n = 1). */
INLINE_AVX512 __m512i dot_regs(const int n, const __m512i *w, const int8_t *qa) {
    __m512i s = _mm512_setzero_si512();
    for (int j = 0; j < n; j++) s = dpbusd_bcast(s, w[j], qa + 4 * j);
    return s;
}

/* The 8 quant registers of q4_K chunk c's stored registers at qs, low
 * nibbles (half 0) or high (half 1). */
INLINE_AVX512 void unpack_q4(const uint8_t *qs, const int half, __m512i *w) {
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
        const __m512i raw = _mm512_load_si512((const void *)(qs + 64 * i));
        w[i] = _mm512_and_si512(half ? _mm512_srli_epi16(raw, 4) : raw, BYTES(0x0F));
    }
}

/* The 8 quant registers of a q5_K sub-block from its 5 stored registers at
 * x. The 16-bit shifts bring bits across a byte only where the selection
 * or a mask drops them. */
INLINE_AVX512 void unpack_q5(const uint8_t *x, __m512i *w) {
    __m512i v[5];
    _Pragma("GCC unroll 5") for (int m = 0; m < 5; m++) {
        v[m] = _mm512_load_si512((const void *)(x + 64 * m));
        w[m] = _mm512_and_si512(v[m], BYTES(0x1F));
    }
    const __m512i low3 = BYTES(0x07), b34 = BYTES(0x18);
    w[5] = select_bits(low3, _mm512_srli_epi16(v[0], 5), _mm512_and_si512(_mm512_srli_epi16(v[1], 3), b34));
    w[6] = select_bits(low3, _mm512_srli_epi16(v[2], 5), _mm512_and_si512(_mm512_srli_epi16(v[3], 3), b34));
    /* bit 5 of X1 and of X3 side by side at bits 5, 6, then down to 3, 4 */
    const __m512i b56 = select_bits(BYTES(0x20), v[1], _mm512_slli_epi16(v[3], 1));
    w[7] = select_bits(low3, _mm512_srli_epi16(v[4], 5), _mm512_and_si512(_mm512_srli_epi16(b56, 2), b34));
}

/* The 4 quant registers of q6_K group g from its 3 stored registers at x:
 * the top bits of A (6-7) and B (moved to 4-5), then of C (to 2-3), all
 * down by 2. */
INLINE_AVX512 void unpack_q6(const uint8_t *x, __m512i *w) {
    const __m512i va = _mm512_load_si512((const void *)x), vb = _mm512_load_si512((const void *)(x + 64)),
                  vc = _mm512_load_si512((const void *)(x + 128));
    const __m512i m6 = BYTES(0x3F);
    w[0] = _mm512_and_si512(va, m6);
    w[1] = _mm512_and_si512(vb, m6);
    w[2] = _mm512_and_si512(vc, m6);
    const __m512i ab = select_bits(BYTES(0xC0), va, _mm512_srli_epi16(vb, 2));
    const __m512i abc = select_bits(BYTES(0xF0), ab, _mm512_srli_epi16(vc, 4));
    w[3] = _mm512_and_si512(_mm512_srli_epi16(abc, 2), m6);
}

/* Prefetches the column at col (bytes long) PREFETCH ahead; past the group's
 * end is harmless: prefetches never fault. */
INLINE_AVX512 void prefetch_column(const uint8_t *col, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch((const char *)(col + PREFETCH + off), _MM_HINT_T0);
}

/* q4_K (bits 4) / q5_K (bits 5): columns [b0, b1) of the group against na
 * (1..8) activation rows; the accumulators start from zero (first) or from
 * out and go back to out. */
INLINE_AVX512 void cols_k45_(const int bits, int64_t b0, int64_t b1, const void *group, const void *a, size_t as,
                             const int na, float *out, bool first, bool prefetch) {
    const size_t col_bytes = bits == 4 ? Q4K_COL : Q5K_COL;
    /* bytes r, -, r, - of each row's lane: its min twice as int16 */
    const __m512i dup_min = _mm512_setr_epi32((int)0x80008000, (int)0x80018001, (int)0x80028002, (int)0x80038003,
                                              (int)0x80048004, (int)0x80058005, (int)0x80068006, (int)0x80078007,
                                              (int)0x80088008, (int)0x80098009, (int)0x800A800A, (int)0x800B800B,
                                              (int)0x800C800C, (int)0x800D800D, (int)0x800E800E, (int)0x800F800F);
    __m512 acc[8];
    for (int k = 0; k < na; k++) acc[k] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(out + 16 * k);
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *col = (const uint8_t *)group + (size_t)b * col_bytes;
        if (prefetch) prefetch_column(col, col_bytes);
        /* The mins first, straight into the accumulators. */
        __m512i mins[8];
        for (int j = 0; j < 8; j++)
            mins[j] = _mm512_shuffle_epi8(
                _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(col + K45_MINS + 16 * j))), dup_min);
        const __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(col + K45_D)));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(col + K45_DMIN)));
        for (int k = 0; k < na; k++) {
            const bc__block_a8k *y = ACT_ROW(a, as, k) + b;
            __m512i summ = _mm512_setzero_si512();
            for (int j = 0; j < 8; j++) summ = dpwssd_bcast(summ, mins[j], y->bsums + 2 * j);
            acc[k] = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, _mm512_set1_ps(y->d)), _mm512_cvtepi32_ps(summ), acc[k]);
        }
        __m512i sumi[8];
        for (int k = 0; k < na; k++) sumi[k] = _mm512_setzero_si512();
        /* Sub-blocks 2c, 2c + 1 (for q4_K one chunk). */
        _Pragma("GCC unroll 1") for (int c = 0; c < 4; c++) {
            _Pragma("GCC unroll 2") for (int e = 0; e < 2; e++) {
                const int j = 2 * c + e;
                __m512i w[8];
                if (bits == 4)
                    unpack_q4(col + Q4K_QS + 512 * c, e, w);
                else
                    unpack_q5(col + Q5K_QS + 320 * j, w);
                const __m512i sc = _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(col + K45_SCALES + 16 * j)));
                _Pragma("GCC unroll 8") for (int k = 0; k < na; k++) {
                    const int8_t *qa = ACT_ROW(a, as, k)[b].qs + 32 * j;
                    sumi[k] = _mm512_add_epi32(sumi[k], _mm512_mullo_epi32(dot_regs(8, w, qa), sc));
                }
            }
        }
        for (int k = 0; k < na; k++)
            acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(ACT_ROW(a, as, k)[b].d)),
                                     _mm512_cvtepi32_ps(sumi[k]), acc[k]);
    }
    for (int k = 0; k < na; k++) _mm512_storeu_ps(out + 16 * k, acc[k]);
}

/* q6_K: as cols_k45_. */
INLINE_AVX512 void cols_q6_K_(const int unused, int64_t b0, int64_t b1, const void *group, const void *a, size_t as,
                              const int na, float *out, bool first, bool prefetch) {
    (void)unused; /* the leading argument the dispatch passes */
    __m512 acc[8];
    for (int k = 0; k < na; k++) acc[k] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(out + 16 * k);
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *col = (const uint8_t *)group + (size_t)b * Q6K_COL;
        if (prefetch) prefetch_column(col, Q6K_COL);
            /* Row r's scale pair p (groups 2p, 2p+1) as int16 in lane r. */
#define SCALE_PAIR(p) _mm512_cvtepi8_epi16(_mm256_load_si256((const __m256i *)(col + Q6K_SCALES + 32 * (p))))
        __m512i sumi[8];
        for (int k = 0; k < na; k++) {
            const int16_t *bsums = ACT_ROW(a, as, k)[b].bsums;
            __m512i o = _mm512_setzero_si512();
            for (int p = 0; p < 8; p++) o = dpwssd_bcast(o, SCALE_PAIR(p), bsums + 2 * p);
            sumi[k] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(o, 5));
        }
        _Pragma("GCC unroll 1") for (int p = 0; p < 8; p++) {
            const __m512i sp = SCALE_PAIR(p);
            const __m512i sc[2] = {_mm512_srai_epi32(_mm512_slli_epi32(sp, 16), 16), _mm512_srai_epi32(sp, 16)};
            _Pragma("GCC unroll 2") for (int e = 0; e < 2; e++) {
                const int g = 2 * p + e;
                __m512i w[4];
                unpack_q6(col + Q6K_QS + 192 * g, w);
                _Pragma("GCC unroll 8") for (int k = 0; k < na; k++) {
                    const int8_t *qa = ACT_ROW(a, as, k)[b].qs + 16 * g;
                    sumi[k] = _mm512_add_epi32(sumi[k], _mm512_mullo_epi32(dot_regs(4, w, qa), sc[e]));
                }
            }
        }
#undef SCALE_PAIR
        const __m512 d = _mm512_load_ps((const float *)(col + Q6K_D));
        for (int k = 0; k < na; k++)
            acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(ACT_ROW(a, as, k)[b].d)),
                                     _mm512_cvtepi32_ps(sumi[k]), acc[k]);
    }
    for (int k = 0; k < na; k++) _mm512_storeu_ps(out + 16 * k, acc[k]);
}

/* The group against na (1..BC__PACK_MAX_NA) activation rows: block of
 * columns by block, 8 activation rows at a time. Each output adds its column
 * products in column order whatever na is. */
#define KERNEL(name, body, lead)                                                                                       \
    static ATTR_AVX512 void name(int64_t cols, const void *g, const void *a, size_t as, int na, float *out) {          \
        const int64_t nb = cols / 256;                                                                                 \
        for (int64_t b0 = 0; b0 < nb; b0 += BLOCK_COLS) {                                                              \
            const int64_t b1 = b0 + BLOCK_COLS < nb ? b0 + BLOCK_COLS : nb;                                            \
            for (int k0 = 0; k0 < na; k0 += 8) {                                                                       \
                const void *ak = (const char *)a + (size_t)k0 * as;                                                    \
                float *ok = out + 16 * k0;                                                                             \
                const bool first = b0 == 0, pf = k0 == 0;                                                              \
                switch (na - k0 < 8 ? na - k0 : 8) {                                                                   \
                case 1: body(lead, b0, b1, g, ak, as, 1, ok, first, pf); break;                                        \
                case 2: body(lead, b0, b1, g, ak, as, 2, ok, first, pf); break;                                        \
                case 3: body(lead, b0, b1, g, ak, as, 3, ok, first, pf); break;                                        \
                case 4: body(lead, b0, b1, g, ak, as, 4, ok, first, pf); break;                                        \
                case 5: body(lead, b0, b1, g, ak, as, 5, ok, first, pf); break;                                        \
                case 6: body(lead, b0, b1, g, ak, as, 6, ok, first, pf); break;                                        \
                case 7: body(lead, b0, b1, g, ak, as, 7, ok, first, pf); break;                                        \
                default: body(lead, b0, b1, g, ak, as, 8, ok, first, pf); break;                                       \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
    }
KERNEL(kernel_q4_K, cols_k45_, 4)
KERNEL(kernel_q5_K, cols_k45_, 5)
KERNEL(kernel_q6_K, cols_q6_K_, 0)

#define LAYOUT(sfx)                                                                                                    \
    { BC__ISA_AVX512, 16, BC__PACK_MAX_NA, group_bytes_##sfx, pack_##sfx, kernel_##sfx }
const bc__pack_layout bc__layout_q4_K_avx512 = LAYOUT(q4_K);
const bc__pack_layout bc__layout_q5_K_avx512 = LAYOUT(q5_K);
const bc__pack_layout bc__layout_q6_K_avx512 = LAYOUT(q6_K);

#endif

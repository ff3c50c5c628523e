/*
 * avx512_q4x.c - repacked layouts and AVX-512 kernels of the 4-bit code
 * formats of the published checkpoints, nf4 and fp4 (bitsandbytes): groups
 * of 16 rows, a row per 32-bit lane of a zmm register, against the int16
 * (a16) activations (kernel_types.h, "Repacked weights"; avx2_q4x.c for the
 * AVX2 layout and the row kernels; ref.c, dot_code4_c, for the arithmetic).
 *
 * A group is stored by block column: the 64 weights of block b of each of
 * the 16 rows in 576 bytes,
 *   quants  512 bytes, 8 chunks of 64: chunk c holds weights 8c .. 8c+7 of
 *           every row, the 4 bytes B0..B3 at 4r those of row r: weights
 *           8c, 8c+1 in the low nibbles of B0 and B2, 8c+2, 8c+3 in their
 *           high nibbles, 8c+4, 8c+5 in the low nibbles of B1 and B3,
 *           8c+6, 8c+7 in their high nibbles
 *   scales  64 bytes: the 16 rows' f32 absmax
 * so a group takes what its rows took as blocks (36 bytes a block).
 *
 * The kernel turns a chunk into 4 registers of int16 code values, register
 * 4c + t holding weights 8c + 2t and 8c + 2t + 1 of every row (its two
 * int16 halves), with one vpermw each: vpermw reads the low 5 bits of each
 * index word, the table holds the 16 codes twice (bit 4 does not matter),
 * so the chunk itself indexes register 4c (the low nibbles of B0 and B2 in
 * the two words of each lane), and the chunk shifted right by 4, 8 and 12
 * (16-bit shifts) registers 4c + 1, 4c + 2 and 4c + 3: 7 operations for 4
 * registers, once per call's activation rows. vpdpwssd with the matching
 * pair of int16 activations as a {1to16} memory operand then adds each
 * row's 2 products into its lane: 16 registers cover one a16 block.
 *
 * Exactness: |code| <= 2^14 and |qa| <= 8191, so 16 products fit an int32
 * lane (2^14 * 8191 * 16 < 2^31) and 32 might not: each a16 block's sum goes
 * as two int32 partial sums of 8 registers, each converted to f32, added,
 * then FMA'd with absmax * da into the row's accumulator; times 2^-14 at the
 * end. The same operations in the same order for every activation row, so
 * a row's output does not depend on its batch.
 */
#include "kernels/avx512_q4x.h"

#include "kernels/code4.h"
#include "quant/blocks.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

#define CODE4_COL    576
#define CODE4_QUANTS 512
/* Bytes ahead of the column being read that the group is prefetched (as the
 * 32-weight layouts of avx512_q32.c). */
#define PREFETCH 8192
/* Columns per block: a block of the group (8 columns, 4.5 KB) comes from
 * memory once and is run against every activation row of the call, 8 at a
 * time, from L1 (as in avx512_q32.c). */
#define BLOCK_COLS 8

typedef int32_t i32_any __attribute__((may_alias, aligned(1)));

static size_t group_bytes_code4(int64_t cols) { return (size_t)(cols / 64) * CODE4_COL; }

static void pack_code4(const void *src, size_t row_bytes, int64_t cols, void *dst) {
    memset(dst, 0, group_bytes_code4(cols));
    for (int r = 0; r < 16; r++) {
        const bc__block_nf4 *x = (const bc__block_nf4 *)((const char *)src + (size_t)r * row_bytes);
        for (int64_t b = 0; b < cols / 64; b++) {
            uint8_t q[64], *col = (uint8_t *)dst + (size_t)b * CODE4_COL;
            for (int p = 0; p < 32; p++) { /* the block's slot order (blocks.h) undone */
                q[bc__nf4_slot(p)] = x[b].qs[p] & 0xF;
                q[32 + bc__nf4_slot(p)] = x[b].qs[p] >> 4;
            }
            memcpy(col + CODE4_QUANTS + 4 * r, &x[b].d, sizeof x[b].d);
            for (int c = 0; c < 8; c++) {
                uint8_t *o = col + 64 * c + 4 * r;
                const uint8_t *w = q + 8 * c;
                o[0] = (uint8_t)(w[0] | w[2] << 4);
                o[2] = (uint8_t)(w[1] | w[3] << 4);
                o[1] = (uint8_t)(w[4] | w[6] << 4);
                o[3] = (uint8_t)(w[5] | w[7] << 4);
            }
        }
    }
}

/* acc + the int16 pair products of w's lanes with the 2 int16 at p in every
 * lane: vpdpwssd with its {1to16} memory operand (GCC 12 does not fold the
 * broadcast; see dpbusd_bcast in avx512_q32.c). */
INLINE_AVX512 __m512i dpwssd_bcast(__m512i acc, __m512i w, const void *p) {
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const i32_any *)p));
    return acc;
}

/* Columns [b0, b1) of the group against na (1..8) activation rows; the
 * accumulators start from zero (first) or from out and go back to out. */
INLINE_AVX512 void cols_(const int16_t *code, int64_t b0, int64_t b1, const uint8_t *g, const void *a, size_t as,
                         const int na, float *out, bool first, bool prefetch) {
    /* the 16 codes twice: vpermw ignores bit 4 of the index this way */
    const __m256i t16 = _mm256_loadu_si256((const __m256i *)code);
    const __m512i tab = _mm512_inserti64x4(_mm512_castsi256_si512(t16), t16, 1);
    __m512 acc[8];
    for (int k = 0; k < na; k++) acc[k] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(out + 16 * k);
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *col = g + (size_t)b * CODE4_COL;
        if (prefetch) /* may pass the group's end: prefetches never fault */
            for (int off = 0; off < CODE4_COL; off += 64)
                _mm_prefetch((const char *)(col + PREFETCH + off), _MM_HINT_T0);
        const __m512 dw = _mm512_load_ps((const float *)(col + CODE4_QUANTS));
        for (int h = 0; h < 2; h++) { /* one a16 block: weights 32h .. 32h+31 */
            __m512i w[16];
            for (int c = 0; c < 4; c++) {
                const __m512i x = _mm512_load_si512((const void *)(col + 64 * (4 * h + c)));
                w[4 * c] = _mm512_permutexvar_epi16(x, tab);
                w[4 * c + 1] = _mm512_permutexvar_epi16(_mm512_srli_epi16(x, 4), tab);
                w[4 * c + 2] = _mm512_permutexvar_epi16(_mm512_srli_epi16(x, 8), tab);
                w[4 * c + 3] = _mm512_permutexvar_epi16(_mm512_srli_epi16(x, 12), tab);
            }
            for (int k = 0; k < na; k++) {
                const bc__block_a16 *y = (const bc__block_a16 *)((const char *)a + (size_t)k * as) + 2 * b + h;
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
                for (int i = 0; i < 8; i++) {
                    s0 = dpwssd_bcast(s0, w[i], y->qs + 2 * i);
                    s1 = dpwssd_bcast(s1, w[8 + i], y->qs + 16 + 2 * i);
                }
                const __m512 v = _mm512_add_ps(_mm512_cvtepi32_ps(s0), _mm512_cvtepi32_ps(s1));
                acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(y->d)), v, acc[k]);
            }
        }
    }
    for (int k = 0; k < na; k++) _mm512_storeu_ps(out + 16 * k, acc[k]);
}

INLINE_AVX512 void kernel_(const int16_t *code, int64_t cols, const void *group, const void *a, size_t as, int na,
                           float *out) {
    const int64_t nb = cols / 64;
    for (int64_t b0 = 0; b0 < nb; b0 += BLOCK_COLS) {
        const int64_t b1 = b0 + BLOCK_COLS < nb ? b0 + BLOCK_COLS : nb;
        for (int k0 = 0; k0 < na; k0 += 8) {
            const void *ak = (const char *)a + (size_t)k0 * as;
            float *ok = out + 16 * k0;
            const bool first = b0 == 0, pf = k0 == 0;
            switch (na - k0 < 8 ? na - k0 : 8) {
            case 1: cols_(code, b0, b1, group, ak, as, 1, ok, first, pf); break;
            case 2: cols_(code, b0, b1, group, ak, as, 2, ok, first, pf); break;
            case 3: cols_(code, b0, b1, group, ak, as, 3, ok, first, pf); break;
            case 4: cols_(code, b0, b1, group, ak, as, 4, ok, first, pf); break;
            case 5: cols_(code, b0, b1, group, ak, as, 5, ok, first, pf); break;
            case 6: cols_(code, b0, b1, group, ak, as, 6, ok, first, pf); break;
            case 7: cols_(code, b0, b1, group, ak, as, 7, ok, first, pf); break;
            default: cols_(code, b0, b1, group, ak, as, 8, ok, first, pf); break;
            }
        }
    }
    for (int i = 0; i < 16 * na; i++) out[i] *= 0x1p-14f;
}

static ATTR_AVX512 void kernel_nf4(int64_t cols, const void *g, const void *a, size_t as, int na, float *out) {
    kernel_(bc__nf4_i16, cols, g, a, as, na, out);
}
static ATTR_AVX512 void kernel_fp4(int64_t cols, const void *g, const void *a, size_t as, int na, float *out) {
    kernel_(bc__fp4_i16, cols, g, a, as, na, out);
}

const bc__pack_layout bc__layout_nf4_avx512 = {
    BC__ISA_AVX512, 16, BC__PACK_MAX_NA, group_bytes_code4, pack_code4, kernel_nf4,
};
const bc__pack_layout bc__layout_fp4_avx512 = {
    BC__ISA_AVX512, 16, BC__PACK_MAX_NA, group_bytes_code4, pack_code4, kernel_fp4,
};

#endif

/*
 * avx2_q32.c - repacked layouts and AVX2 kernels of the 32-weight block
 * formats (see kernels.h, "Repacked weights", for the idea; quants.h for the
 * block formats).
 *
 * A group is 8 consecutive weight rows. Its block columns (32 weights of each
 * of the 8 rows) are stored in runs of 4, each run a whole number of 64-byte
 * lines so that every 32-byte load is aligned to it:
 *
 *   run j (block columns 4j .. 4j+3; the last run may hold fewer):
 *     quants   for each column of the run, Q bytes in chunks of 32; byte
 *              4r + i of chunk c holds 4 bits (q4) or 8 bits (q8) of weight
 *              i of the 4-weight slice c of row r (slices below)
 *     scales   64 bytes: for column t of the run, 8 f16 at 16t (row r at r)
 *
 *   q4_0   Q = 128, 4 chunks: qs[4c + i] of row r as stored; its low nibble
 *          is weight 4c + i, its high nibble weight 16 + 4c + i
 *
 * The kernel: per block column the 4 chunks unpack into 8 registers
 * (weights 4c..4c+3 and 16+4c..16+4c+3 of all 8 rows, a row per 32-bit
 * lane); each activation row broadcasts its matching 4 bytes and vpmaddubsw
 * gives each row's 4 products as two int16 sums. Eight such results add in
 * int16 without overflow (16 products of |q| <= 15 and |qa| <= 127: at most
 * 30480), one vpmaddwd makes them int32, the zero point comes off as
 * zp * sum(qa), and one conversion and one FMA with the 8 rows' dw times da
 * finish the column: the sums are exact integers until that conversion.
 */
#include "kernels.h"

#include "quants_blocks.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#define T_AVX2      "avx2,fma,f16c"
#define ATTR_AVX2   __attribute__((target(T_AVX2)))
#define INLINE_AVX2 static inline __attribute__((always_inline, target(T_AVX2)))

/* Block columns per run, and the scale bytes closing a run. */
#define RUN        4
#define RUN_SCALES 64

/* Bytes ahead of the column being read that the quants are prefetched: at
 * n = 1 the group streams from memory. */
#define PREFETCH 2048

static size_t group_bytes(size_t quant_bytes, int64_t cols) {
    size_t nb = (size_t)(cols / 32), runs = (nb + RUN - 1) / RUN;
    return runs * RUN_SCALES + nb * 8 * quant_bytes;
}

/* Byte offset of block column b's quants and scales in a group. */
static inline size_t col_quants(size_t quant_bytes, int64_t b) {
    return (size_t)(b / RUN) * (RUN * 8 * quant_bytes + RUN_SCALES) + (size_t)(b % RUN) * 8 * quant_bytes;
}
static inline size_t run_scales(size_t quant_bytes, int64_t b, int64_t nb) {
    int64_t run = b / RUN, in_run = nb - run * RUN < RUN ? nb - run * RUN : RUN;
    return (size_t)run * (RUN * 8 * quant_bytes + RUN_SCALES) + (size_t)in_run * 8 * quant_bytes;
}

/* ------------------------------------------------------------------------ */
/* q4_0                                                                     */
/* ------------------------------------------------------------------------ */

#define Q4_0_QUANT_BYTES 16

static size_t group_bytes_q4_0(int64_t cols) { return group_bytes(Q4_0_QUANT_BYTES, cols); }

static void pack_q4_0(const void *src, size_t row_bytes, int64_t cols, void *dst) {
    const int64_t nb = cols / 32;
    memset(dst, 0, group_bytes_q4_0(cols));
    for (int r = 0; r < 8; r++) {
        const bc__block_q4_0 *x = (const bc__block_q4_0 *)((const char *)src + (size_t)r * row_bytes);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *q = (uint8_t *)dst + col_quants(Q4_0_QUANT_BYTES, b);
            for (int c = 0; c < 4; c++) memcpy(q + 32 * c + 4 * r, x[b].qs + 4 * c, 4);
            uint8_t *s = (uint8_t *)dst + run_scales(Q4_0_QUANT_BYTES, b, nb) + 16 * (size_t)(b % RUN);
            memcpy(s + 2 * r, &x[b].d, 2);
        }
    }
}

/* The 4 activation bytes at p in every 32-bit lane. */
INLINE_AVX2 __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* sum over the 8 registers w[j] (weights 4j'.. of every row, in the order
 * of the activation bytes at qa + off[j]) of the products with the
 * activation row: int16 pairs, added as a tree. */
INLINE_AVX2 __m256i dot8_i16(const __m256i *w, const int8_t *qa) {
    const __m256i p0 = _mm256_maddubs_epi16(w[0], bcast4(qa + 0));
    const __m256i p1 = _mm256_maddubs_epi16(w[1], bcast4(qa + 4));
    const __m256i p2 = _mm256_maddubs_epi16(w[2], bcast4(qa + 8));
    const __m256i p3 = _mm256_maddubs_epi16(w[3], bcast4(qa + 12));
    const __m256i p4 = _mm256_maddubs_epi16(w[4], bcast4(qa + 16));
    const __m256i p5 = _mm256_maddubs_epi16(w[5], bcast4(qa + 20));
    const __m256i p6 = _mm256_maddubs_epi16(w[6], bcast4(qa + 24));
    const __m256i p7 = _mm256_maddubs_epi16(w[7], bcast4(qa + 28));
    return _mm256_add_epi16(_mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3)),
                            _mm256_add_epi16(_mm256_add_epi16(p4, p5), _mm256_add_epi16(p6, p7)));
}

INLINE_AVX2 void kernel_q4_0_(int64_t cols, const void *group, const void *a, size_t as, const int na, float *out) {
    const int64_t nb = cols / 32;
    const uint8_t *g = group;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[BC__MAX_NA];
    for (int k = 0; k < na; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q = g + col_quants(Q4_0_QUANT_BYTES, b);
        _mm_prefetch((const char *)(q + PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(q + PREFETCH + 64), _MM_HINT_T0);
        __m256i w[8];
        for (int c = 0; c < 4; c++) {
            const __m256i raw = _mm256_load_si256((const __m256i *)(q + 32 * c));
            w[c] = _mm256_and_si256(raw, m4);
            w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        }
        const uint16_t *sc = (const uint16_t *)(g + run_scales(Q4_0_QUANT_BYTES, b, nb)) + 8 * (b % RUN);
        const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)sc));
        for (int k = 0; k < na; k++) {
            const bc__block_a8 *y = (const bc__block_a8 *)((const char *)a + (size_t)k * as) + b;
            __m256i s = _mm256_madd_epi16(dot8_i16(w, y->qs), ones);
            s = _mm256_sub_epi32(s, _mm256_set1_epi32(8 * y->sum));
            acc[k] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(y->d)), _mm256_cvtepi32_ps(s), acc[k]);
        }
    }
    for (int k = 0; k < na; k++) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

/* One kernel per na = 1..4, so that the accumulators live in registers. */
#define WRAP_NA(name, body)                                                                                            \
    static ATTR_AVX2 void name(int64_t cols, const void *group, const void *a, size_t as, int na, float *out) {        \
        switch (na) {                                                                                                  \
        case 1: body(cols, group, a, as, 1, out); break;                                                               \
        case 2: body(cols, group, a, as, 2, out); break;                                                               \
        case 3: body(cols, group, a, as, 3, out); break;                                                               \
        default: body(cols, group, a, as, 4, out); break;                                                              \
        }                                                                                                              \
    }
WRAP_NA(kernel_q4_0, kernel_q4_0_)

const bc__pack_layout bc__layout_q4_0_avx2 = {BC__ISA_AVX2, 8, group_bytes_q4_0, pack_q4_0, kernel_q4_0};

#endif

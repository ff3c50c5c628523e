/*
 * avx512_q32.c - repacked layouts and AVX-512 VNNI kernels of the 32-weight
 * block formats q4_0, q4_1, q5_0, q5_1, q8_0 and q4_gptq: groups of 16
 * rows, a row per 32-bit lane of a zmm register (kernel_types.h, "Repacked
 * weights", for the idea; quant/blocks.h for the block formats).
 *
 * A group's block columns (32 weights of each of the 16 rows) are stored in
 * runs of 2, the quants of both columns followed by their tables, so that
 * one stream carries everything and every load is 64-aligned:
 *
 *   run j (block columns 2j, 2j+1; the last run may hold one):
 *     quants   for each column of the run, C bytes in chunks of 64: byte
 *              4r + i of a chunk belongs to row r (a row per 32-bit lane)
 *     scales   64 bytes: for column t of the run, the 16 rows' d as f16 at 32t
 *     mins     q4_1, q5_1 only: 64 more bytes, the 16 rows' m at 32t
 *     zeros    q4_gptq only: 64 more bytes, the 16 rows' zero points z as
 *              bytes at 16t
 *
 * Register j of a column (j = 0..7) holds weights 4j .. 4j+3 of every row,
 * weight 4j + i in byte i of the row's lane, unsigned (vpdpbusd's unsigned
 * operand); the chunks store them as
 *
 *   q4_0, q4_1, q4_gptq
 *               C = 256: chunk c (0..3) byte 4r + i is qs[4c + i] of row r
 *               as stored: its low nibble is weight 4c + i (register c), its
 *               high nibble weight 16 + 4c + i (register c + 4)
 *   q5_0, q5_1  C = 320: chunk c (0..3) byte 4r + i holds weight 4c + i
 *               whole in bits 0-4 and bits 0-2 of weight 16 + 4c + i in
 *               bits 5-7; chunk 4 byte 4r + i holds bits 3-4 of weight
 *               16 + 4c + i in its bits 2c, 2c+1 (the AVX2 layout's scheme,
 *               avx2_q32.c)
 *   q8_0        C = 512: chunk j byte 4r + i is weight 4j + i of row r plus
 *               128 (unsigned)
 *
 * The kernel, per block column: the chunks unpack into 8 registers once for
 * all the call's activation rows (up to 8); per activation row, vpdpbusd
 * with the row's activation bytes 4j .. 4j+3 broadcast from memory (the
 * embedded {1to16} form: a load, not a shuffle) adds each weight row's 4
 * products into its lane, 8 of them making the 16 block dots in int32. The
 * zero point (q4_0: 8, q5_0: 16, q8_0: the bias 128, q4_gptq: each row's z)
 * comes off as zp * sum(qa), exactly, in int32; one conversion to f32
 * follows, the row's d times it (plus for q4_1 / q5_1 its m times sum(qa)),
 * times the activation's d, added into one f32 accumulator per activation
 * row in column order: the same operations in the same order whatever the
 * number of rows in the call, so a row's output does not depend on its batch.
 * q4_gptq reads a16d activations (13 bits as two bytes, qa = 128 hi + lo):
 * two vpdpbusd passes, the hi one shifted by 7.
 */
#include "kernels/avx512_q32.h"

#include "quant/blocks.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

/* Block columns per run, and the bytes of one table closing a run: 2
 * columns of 16 f16 scales (or mins, or byte zero points with room to spare). */
#define RUN   2
#define TABLE 64

/* Bytes ahead of the column being read that the group is prefetched: at
 * n = 1 it streams from memory (the q4_0 kernel read 19 GB/s with the
 * hardware prefetcher alone, 25-28 with 8 KB ahead; bench_matmul, 65536 x
 * 1536, one thread). */
#define PREFETCH 8192

/* An int32 at any address, of any type. */
typedef int32_t i32_any __attribute__((may_alias, aligned(1)));

/* acc + the dot products of w's bytes with the 4 bytes at p in every lane:
 * vpdpbusd with its {1to16} memory operand. GCC 12 does not fold a
 * broadcast into it (it loads with vpbroadcastd first, one more uop per
 * product): the folded form ran 1.5x the products per second here (one Zen 5
 * core, data in L1). */
INLINE_AVX512 __m512i dpbusd_bcast(__m512i acc, __m512i w, const void *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const i32_any *)p));
    return acc;
}

/* ------------------------------------------------------------------------ */
/* Layout                                                                   */
/* ------------------------------------------------------------------------ */

static inline bool has_min(bc_dtype t) { return t == BC_DTYPE_Q4_1 || t == BC_DTYPE_Q5_1; }
static inline bool has_zero(bc_dtype t) { return t == BC_DTYPE_Q4_GPTQ; }
static inline bool is_q5(bc_dtype t) { return t == BC_DTYPE_Q5_0 || t == BC_DTYPE_Q5_1; }

/* Quant bytes of one block column (16 rows). */
static inline size_t col_bytes(bc_dtype t) { return t == BC_DTYPE_Q8_0 ? 512 : is_q5(t) ? 320 : 256; }

/* Bytes of the tables closing a run. */
static inline size_t run_tables(bc_dtype t) { return TABLE * (has_min(t) ? 2 : has_zero(t) ? 2 : 1); }

static inline size_t run_bytes(bc_dtype t) { return RUN * col_bytes(t) + run_tables(t); }

static size_t group_bytes_of(bc_dtype t, int64_t cols) {
    const size_t nb = (size_t)(cols / 32);
    return nb / RUN * run_bytes(t) + (nb % RUN) * (col_bytes(t) + run_tables(t));
}

/* The 32 weights of block b of a row-major row as integers (q4/q5 0..31,
 * q8_0 signed), its d and (q4_1, q5_1) m as f16 bits, or (q4_gptq) its zero
 * point in *m. */
static void block_values(bc_dtype t, const void *row, int64_t b, int q[32], uint16_t *d, uint16_t *m) {
    const uint8_t *qs, *qhp = NULL;
    *m = 0;
    switch (t) {
    case BC_DTYPE_Q8_0: {
        const bc__block_q8_0 *x = (const bc__block_q8_0 *)row + b;
        *d = x->d;
        for (int j = 0; j < 32; j++) q[j] = x->qs[j];
        return;
    }
    case BC_DTYPE_Q4_0: {
        const bc__block_q4_0 *x = (const bc__block_q4_0 *)row + b;
        *d = x->d;
        qs = x->qs;
        break;
    }
    case BC_DTYPE_Q4_1: {
        const bc__block_q4_1 *x = (const bc__block_q4_1 *)row + b;
        *d = x->d;
        *m = x->m;
        qs = x->qs;
        break;
    }
    case BC_DTYPE_Q4_GPTQ: {
        const bc__block_q4_gptq *x = (const bc__block_q4_gptq *)row + b;
        *d = x->d;
        *m = x->z;
        qs = x->qs;
        break;
    }
    case BC_DTYPE_Q5_0: {
        const bc__block_q5_0 *x = (const bc__block_q5_0 *)row + b;
        *d = x->d;
        qs = x->qs;
        qhp = x->qh;
        break;
    }
    default: {
        const bc__block_q5_1 *x = (const bc__block_q5_1 *)row + b;
        *d = x->d;
        *m = x->m;
        qs = x->qs;
        qhp = x->qh;
        break;
    }
    }
    uint32_t qh = 0;
    if (qhp != NULL) memcpy(&qh, qhp, sizeof qh);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}

static void pack_group(bc_dtype t, const void *src, size_t row_bytes, int64_t cols, void *dst) {
    const int64_t nb = cols / 32;
    const size_t cb = col_bytes(t);
    memset(dst, 0, group_bytes_of(t, cols));
    for (int r = 0; r < 16; r++) {
        const char *row = (const char *)src + (size_t)r * row_bytes;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t in_run = nb - b / RUN * RUN < RUN ? nb - b / RUN * RUN : RUN;
            uint8_t *run = (uint8_t *)dst + (size_t)(b / RUN) * run_bytes(t);
            uint8_t *o = run + (size_t)(b % RUN) * cb + 4 * (size_t)r;
            uint8_t *tables = run + (size_t)in_run * cb;
            int q[32];
            uint16_t d, m;
            block_values(t, row, b, q, &d, &m);
            memcpy(tables + 32 * (size_t)(b % RUN) + 2 * (size_t)r, &d, sizeof d);
            if (has_min(t)) memcpy(tables + TABLE + 32 * (size_t)(b % RUN) + 2 * (size_t)r, &m, sizeof m);
            if (has_zero(t)) tables[TABLE + 16 * (size_t)(b % RUN) + (size_t)r] = (uint8_t)m;
            for (int i = 0; i < 4; i++)
                for (int c = 0; c < 4; c++) {
                    const int lo = q[4 * c + i], hi = q[16 + 4 * c + i];
                    if (t == BC_DTYPE_Q8_0) {
                        o[64 * c + i] = (uint8_t)(lo + 128);
                        o[64 * (c + 4) + i] = (uint8_t)(hi + 128);
                    } else if (is_q5(t)) {
                        o[64 * c + i] = (uint8_t)(lo | (hi & 7) << 5);
                        o[256 + i] |= (uint8_t)((hi >> 3) << (2 * c));
                    } else {
                        o[64 * c + i] = (uint8_t)(lo | hi << 4);
                    }
                }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Kernel                                                                   */
/* ------------------------------------------------------------------------ */

/* Registers w[0..7] of the block column at q (layout above). */
INLINE_AVX512 void unpack_column(const bc_dtype t, const uint8_t *q, __m512i *w) {
    if (t == BC_DTYPE_Q8_0) {
        for (int j = 0; j < 8; j++) w[j] = _mm512_load_si512((const void *)(q + 64 * j));
    } else if (is_q5(t)) {
        const __m512i m5 = _mm512_set1_epi8(0x1F), m3 = _mm512_set1_epi8(0x07), mh = _mm512_set1_epi8(0x18);
        const __m512i hb = _mm512_load_si512((const void *)(q + 256));
        /* bits 2c, 2c+1 of each byte of hb moved to bits 3-4 (16-bit shifts:
         * what crosses from the neighbouring byte is masked off) */
        const __m512i h[4] = {_mm512_slli_epi16(hb, 3), _mm512_slli_epi16(hb, 1), _mm512_srli_epi16(hb, 1),
                              _mm512_srli_epi16(hb, 3)};
        for (int c = 0; c < 4; c++) {
            const __m512i raw = _mm512_load_si512((const void *)(q + 64 * c));
            w[c] = _mm512_and_si512(raw, m5);
            /* (raw >> 5) & 7 | h & 0x18, one ternary-logic op for the OR of the masked parts */
            w[c + 4] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(raw, 5), m3), h[c], mh, 0xF8);
        }
    } else {
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        for (int c = 0; c < 4; c++) {
            const __m512i raw = _mm512_load_si512((const void *)(q + 64 * c));
            w[c] = _mm512_and_si512(raw, m4);
            w[c + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
        }
    }
}

/* Each row lane's dot of the unpacked column w with the 32 bytes qa (the
 * activation's 4-byte groups as embedded broadcasts), in int32. */
INLINE_AVX512 __m512i dot_column(const __m512i *w, const int8_t *qa) {
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
    for (int j = 0; j < 8; j += 2) {
        s0 = dpbusd_bcast(s0, w[j], qa + 4 * j);
        s1 = dpbusd_bcast(s1, w[j + 1], qa + 4 * j + 4);
    }
    return _mm512_add_epi32(s0, s1);
}

/* Block column b (quants at q, its tables at tab, t the column's place in
 * its run) against na activation rows, into acc[k] (a row per lane). */
INLINE_AVX512 void column(const bc_dtype t, const uint8_t *q, const uint8_t *tab, int ti, int64_t b, const void *a,
                          size_t as, const int na, __m512 *acc) {
    __m512i w[8];
    unpack_column(t, q, w);
    const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(tab + 32 * ti)));
    __m512 mw = _mm512_setzero_ps();
    if (has_min(t)) mw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(tab + TABLE + 32 * ti)));
    __m512i zv = _mm512_setzero_si512();
    if (has_zero(t)) zv = _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(tab + TABLE + 16 * ti)));
    /* log2 of the zero point subtracted in integers (none for q4_1 / q5_1) */
    const int zshift = t == BC_DTYPE_Q4_0 ? 3 : t == BC_DTYPE_Q5_0 ? 4 : t == BC_DTYPE_Q8_0 ? 7 : 0;
    for (int k = 0; k < na; k++) {
        __m512i s, sum;
        float da;
        if (has_zero(t)) {
            const bc__block_a16d *y = (const bc__block_a16d *)((const char *)a + (size_t)k * as) + b;
            s = _mm512_add_epi32(dot_column(w, y->lo), _mm512_slli_epi32(dot_column(w, y->hi), 7));
            sum = _mm512_set1_epi32(y->sum);
            s = _mm512_sub_epi32(s, _mm512_mullo_epi32(zv, sum));
            da = y->d;
        } else {
            const bc__block_a8 *y = (const bc__block_a8 *)((const char *)a + (size_t)k * as) + b;
            s = dot_column(w, y->qs);
            sum = _mm512_set1_epi32(y->sum);
            if (zshift) s = _mm512_sub_epi32(s, _mm512_slli_epi32(sum, (unsigned)zshift));
            da = y->d;
        }
        __m512 v = _mm512_mul_ps(dw, _mm512_cvtepi32_ps(s));
        if (has_min(t)) v = _mm512_fmadd_ps(mw, _mm512_cvtepi32_ps(sum), v);
        acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(da), v, acc[k]);
    }
}

/* Runs per column block: a block of the group (16 block columns, 4.5 KB of
 * q4_0, 8.5 KB of q8_0) comes from memory once and is run against every
 * activation row of the call, 8 at a time, from L1; the activations of
 * those columns (1.25 KB per 8 rows) stay there too. Without the blocks, a
 * batch of 16 read each group twice, the second time from L2 at best:
 * decode steps of 16 sequences on the 1.29 B shapes ran 1.3x slower. */
#define BLOCK_RUNS 8

/* Runs [r0, r1) of the group at g (nb block columns) against na (1..8)
 * activation rows; the accumulators start from zero (first) or from out
 * and go back to out. The first pass over a block prefetches ahead; the
 * others find it in L1. */
INLINE_AVX512 void runs_(const bc_dtype t, int64_t nb, const uint8_t *g, int64_t r0, int64_t r1, const void *a,
                         size_t as, const int na, float *out, bool first, bool prefetch) {
    const size_t cb = col_bytes(t), step = run_bytes(t) / RUN;
    __m512 acc[8];
    for (int k = 0; k < na; k++) acc[k] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(out + 16 * k);
    const uint8_t *run = g + (size_t)r0 * run_bytes(t);
    for (int64_t r = r0; r < r1; r++, run += run_bytes(t)) {
        const int64_t b0 = r * RUN;
        const int in_run = nb - b0 < RUN ? (int)(nb - b0) : RUN;
        const uint8_t *tab = run + (size_t)in_run * cb;
        for (int i = 0; i < in_run; i++) {
            /* A run's share per column, so the prefetches cover the tables
             * too; they may pass the group's end: prefetches never fault. */
            if (prefetch)
                for (size_t off = 0; off < step; off += 64)
                    _mm_prefetch((const char *)(run + PREFETCH + (size_t)i * step + off), _MM_HINT_T0);
            column(t, run + (size_t)i * cb, tab, i, b0 + i, a, as, na, acc);
        }
    }
    for (int k = 0; k < na; k++) _mm512_storeu_ps(out + 16 * k, acc[k]);
}

/* The group against na (1..BC__PACK_MAX_NA) activation rows: column block
 * by column block, 8 rows at a time. Each output adds its column products
 * in column order whatever na is: its bits do not depend on the batch. */
INLINE_AVX512 void kernel_(const bc_dtype t, int64_t cols, const void *group, const void *a, size_t as, int na,
                           float *out) {
    const int64_t nb = cols / 32, n_runs = (nb + RUN - 1) / RUN;
    for (int64_t r0 = 0; r0 < n_runs; r0 += BLOCK_RUNS) {
        const int64_t r1 = r0 + BLOCK_RUNS < n_runs ? r0 + BLOCK_RUNS : n_runs;
        for (int k0 = 0; k0 < na; k0 += 8) {
            const void *ak = (const char *)a + (size_t)k0 * as;
            float *ok = out + 16 * k0;
            const bool first = r0 == 0, pf = k0 == 0;
            switch (na - k0 < 8 ? na - k0 : 8) {
            case 1: runs_(t, nb, group, r0, r1, ak, as, 1, ok, first, pf); break;
            case 2: runs_(t, nb, group, r0, r1, ak, as, 2, ok, first, pf); break;
            case 3: runs_(t, nb, group, r0, r1, ak, as, 3, ok, first, pf); break;
            case 4: runs_(t, nb, group, r0, r1, ak, as, 4, ok, first, pf); break;
            case 5: runs_(t, nb, group, r0, r1, ak, as, 5, ok, first, pf); break;
            case 6: runs_(t, nb, group, r0, r1, ak, as, 6, ok, first, pf); break;
            case 7: runs_(t, nb, group, r0, r1, ak, as, 7, ok, first, pf); break;
            default: runs_(t, nb, group, r0, r1, ak, as, 8, ok, first, pf); break;
            }
        }
    }
}

#define KERNEL(name, T)                                                                                                \
    static ATTR_AVX512 void name(int64_t cols, const void *g, const void *a, size_t as, int na, float *out) {          \
        kernel_(T, cols, g, a, as, na, out);                                                                           \
    }

#define LAYOUT(sfx, T)                                                                                                 \
    static size_t group_bytes_##sfx(int64_t cols) { return group_bytes_of(T, cols); }                                  \
    static void pack_##sfx(const void *src, size_t row_bytes, int64_t cols, void *dst) {                               \
        pack_group(T, src, row_bytes, cols, dst);                                                                      \
    }                                                                                                                  \
    KERNEL(kernel_##sfx, T)                                                                                            \
    const bc__pack_layout bc__layout_##sfx##_avx512 = {BC__ISA_AVX512,    16,         BC__PACK_MAX_NA,                 \
                                                       group_bytes_##sfx, pack_##sfx, kernel_##sfx};

LAYOUT(q4_0, BC_DTYPE_Q4_0)
LAYOUT(q4_1, BC_DTYPE_Q4_1)
LAYOUT(q5_0, BC_DTYPE_Q5_0)
LAYOUT(q5_1, BC_DTYPE_Q5_1)
LAYOUT(q8_0, BC_DTYPE_Q8_0)
LAYOUT(q4_gptq, BC_DTYPE_Q4_GPTQ)

#endif

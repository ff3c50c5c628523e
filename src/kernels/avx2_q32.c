/*
 * avx2_q32.c - repacked layouts and AVX2 kernels of the 32-weight block
 * formats q4_0, q4_1, q5_0, q5_1, q8_0 and q4_gptq (see kernel_types.h, "Repacked weights",
 * for the idea; quants_blocks.h for the block formats).
 *
 * A group is 8 consecutive weight rows. Its block columns (32 weights of each
 * of the 8 rows) are stored in runs of 4, each run of the quants of its
 * columns followed by their scales, so that every 32-byte load is aligned:
 *
 *   run j (block columns 4j .. 4j+3; the last run may hold fewer):
 *     quants   for each column of the run, C bytes in chunks of 32: byte
 *              4r + i of a chunk belongs to row r (a row per 32-bit lane)
 *     scales   64 bytes: for column t of the run, the 8 rows' d as f16 at 16t
 *     mins     q4_1, q5_1 only: 64 more bytes, the 8 rows' m at 16t
 *     zeros    q4_gptq only: 32 more bytes, the 8 rows' zero points z as
 *              bytes at 8t
 *
 * Register j of a column (j = 0..7) holds weights 4j .. 4j+3 of every row,
 * weight 4j + i in byte i of the row's lane; the chunks store them as
 *
 *   q4_0, q4_1, q4_gptq
 *               C = 128: chunk c (0..3) byte 4r + i is qs[4c + i] of row r as
 *               stored: its low nibble is weight 4c + i (register c), its
 *               high nibble weight 16 + 4c + i (register c + 4)
 *   q5_0, q5_1  C = 160: chunk c (0..3) byte 4r + i holds weight 4c + i
 *               whole in bits 0-4 and bits 0-2 of weight 16 + 4c + i in
 *               bits 5-7; chunk 4 byte 4r + i holds bits 3-4 of weight
 *               16 + 4c + i in its bits 2c, 2c+1 for c = 0..3. Register c is
 *               one AND, register c + 4 two shifts, two ANDs and an OR; the
 *               ggml order (fifth bits apart, in weight order) costs a shift,
 *               an AND and an OR more per register.
 *   q8_0        C = 256: chunk j byte 4r + i is weight 4j + i of row r
 *
 * so a group takes what its rows took as blocks (18, 20, 22, 24, 34 bytes a
 * block; q4_gptq 18 + 1, its zero point a byte), but for the unused scale
 * slots of a last run shorter than 4.
 *
 * The kernel, per block column: the chunks unpack into 8 registers, a row
 * per 32-bit lane; each activation row broadcasts its matching 4 bytes and
 * vpmaddubsw gives each row's 4 products as two int16 sums. Those add in
 * int16 while they cannot overflow, then one vpmaddwd makes them int32:
 *   q4    8 results: 16 products of q <= 15 and |qa| <= 127, at most 30480
 *   q5    4 results: 8 products of q <= 31, at most 31496
 *   q8_0  none: vpmaddubsw wants an unsigned operand, so the weights go in as
 *         |q| (at most 128) against sign(q) * qa, and one result of two
 *         products already reaches 2 * 128 * 127 = 32512; every result goes
 *         through vpmaddwd on its own
 * q4_gptq reads a16d activations (13 bits as two bytes, qa = 128 hi + lo):
 * two such passes, lo and hi, the second counted 128 times (16 products of
 * q <= 15 and |hi| <= 64 or lo <= 127 stay within int16 as for a8).
 * The zero point (q4_0: 8, q5_0: 16, q4_gptq: each row's z, a lane each)
 * comes off as zp * sum(qa), exactly, in int32; one conversion to f32 per block column and activation row follows,
 * then dw (8 rows) times it, plus for q4_1/q5_1 the 8 rows' m times sum(qa),
 * FMA'd with da into the row lanes: the sums are exact integers until that
 * conversion, as in the row-major kernels of x86_dot32.h.
 *
 * Measured no faster on Zen 3 (one core, batches of 4): the 8 broadcasts made
 * from two 128-bit loads and vpshufd, and the activation rows looped inside
 * the weight registers (unpacking each register on demand).
 */
#include "kernels/avx2_q32.h"

#include "quant/blocks.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

/* Block columns per run, and the bytes of one scale (or min) table closing a
 * run: 4 columns of 8 f16. */
#define RUN       4
#define RUN_TABLE 64
/* Bytes of the zero point table of a q4_gptq run: 4 columns of 8 bytes. */
#define ZERO_TABLE 32

/* Bytes ahead of the column being read that the group is prefetched: at
 * n = 1 it streams from memory. 2048 measured best (bench_matmul 32768x4096,
 * n = 1, one thread: q4_0 and q5_1 at 20 GB/s, where 4096 and 8192 gave 18.5
 * and no prefetch 12). */
#define PREFETCH 2048

/* ------------------------------------------------------------------------ */
/* Layout                                                                   */
/* ------------------------------------------------------------------------ */

static inline bool has_min(bc_dtype t) { return t == BC_DTYPE_Q4_1 || t == BC_DTYPE_Q5_1; }
static inline bool has_zero(bc_dtype t) { return t == BC_DTYPE_Q4_GPTQ; }
static inline bool is_q4(bc_dtype t) { return t == BC_DTYPE_Q4_0 || t == BC_DTYPE_Q4_1 || t == BC_DTYPE_Q4_GPTQ; }

/* Quant bytes of one block column (8 rows). */
static inline size_t col_bytes(bc_dtype t) {
    return t == BC_DTYPE_Q8_0 ? 256 : t == BC_DTYPE_Q5_0 || t == BC_DTYPE_Q5_1 ? 160 : 128;
}

/* Bytes of the scale (and min or zero point) tables of a run. */
static inline size_t run_tables(bc_dtype t) {
    return has_min(t) ? 2 * RUN_TABLE : has_zero(t) ? RUN_TABLE + ZERO_TABLE : RUN_TABLE;
}

/* Bytes of a full run. */
static inline size_t run_bytes(bc_dtype t) { return RUN * col_bytes(t) + run_tables(t); }

static size_t group_bytes_of(bc_dtype t, int64_t cols) {
    size_t nb = (size_t)(cols / 32), runs = (nb + RUN - 1) / RUN;
    return runs * run_tables(t) + nb * col_bytes(t);
}

/* The 32 weights of block b of a row-major row, as integers (q4/q5: 0..31,
 * q8_0: signed), with its d and (q4_1, q5_1) m as f16 bits, or (q4_gptq)
 * its zero point in *m. */
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
    for (int r = 0; r < 8; r++) {
        const char *row = (const char *)src + (size_t)r * row_bytes;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t in_run = nb - b / RUN * RUN < RUN ? nb - b / RUN * RUN : RUN;
            uint8_t *run = (uint8_t *)dst + (size_t)(b / RUN) * run_bytes(t);
            uint8_t *o = run + (size_t)(b % RUN) * cb + 4 * (size_t)r;
            uint8_t *tables = run + (size_t)in_run * cb + 16 * (size_t)(b % RUN) + 2 * (size_t)r;
            int q[32];
            uint16_t d, m;
            block_values(t, row, b, q, &d, &m);
            memcpy(tables, &d, sizeof d);
            if (has_min(t)) memcpy(tables + RUN_TABLE, &m, sizeof m);
            if (has_zero(t)) run[(size_t)in_run * cb + RUN_TABLE + 8 * (size_t)(b % RUN) + (size_t)r] = (uint8_t)m;
            for (int i = 0; i < 4; i++)
                for (int c = 0; c < 4; c++) {
                    const int lo = q[4 * c + i], hi = q[16 + 4 * c + i];
                    if (t == BC_DTYPE_Q8_0) {
                        o[32 * c + i] = (uint8_t)(int8_t)lo;
                        o[32 * (c + 4) + i] = (uint8_t)(int8_t)hi;
                    } else if (is_q4(t)) {
                        o[32 * c + i] = (uint8_t)(lo | hi << 4);
                    } else {
                        o[32 * c + i] = (uint8_t)(lo | (hi & 7) << 5);
                        o[128 + i] |= (uint8_t)((hi >> 3) << (2 * c));
                    }
                }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Kernel                                                                   */
/* ------------------------------------------------------------------------ */

/* Registers w[0..7] of the block column at q (layout above); for q8_0 the
 * magnitudes |q|, the signed weights staying in the chunks. */
INLINE_AVX2 void unpack_column(const bc_dtype t, const uint8_t *q, __m256i *w) {
    if (t == BC_DTYPE_Q8_0) {
        for (int j = 0; j < 8; j++) w[j] = _mm256_abs_epi8(_mm256_load_si256((const __m256i *)(q + 32 * j)));
    } else if (is_q4(t)) {
        const __m256i m4 = _mm256_set1_epi8(0x0F);
        for (int c = 0; c < 4; c++) {
            const __m256i raw = _mm256_load_si256((const __m256i *)(q + 32 * c));
            w[c] = _mm256_and_si256(raw, m4);
            w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        }
    } else {
        const __m256i m5 = _mm256_set1_epi8(0x1F), m3 = _mm256_set1_epi8(0x07), mh = _mm256_set1_epi8(0x18);
        const __m256i hb = _mm256_load_si256((const __m256i *)(q + 128));
        /* bits 2c, 2c+1 of each byte of hb moved to bits 3-4 (16-bit shifts:
         * what crosses from the neighbouring byte is masked off) */
        const __m256i h[4] = {_mm256_slli_epi16(hb, 3), _mm256_slli_epi16(hb, 1), _mm256_srli_epi16(hb, 1),
                              _mm256_srli_epi16(hb, 3)};
        for (int c = 0; c < 4; c++) {
            const __m256i raw = _mm256_load_si256((const __m256i *)(q + 32 * c));
            w[c] = _mm256_and_si256(raw, m5);
            w[c + 4] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 5), m3), _mm256_and_si256(h[c], mh));
        }
    }
}

/* Each row lane's dot of the block column (w, unpacked from q) with the 32
 * activation bytes qa, in int32, before the zero point. */
INLINE_AVX2 __m256i dot_column(const bc_dtype t, const __m256i *w, const uint8_t *q, const int8_t *qa) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i p[8];
    for (int j = 0; j < 8; j++) {
        __m256i x = bcast4(qa + 4 * j);
        if (t == BC_DTYPE_Q8_0) x = _mm256_sign_epi8(x, _mm256_load_si256((const __m256i *)(q + 32 * j)));
        p[j] = _mm256_maddubs_epi16(w[j], x);
    }
    if (t == BC_DTYPE_Q8_0) {
        for (int j = 0; j < 8; j++) p[j] = _mm256_madd_epi16(p[j], ones);
        return _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3])),
                                _mm256_add_epi32(_mm256_add_epi32(p[4], p[5]), _mm256_add_epi32(p[6], p[7])));
    }
    const __m256i s0 = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
    const __m256i s1 = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
    if (is_q4(t)) return _mm256_madd_epi16(_mm256_add_epi16(s0, s1), ones);
    return _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones));
}

/* Block column b (quants at q, its scales at sc and for q4_1/q5_1 mins at
 * sc + RUN_TABLE; q4_gptq zero points at zs) against na activation rows,
 * into acc[k] (a row per lane). */
INLINE_AVX2 void column(const bc_dtype t, const uint8_t *q, const uint8_t *sc, const uint8_t *zs, int64_t b,
                        const void *a, size_t as, const int na, __m256 *acc) {
    __m256i w[8];
    unpack_column(t, q, w);
    const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)sc));
    __m256 mw = _mm256_setzero_ps();
    if (has_min(t)) mw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(sc + RUN_TABLE)));
    const int zp = t == BC_DTYPE_Q4_0 ? 8 : t == BC_DTYPE_Q5_0 ? 16 : 0;
    __m256i zv = _mm256_setzero_si256();
    if (has_zero(t)) zv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)zs));
    for (int k = 0; k < na; k++) {
        __m256i s, sum;
        float da;
        if (has_zero(t)) {
            /* q4_gptq: 13-bit activations as two bytes, qa = 128 hi + lo. */
            const bc__block_a16d *y = (const bc__block_a16d *)((const char *)a + (size_t)k * as) + b;
            s = _mm256_add_epi32(dot_column(t, w, q, y->lo), _mm256_slli_epi32(dot_column(t, w, q, y->hi), 7));
            sum = _mm256_set1_epi32(y->sum);
            da = y->d;
        } else {
            const bc__block_a8 *y = (const bc__block_a8 *)((const char *)a + (size_t)k * as) + b;
            s = dot_column(t, w, q, y->qs);
            sum = _mm256_set1_epi32(y->sum);
            da = y->d;
        }
        if (zp) s = _mm256_sub_epi32(s, _mm256_slli_epi32(sum, zp == 8 ? 3 : 4));
        if (has_zero(t)) s = _mm256_sub_epi32(s, _mm256_mullo_epi32(zv, sum));
        __m256 v = _mm256_mul_ps(dw, _mm256_cvtepi32_ps(s));
        if (has_min(t)) v = _mm256_fmadd_ps(mw, _mm256_cvtepi32_ps(sum), v);
        acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(da), v, acc[k]);
    }
}

/* Runs per column block: a block of the group (16 block columns, 2.2 KB of
 * q4_0, 4.2 KB of q8_0) comes from memory once and is run against every
 * activation row of the call, 4 at a time, from L1 (as in avx512_q32.c). */
#define BLOCK_RUNS 4

/* Runs [r0, r1) of the group at g (nb block columns) against na (1..4)
 * activation rows; the accumulators start from zero (first) or from out
 * and go back to out. The first pass over a block prefetches ahead. */
INLINE_AVX2 void runs_(const bc_dtype t, int64_t nb, const uint8_t *g, int64_t r0, int64_t r1, const void *a, size_t as,
                       const int na, float *out, bool first, bool prefetch) {
    const size_t cb = col_bytes(t), step = run_bytes(t) / RUN;
    __m256 acc[BC__MAX_NA];
    for (int k = 0; k < na; k++) acc[k] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + 8 * k);
    const uint8_t *run = g + (size_t)r0 * run_bytes(t);
    for (int64_t r = r0; r < r1; r++, run += run_bytes(t)) {
        const int64_t b0 = r * RUN;
        const int in_run = nb - b0 < RUN ? (int)(nb - b0) : RUN;
        const uint8_t *sc = run + (size_t)in_run * cb;
        for (int i = 0; i < in_run; i++) {
            /* A run's share per column, so the prefetches cover the scales
             * too; they may pass the group's end: prefetches never fault. */
            if (prefetch)
                for (size_t off = 0; off < step; off += 64)
                    _mm_prefetch((const char *)(run + PREFETCH + (size_t)i * step + off), _MM_HINT_T0);
            column(t, run + (size_t)i * cb, sc + 16 * i, sc + RUN_TABLE + 8 * i, b0 + i, a, as, na, acc);
        }
    }
    for (int k = 0; k < na; k++) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

/* The group against na (1..BC__PACK_MAX_NA) activation rows: column block
 * by column block, 4 rows at a time (16 ymm registers hold 4 accumulators,
 * the 8 unpacked weight registers and the products). Each output adds its
 * column products in column order whatever na is. */
INLINE_AVX2 void kernel_(const bc_dtype t, int64_t cols, const void *group, const void *a, size_t as, int na,
                         float *out) {
    const int64_t nb = cols / 32, n_runs = (nb + RUN - 1) / RUN;
    for (int64_t r0 = 0; r0 < n_runs; r0 += BLOCK_RUNS) {
        const int64_t r1 = r0 + BLOCK_RUNS < n_runs ? r0 + BLOCK_RUNS : n_runs;
        for (int k0 = 0; k0 < na; k0 += 4) {
            const void *ak = (const char *)a + (size_t)k0 * as;
            float *ok = out + 8 * k0;
            const bool first = r0 == 0, pf = k0 == 0;
            switch (na - k0 < 4 ? na - k0 : 4) {
            case 1: runs_(t, nb, group, r0, r1, ak, as, 1, ok, first, pf); break;
            case 2: runs_(t, nb, group, r0, r1, ak, as, 2, ok, first, pf); break;
            case 3: runs_(t, nb, group, r0, r1, ak, as, 3, ok, first, pf); break;
            default: runs_(t, nb, group, r0, r1, ak, as, 4, ok, first, pf); break;
            }
        }
    }
}

#define KERNEL(name, T)                                                                                                \
    static ATTR_AVX2 void name(int64_t cols, const void *g, const void *a, size_t as, int na, float *out) {            \
        kernel_(T, cols, g, a, as, na, out);                                                                           \
    }

#define LAYOUT(sfx, T)                                                                                                 \
    static size_t group_bytes_##sfx(int64_t cols) { return group_bytes_of(T, cols); }                                  \
    static void pack_##sfx(const void *src, size_t row_bytes, int64_t cols, void *dst) {                               \
        pack_group(T, src, row_bytes, cols, dst);                                                                      \
    }                                                                                                                  \
    KERNEL(kernel_##sfx, T)                                                                                            \
    const bc__pack_layout bc__layout_##sfx##_avx2 = {BC__ISA_AVX2,      8,          BC__PACK_MAX_NA,                   \
                                                     group_bytes_##sfx, pack_##sfx, kernel_##sfx};

LAYOUT(q4_0, BC_DTYPE_Q4_0)
LAYOUT(q4_1, BC_DTYPE_Q4_1)
LAYOUT(q5_0, BC_DTYPE_Q5_0)
LAYOUT(q5_1, BC_DTYPE_Q5_1)
LAYOUT(q8_0, BC_DTYPE_Q8_0)
LAYOUT(q4_gptq, BC_DTYPE_Q4_GPTQ)

#endif

/*
 * kernel_types.h - the types every kernel file shares (header only): the
 * instruction-set levels, the activation formats, and the three kinds of
 * dot-product kernel with their contracts: a row kernel (bc__dot_fn), a
 * four-row kernel (bc__gemm4_fn) and a repacked layout with its kernel
 * (bc__pack_layout). The SIMD files include this and nothing else of the
 * folder's, so that the dispatch above them can point at their tables
 * without a ring.
 */
#ifndef BC_KERNEL_TYPES_H
#define BC_KERNEL_TYPES_H

#include "base/base.h"

/* Instruction-set levels of the kernels, each including the ones below
 * (isa.h detects and forces them). */
typedef enum bc__isa {
    BC__ISA_C = 0,      /* portable C */
    BC__ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    BC__ISA_AVX512 = 2, /* + AVX-512 F, BW, VL, VNNI */
    BC__ISA_COUNT
} bc__isa;

/* Activation formats: the form a matmul turns its f32 activation rows into
 * for a dtype's kernels (act.h: bc__act_kind picks it, bc__quantize_act
 * makes it; the blocks are in quant/blocks.h). Each block keeps its integer
 * sums, so a kernel's dot products are exact integers until the f32 scaling. */
enum {
    BC__ACT_F32 = 0,  /* f32 rows as they are (f32, f16, bf16 weights) */
    BC__ACT_A8 = 1,   /* bc__block_a8: 8 bits per 32 (q8_0, q4_0, q4_1, q5_0, q5_1) */
    BC__ACT_A8K = 2,  /* bc__block_a8k: 8 bits per 256 with per-16 sums (q4_K, q5_K, q6_K) */
    BC__ACT_BF16 = 3, /* bf16 values (f32 rounded to nearest even): bf16 weights in batches on
                       * AVX512_BF16 CPUs, with BC__MATMUL_BF16_ACT only */
    BC__ACT_A16 = 4,  /* bc__block_a16: 13 bits + sign per 32 as int16 (nf4, fp4) */
    BC__ACT_A16D = 5, /* bc__block_a16d: the same values as two bytes, 128 hi + lo (q4_gptq) */
};

/* Activation rows one kernel call takes at most. */
#define BC__MAX_NA 4

/* out[k] = dot(weight row w, activation row k) for k < na (1..4): cols
 * weights of w's dtype; activation row k at (const char *)a + k * a_stride,
 * in the activation format of the dtype. */
typedef void (*bc__dot_fn)(int64_t cols, const void *w, const void *a, size_t a_stride, int na, float *out);

/* out[r * BC__MAX_NA + k] = dot(weight row r, activation row k) for r < 4 and
 * k < na (1..4), weight row r at (const char *)w + r * w_stride: the same
 * products as four bc__dot_fn calls, with each weight and activation block
 * loaded once for all of them. */
typedef void (*bc__gemm4_fn)(int64_t cols, const void *w, size_t w_stride, const void *a, size_t a_stride, int na,
                             float *out);

/* ------------------------------------------------------------------------ */
/* Repacked weights                                                         */
/* ------------------------------------------------------------------------ */

/* A matrix can be copied at load into an interleaved layout: groups of
 * `rows` consecutive weight rows stored so that one SIMD register holds a few
 * weights of every row of the group, one row per 32-bit lane. The integer
 * dot products of a block column then land one row per lane with no
 * horizontal adds, the scales of the group's rows convert with one
 * instruction, and a batch kernel unpacks each block column once for several
 * activation rows. In the row-major layout every block of every row pays its
 * own scale conversion, broadcast, int->float conversion and FMA.
 *
 * Layouts, each with the kernel that reads it (the writer and the kernel sit
 * side by side, the layout described above them):
 *   AVX-512 (avx512_q32.c, 16 rows) q4_0, q4_1, q5_0, q5_1, q8_0, q4_gptq
 *   AVX-512 (avx512_q4x.c, 16 rows) nf4, fp4
 *   AVX-512 (avx512_k.c, 16 rows)   q4_K, q5_K, q6_K
 *   AVX2 (avx2_q32.c, 8 rows)       q4_0, q4_1, q5_0, q5_1, q8_0, q4_gptq
 *   AVX2 (avx2_k.c, 8 rows)         q4_K, q5_K, q6_K
 *   AVX2 (avx2_q4x.c, 8 rows)       nf4, fp4
 * A level without a layout for a dtype, or whose groups do not divide a
 * matrix's rows, uses the layout of the level below (bc__pack_layout_for).
 * repack.h makes the copies. */

/* out[k * rows + r] = dot(row r of the group, activation row k) for every
 * row r of the group and k < na (1..the layout's max_na): one group against
 * na activation rows in the dtype's activation format. Each output's bits
 * depend on its weight row and activation row only, never on na or on the
 * other rows of the call (a user's logits do not depend on the batch). */
typedef void (*bc__pack_fn)(int64_t cols, const void *group, const void *a, size_t a_stride, int na, float *out);

#define BC__PACK_MAX_ROWS 16
/* Activation rows a layout's kernel may take in one call, at most. */
#define BC__PACK_MAX_NA 32

typedef struct bc__pack_layout {
    bc__isa isa; /* the level its kernel needs */
    int rows;    /* weight rows per group: 8 (AVX2) or 16 (AVX-512), at most BC__PACK_MAX_ROWS */
    int max_na;  /* activation rows its kernel takes per call: 1..BC__PACK_MAX_NA */
    /* Bytes of one group of a matrix with cols columns (a multiple of 32). */
    size_t (*group_bytes)(int64_t cols);
    /* Writes `rows` consecutive row-major rows (row r at src + r * row_bytes,
     * cols weights each) as one group at dst (group_bytes(cols), 32-aligned). */
    void (*pack)(const void *src, size_t row_bytes, int64_t cols, void *dst);
    bc__pack_fn kernel;
} bc__pack_layout;

#endif /* BC_KERNEL_TYPES_H */

/*
 * kernels.h - the numeric building blocks of the forward pass.
 *
 * Activations are f32. Weights are read in their stored dtype:
 *   f32, f16, bf16   converted to f32 as they stream through (exact), FMA in f32
 *   q8_0 .. q5_1     activations quantized per 32 to 8 bits (bc__block_a8),
 *                    integer dot products per block, scaled in f32
 *   nf4, fp4         activations quantized per 64 to 13 bits + sign (bc__block_a16),
 *                    against the codes as int16
 *   q4_gptq          as q4_0 with the block's zero point, against the same 13-bit
 *                    activations split into two bytes (bc__block_a16d)
 *   q4_K .. q6_K     activations quantized per 256 to 8 bits with per-16 sums
 *                    (bc__block_a8k), integer dot products per sub-block
 *
 * Every dtype has a portable C kernel; x86-64 adds AVX2 (+FMA, F16C) and
 * AVX-512 (F, BW, VL, VNNI) kernels compiled with target attributes and picked
 * at run time from the CPU's features (no -march flag needed).
 */
#ifndef BC_KERNELS_H
#define BC_KERNELS_H

#include "base/threadpool.h"
#include "kernels/weight.h"

/* Instruction-set levels of the kernels, each including the ones below. */
typedef enum bc__isa {
    BC__ISA_C = 0,      /* portable C */
    BC__ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    BC__ISA_AVX512 = 2, /* + AVX-512 F, BW, VL, VNNI */
    BC__ISA_COUNT
} bc__isa;

/* The best level this CPU supports. */
BC__HIDDEN bc__isa bc__kernels_detect(void);
/* The level in use: the detected one unless forced. */
BC__HIDDEN bc__isa bc__kernels_isa(void);
/* Forces the kernels to a level (clamped to the detected one), or back to the
 * detected level with -1. For tests and benchmarks; not thread-safe against
 * running matmuls. Returns the level now in use. */
BC__HIDDEN bc__isa bc__kernels_force(int level);
BC__HIDDEN const char *bc__isa_name(bc__isa isa);

/* sum_i a[i] * b[i] */
BC__HIDDEN float bc__dot_f32(const float *a, const float *b, int64_t n);

/* Row i of w converted to f32 into row (w->cols floats); any dtype. With
 * w->perm the values come back in the input order (row[perm[c]] = stored
 * column c). */
BC__HIDDEN void bc__weight_row_f32(const bc__weight *w, int64_t i, float *row);

/* Bytes of scratch bc__matmul and bc__matmul_multi need for n activation
 * rows of up to max_cols columns (the f32 rows gathered for a weight with a
 * column order, then the 8-bit activation blocks, room for every activation
 * format at once). */
BC__HIDDEN size_t bc__matmul_scratch_bytes(int64_t max_cols, int n);

/* y (n, w->rows) = x (n, w->cols) @ w^T, rows split across the pool's
 * threads. A weight with a column order (w->perm) multiplies x[:, perm]. scratch: bc__matmul_scratch_bytes(w->cols, n)
 * bytes, 64-aligned (malloc'd memory is enough: only 4-byte alignment is relied on). */
/* bc__matmul flags. BC__MATMUL_BF16_ACT: for bf16 weights on an AVX512_BF16
 * CPU, round the activations to bf16 and multiply with vdpbf16ps (about twice
 * the speed in batches, at a relative error of up to 2^-9 per activation);
 * without it every product uses the exact f32 activations. */
#define BC__MATMUL_BF16_ACT 1u
BC__HIDDEN void bc__matmul(bc__pool *pool, const bc__weight *w, const float *x, int n, float *y, void *scratch,
                           unsigned flags);

/* Several products of the same activations in one pass: ys[i] (n, rows) =
 * x (n, cols) @ ws[i]^T for i < n_parts (1..BC__MATMUL_MAX_PARTS), all ws[i]
 * of the same shape (rows, cols), in any dtypes. One pool task: each thread
 * takes runs of rows of every part (Q, K and V; gate and up), the activations
 * are quantized once per format. With BC__MATMUL_SILU_MUL (two parts) the
 * rows a thread computed are then turned into silu(ys[0]) * ys[1], in ys[0],
 * while they are in cache. scratch as for bc__matmul. */
#define BC__MATMUL_MAX_PARTS 3
#define BC__MATMUL_SILU_MUL  2u
BC__HIDDEN void bc__matmul_multi(bc__pool *pool, const bc__weight *const *ws, int n_parts, const float *x, int n,
                                 float *const *ys, void *scratch, unsigned flags);

/* Rows of one head's keys (or values) in the paged KV pool: the row of
 * position j is at base + blocks[j >> block_shift] * block_stride +
 * (j & ((1 << block_shift) - 1)) * row_stride (bytes), D values of dtype:
 * BC_DTYPE_F32, BC_DTYPE_F16 (IEEE half) or BC_DTYPE_Q8_0 (D / 32 blocks of
 * 34 bytes: f16 d, int8 q[32]; value = d * q). */
typedef struct bc__kv_rows {
    const uint8_t *base;
    const int32_t *blocks;
    size_t block_stride, row_stride;
    int block_shift;
    bc_dtype dtype;
} bc__kv_rows;

/* One head of causal attention for one query: out (D) = sum over keys
 * j < n_keys of softmax_j(s_j) * v_j, s_j = dot(q, k_j) * scale (+ *slope *
 * (j - pos) with ALiBi, slope non-NULL). scores: n_keys floats of scratch.
 * Dispatches to the best kernel for the CPU and dtype.
 *
 * Every kernel computes each key's score, the softmax sums and the weighted
 * sum of each output in the order of j, with the same arithmetic whatever
 * the block of j: for a dtype and level the result depends on the rows'
 * values only, not on block_shift or the block table (so a query attends
 * the same in a batch as alone). f16 and q8_0 values convert to f32 exactly
 * (d * q has at most 19 significant bits) before they are used, so at a
 * level they give the bits of the f32 kernel on the converted rows.
 * block_shift is 0..30. */
BC__HIDDEN void bc__attend(const float *q, const bc__kv_rows *k, const bc__kv_rows *v, int n_keys, int D, float scale,
                           const float *slope, int pos, float *scores, float *out);
/* The portable C version (any D; D % 32 == 0 for q8_0). f16 goes through
 * bc__f16_to_f32, so bc__f16_init() must have run. */
BC__HIDDEN void bc__attend_ref(const float *q, const bc__kv_rows *k, const bc__kv_rows *v, int n_keys, int D,
                               float scale, const float *slope, int pos, float *scores, float *out);
/* The AVX2 version (avx2_attend.c, x86-64 builds only), for D a multiple of
 * 32; bc__attend runs the C version for other D. */
BC__HIDDEN void bc__attend_avx2(const float *q, const bc__kv_rows *k, const bc__kv_rows *v, int n_keys, int D,
                                float scale, const float *slope, int pos, float *scores, float *out);

/* The run of rows of r starting at position j (j < n_keys): sets *row to
 * the row of j and returns how many positions from j on lie in the same
 * block (at most n_keys - j), their rows row_stride bytes apart. The kernels
 * walk the positions a block at a time with it. */
static inline int bc__kv_run(const bc__kv_rows *r, int j, int n_keys, const uint8_t **row) {
    const int in_block = j & ((1 << r->block_shift) - 1), left = (1 << r->block_shift) - in_block;
    *row = r->base + (size_t)r->blocks[j >> r->block_shift] * r->block_stride + (size_t)in_block * r->row_stride;
    return left < n_keys - j ? left : n_keys - j;
}

/* One row of n keys or values into the KV pool as type (f32, f16, q8_0). */
BC__HIDDEN void bc__kv_store_row(bc_dtype type, const float *src, void *dst, int64_t n);

/* g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] for i < n. */
BC__HIDDEN void bc__silu_mul(float *g, const float *u, int n);

/* out (n) = w * x / sqrt(mean(x^2) + eps); out may alias x. */
BC__HIDDEN void bc__rmsnorm(const float *x, const float *w, int n, float eps, float *out);

/* ------------------------------------------------------------------------ */
/* For the kernel files and the tests                                       */
/* ------------------------------------------------------------------------ */

/* out[k] = dot(weight row w, activation row k) for k < na (1..4): cols
 * weights of w's dtype; activation row k at (const char *)a + k * a_stride,
 * in the activation format of the dtype (f32, a8 or a8k rows). */
typedef void (*bc__dot_fn)(int64_t cols, const void *w, const void *a, size_t a_stride, int na, float *out);

#define BC__MAX_NA 4

/* The kernel of dtype at level isa (falling back to lower levels), or NULL
 * for an unknown dtype. */
BC__HIDDEN bc__dot_fn bc__dot_kernel(bc_dtype dtype, bc__isa isa);

/* Activation format of a dtype: 0 f32, 1 a8 (per 32), 2 a8k (per 256),
 * BC__ACT_A16 a16 (per 64, nf4 / fp4). */
#define BC__ACT_A16 4
/* ... and BC__ACT_A16D, the same values as two bytes (q4_gptq). */
#define BC__ACT_A16D 5
BC__HIDDEN int bc__act_kind(bc_dtype dtype);
/* Bytes of one activation row of cols values for kind. */
BC__HIDDEN size_t bc__act_row_bytes(int kind, int64_t cols);
/* Quantizes one activation row of cols values (whole blocks) into dst. */
BC__HIDDEN void bc__quantize_act(int kind, const float *x, void *dst, int64_t cols);
/* The AVX2 version of kinds 1 and 2 (x86.c): for finite x, bit for bit the
 * same blocks. */
BC__HIDDEN void bc__quantize_act_avx2(int kind, const float *x, void *dst, int64_t cols);

/* The NF4 / FP4 code tables as int16, round(code * 2^14) (kernels.c). */
BC__HIDDEN extern const int16_t bc__nf4_i16[16];
BC__HIDDEN extern const int16_t bc__fp4_i16[16];

/* Kernel tables per level, filled by x86.c (NULL entries fall back). */
BC__HIDDEN extern const bc__dot_fn bc__dot_avx2[BC_DTYPE_COUNT];
BC__HIDDEN extern const bc__dot_fn bc__dot_avx512[BC_DTYPE_COUNT];
/* The AVX2 nf4 / fp4 row kernels (avx2_q4x.c, x86-64 builds only). */
BC__HIDDEN void bc__dot_nf4_avx2(int64_t cols, const void *w, const void *a, size_t a_stride, int na, float *out);
BC__HIDDEN void bc__dot_fp4_avx2(int64_t cols, const void *w, const void *a, size_t a_stride, int na, float *out);

/* out[r * BC__MAX_NA + k] = dot(weight row r, activation row k) for r < 4 and
 * k < na (1..4), weight row r at (const char *)w + r * w_stride: the same
 * products as four bc__dot_fn calls, with each weight and activation block
 * loaded once for all of them. */
typedef void (*bc__gemm4_fn)(int64_t cols, const void *w, size_t w_stride, const void *a, size_t a_stride, int na,
                             float *out);

/* The four-row kernel of dtype at level isa (falling back to lower levels),
 * or NULL where there is none (the matmul then runs bc__dot_fn row by row). */
BC__HIDDEN bc__gemm4_fn bc__gemm4_kernel(bc_dtype dtype, bc__isa isa);
/* Four-row kernel tables per level: AVX2 f16 / bf16 in avx2_half.c, AVX-512
 * in x86.c (NULL entries fall back). */
BC__HIDDEN extern const bc__gemm4_fn bc__gemm4_avx2[BC_DTYPE_COUNT];
BC__HIDDEN extern const bc__gemm4_fn bc__gemm4_avx512[BC_DTYPE_COUNT];

/* Activation kind 3: rows of cols bf16 values (f32 rounded to nearest even),
 * for bf16 weights in batches of 2 or more rows on CPUs with AVX512_BF16
 * (bc__kernels_bf16()): one row and four-row kernels against it (NULL where
 * not built). */
#define BC__ACT_BF16 3
BC__HIDDEN bool bc__kernels_bf16(void);
BC__HIDDEN extern const bc__dot_fn bc__dot_bf16_act_bf16;
BC__HIDDEN extern const bc__gemm4_fn bc__gemm4_bf16_act_bf16;

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
 *   AVX-512 (x86.c, 16 rows)        q4_0, q8_0
 *   AVX2 (avx2_q32.c, 8 rows)       q4_0, q4_1, q5_0, q5_1, q8_0, q4_gptq
 *   AVX2 (avx2_k.c, 8 rows)         q4_K, q5_K, q6_K
 *   AVX2 (avx2_q4x.c, 8 rows)       nf4, fp4
 * A level without a layout for a dtype uses the layout of the level below
 * (AVX-512 CPUs run the AVX2 K layouts). */

/* out[k * rows + r] = dot(row r of the group, activation row k) for every
 * row r of the group and k < na (1..BC__MAX_NA): one group against na
 * activation rows in the dtype's activation format (a8 / a8k). */
typedef void (*bc__pack_fn)(int64_t cols, const void *group, const void *a, size_t a_stride, int na, float *out);

#define BC__PACK_MAX_ROWS 16

typedef struct bc__pack_layout {
    bc__isa isa; /* the level its kernel needs */
    int rows;    /* weight rows per group: 8 (AVX2) or 16 (AVX-512), at most BC__PACK_MAX_ROWS */
    /* Bytes of one group of a matrix with cols columns (a multiple of 32). */
    size_t (*group_bytes)(int64_t cols);
    /* Writes `rows` consecutive row-major rows (row r at src + r * row_bytes,
     * cols weights each) as one group at dst (group_bytes(cols), 32-aligned). */
    void (*pack)(const void *src, size_t row_bytes, int64_t cols, void *dst);
    bc__pack_fn kernel;
} bc__pack_layout;

/* Layout tables per level (NULL: none for that dtype at that level). */
BC__HIDDEN extern const bc__pack_layout *const bc__pack_avx2[BC_DTYPE_COUNT];
BC__HIDDEN extern const bc__pack_layout *const bc__pack_avx512[BC_DTYPE_COUNT];

/* The AVX2 layouts, each defined beside its kernel (x86-64 builds only). */
BC__HIDDEN extern const bc__pack_layout bc__layout_q4_0_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q4_1_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q5_0_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q5_1_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q8_0_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q4_gptq_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_nf4_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_fp4_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q4_K_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q5_K_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q6_K_avx2;

/* The layout a matrix of dtype gets at level isa (the best at or below it),
 * or NULL when there is none. */
BC__HIDDEN const bc__pack_layout *bc__pack_layout_of(bc_dtype dtype, bc__isa isa);
/* Whether w's dtype has a layout at the current level and w's shape fits it
 * (rows a multiple of the group, cols of the dtype's blocks). */
BC__HIDDEN bool bc__pack_supported(const bc__weight *w);
/* Makes w's repacked copy for the current level: a new 64-aligned buffer at
 * w->packed (huge pages for large ones) and its layout at w->pack. Returns
 * false, with w unchanged, when w has no layout or memory ran out (the
 * matmul then reads w->data as before). */
BC__HIDDEN bool bc__weight_repack(bc__weight *w);
/* Frees w's repacked copy, if any, and clears w->packed and w->pack. */
BC__HIDDEN void bc__weight_repack_free(bc__weight *w);
/* Bytes of w's repacked copy (0 when it has none). */
BC__HIDDEN size_t bc__repack_bytes(const bc__weight *w);

#endif /* BC_KERNELS_H */

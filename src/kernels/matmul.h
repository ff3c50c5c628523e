/*
 * matmul.h - y (n, rows) = x (n, cols) @ W^T over any stored dtype, split
 * across the thread pool, with exact integer sums per block and f32
 * scaling (the formats: kernel_types.h). One matrix (bc__matmul) or several
 * of the same shape against the same activations in one pass
 * (bc__matmul_multi: Q, K and V; gate and up with the SwiGLU fused).
 */
#ifndef BC_MATMUL_H
#define BC_MATMUL_H

#include "base/threadpool.h"
#include "kernels/weight.h"

/* Bytes of scratch bc__matmul and bc__matmul_multi need for n activation
 * rows of up to max_cols columns (the f32 rows gathered for a weight with a
 * column order, then the 8-bit activation blocks, room for every activation
 * format at once). */
BC__HIDDEN size_t bc__matmul_scratch_bytes(int64_t max_cols, int n);

/* bc__matmul flags. BC__MATMUL_BF16_ACT: for bf16 weights on an AVX512_BF16
 * CPU, round the activations to bf16 and multiply with vdpbf16ps (about twice
 * the speed in batches, at a relative error of up to 2^-9 per activation);
 * without it every product uses the exact f32 activations. */
#define BC__MATMUL_BF16_ACT 1u

/* y (n, w->rows) = x (n, w->cols) @ w^T, rows split across the pool's
 * threads. A weight with a column order (w->perm) multiplies x[:, perm].
 * scratch: bc__matmul_scratch_bytes(w->cols, n) bytes, 64-aligned (malloc'd
 * memory is enough: only 4-byte alignment is relied on). */
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

#endif /* BC_MATMUL_H */

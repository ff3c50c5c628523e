/*
 * kernels.h - the numeric building blocks of the forward pass.
 *
 * Activations are f32. Weights are read in their stored dtype and converted
 * as they stream through. Reference C for now; SIMD paths sit beside these
 * with the same contracts.
 */
#ifndef BC_KERNELS_H
#define BC_KERNELS_H

#include "model.h"
#include "threadpool.h"

/* sum_i a[i] * b[i] */
BC__HIDDEN float bc__dot_f32(const float *a, const float *b, int64_t n);

/* Row i of w converted to f32 into row (w->cols floats). */
BC__HIDDEN void bc__weight_row_f32(const bc__weight *w, int64_t i, float *row);

/* y (n, w->rows) = x (n, w->cols) @ w^T, rows split across the pool's
 * threads. scratch holds w->cols floats per thread (bc__pool_size threads). */
BC__HIDDEN void bc__matmul(bc__pool *pool, const bc__weight *w, const float *x, int n, float *y, float *scratch);

/* out (n) = w * x / sqrt(mean(x^2) + eps); out may alias x. */
BC__HIDDEN void bc__rmsnorm(const float *x, const float *w, int n, float eps, float *out);

#endif /* BC_KERNELS_H */

/*
 * vec.h - kernels on f32 vectors: a dot product, rmsnorm, and the SwiGLU
 * gate silu(g) * u.
 */
#ifndef BC_VEC_H
#define BC_VEC_H

#include "base/base.h"

/* sum_i a[i] * b[i] */
BC__HIDDEN float bc__dot_f32(const float *a, const float *b, int64_t n);

/* g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] for i < n. */
BC__HIDDEN void bc__silu_mul(float *g, const float *u, int n);

/* out (n) = w * x / sqrt(mean(x^2) + eps); out may alias x. */
BC__HIDDEN void bc__rmsnorm(const float *x, const float *w, int n, float eps, float *out);

#endif /* BC_VEC_H */

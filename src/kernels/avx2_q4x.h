/*
 * avx2_q4x.h - the AVX2 kernels of nf4 and fp4 (avx2_q4x.c, x86-64 builds
 * only): row-major row kernels and the repacked layouts.
 */
#ifndef BC_AVX2_Q4X_H
#define BC_AVX2_Q4X_H

#include "kernels/kernel_types.h"

BC__HIDDEN void bc__dot_nf4_avx2(int64_t cols, const void *w, const void *a, size_t a_stride, int na, float *out);
BC__HIDDEN void bc__dot_fp4_avx2(int64_t cols, const void *w, const void *a, size_t a_stride, int na, float *out);

BC__HIDDEN extern const bc__pack_layout bc__layout_nf4_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_fp4_avx2;

#endif /* BC_AVX2_Q4X_H */

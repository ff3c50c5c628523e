/*
 * avx2_half.h - the AVX2 four-row kernels of f16 and bf16 weights
 * (avx2_half.c), for batches.
 */
#ifndef BC_AVX2_HALF_H
#define BC_AVX2_HALF_H

#include "kernels/kernel_types.h"

/* Four-row kernel table of the AVX2 level (f16, bf16; NULL elsewhere, and
 * all NULL where not built). */
BC__HIDDEN extern const bc__gemm4_fn bc__gemm4_avx2[BC_DTYPE_COUNT];

#endif /* BC_AVX2_HALF_H */

/*
 * avx512_half.h - the AVX-512 four-row kernels of f16 and bf16 weights
 * (avx512_half.c), for batches.
 */
#ifndef BC_AVX512_HALF_H
#define BC_AVX512_HALF_H

#include "kernels/kernel_types.h"

/* Four-row kernel table of f16 and bf16 at the AVX-512 level (NULL
 * elsewhere, and all NULL where not built). */
BC__HIDDEN extern const bc__gemm4_fn bc__gemm4_avx512_half[BC_DTYPE_COUNT];

#endif /* BC_AVX512_HALF_H */

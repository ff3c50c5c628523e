/*
 * dispatch.h - which kernel runs for a dtype at a level: the row kernel,
 * the four-row kernel and the repacked layout, each the best at or below
 * the level (the C kernels of ref.c at the bottom).
 */
#ifndef BC_DISPATCH_H
#define BC_DISPATCH_H

#include "kernels/kernel_types.h"

/* The row kernel of dtype at level isa (falling back to lower levels), or
 * NULL for an unknown dtype. */
BC__HIDDEN bc__dot_fn bc__dot_kernel(bc_dtype dtype, bc__isa isa);
/* The four-row kernel of dtype at level isa (falling back to lower levels),
 * or NULL where there is none (the matmul then runs bc__dot_fn row by row). */
BC__HIDDEN bc__gemm4_fn bc__gemm4_kernel(bc_dtype dtype, bc__isa isa);
/* The layout a matrix of dtype gets at level isa (the best at or below it),
 * or NULL when there is none. */
BC__HIDDEN const bc__pack_layout *bc__pack_layout_of(bc_dtype dtype, bc__isa isa);
/* The layout a matrix of dtype with `rows` rows gets at level isa: the best
 * at or below it whose groups divide rows (an AVX-512 CPU repacks a matrix
 * of 8k but not 16k rows in the AVX2 layout of 8 rows), or NULL. */
BC__HIDDEN const bc__pack_layout *bc__pack_layout_for(bc_dtype dtype, bc__isa isa, int64_t rows);
/* Whether bf16 weights may run against bf16 activations (BC__ACT_BF16, the
 * kernels bc__dot_bf16_act_bf16 / bc__gemm4_bf16_act_bf16 of x86.h): the
 * level in use is AVX-512, they are built, and the CPU has AVX512_BF16. */
BC__HIDDEN bool bc__kernels_bf16(void);

#endif /* BC_DISPATCH_H */

/*
 * x86.h - what x86.c gives the dispatch: its kernel tables per level, the
 * AVX-512 BF16 pair for bf16 weights against bf16 activations, and the AVX2
 * activation quantizer. On other CPUs and compilers x86.c defines the
 * tables empty (NULL entries fall back to the level below).
 */
#ifndef BC_X86_H
#define BC_X86_H

#include "kernels/kernel_types.h"

/* Row kernel tables per level (NULL entries fall back). */
BC__HIDDEN extern const bc__dot_fn bc__dot_avx2[BC_DTYPE_COUNT];
BC__HIDDEN extern const bc__dot_fn bc__dot_avx512[BC_DTYPE_COUNT];
/* Four-row kernel table of the AVX-512 level (the AVX2 one is avx2_half.c's). */
BC__HIDDEN extern const bc__gemm4_fn bc__gemm4_avx512[BC_DTYPE_COUNT];
/* Repacked layout tables per level (NULL: none for that dtype at that level);
 * the AVX2 one points at the layouts of avx2_q32.c, avx2_k.c and avx2_q4x.c. */
BC__HIDDEN extern const bc__pack_layout *const bc__pack_avx2[BC_DTYPE_COUNT];
BC__HIDDEN extern const bc__pack_layout *const bc__pack_avx512[BC_DTYPE_COUNT];

/* bf16 weights against BC__ACT_BF16 activations with vdpbf16ps: a row and a
 * four-row kernel, for CPUs with AVX512_BF16 (NULL where not built). */
BC__HIDDEN extern const bc__dot_fn bc__dot_bf16_act_bf16;
BC__HIDDEN extern const bc__gemm4_fn bc__gemm4_bf16_act_bf16;

/* The AVX2 quantizer of BC__ACT_A8 and BC__ACT_A8K rows (x86-64 builds
 * only): for finite x, bit for bit the blocks of bc__quantize_act's C code. */
BC__HIDDEN void bc__quantize_act_avx2(int kind, const float *x, void *dst, int64_t cols);

/* g[i] = silu(g[i]) * u[i] with AVX2 (x86-64 builds only; elsewhere it does
 * nothing and is not called): a vectorized exp within about 1 ulp of expf's
 * for |g| < 87, so within a few ulp of bc__silu_mul's C loop. */
BC__HIDDEN void bc__silu_mul_avx2(float *g, const float *u, int n);

#endif /* BC_X86_H */

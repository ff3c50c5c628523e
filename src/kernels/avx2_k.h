/*
 * avx2_k.h - the AVX2 repacked layouts of the K formats (avx2_k.c, x86-64
 * builds only).
 */
#ifndef BC_AVX2_K_H
#define BC_AVX2_K_H

#include "kernels/kernel_types.h"

BC__HIDDEN extern const bc__pack_layout bc__layout_q4_K_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q5_K_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q6_K_avx2;

#endif /* BC_AVX2_K_H */

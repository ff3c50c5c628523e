/*
 * avx2_q32.h - the AVX2 repacked layouts of the 32-weight block formats
 * (avx2_q32.c, x86-64 builds only).
 */
#ifndef BC_AVX2_Q32_H
#define BC_AVX2_Q32_H

#include "kernels/kernel_types.h"

BC__HIDDEN extern const bc__pack_layout bc__layout_q4_0_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q4_1_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q5_0_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q5_1_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q8_0_avx2;
BC__HIDDEN extern const bc__pack_layout bc__layout_q4_gptq_avx2;

#endif /* BC_AVX2_Q32_H */

/*
 * avx512_q32.h - the AVX-512 VNNI repacked layouts of the 32-weight block
 * formats (avx512_q32.c, x86-64 builds only): 16 rows a group, up to 8
 * activation rows a call.
 */
#ifndef BC_AVX512_Q32_H
#define BC_AVX512_Q32_H

#include "kernels/kernel_types.h"

BC__HIDDEN extern const bc__pack_layout bc__layout_q4_0_avx512;
BC__HIDDEN extern const bc__pack_layout bc__layout_q4_1_avx512;
BC__HIDDEN extern const bc__pack_layout bc__layout_q5_0_avx512;
BC__HIDDEN extern const bc__pack_layout bc__layout_q5_1_avx512;
BC__HIDDEN extern const bc__pack_layout bc__layout_q8_0_avx512;
BC__HIDDEN extern const bc__pack_layout bc__layout_q4_gptq_avx512;

#endif /* BC_AVX512_Q32_H */

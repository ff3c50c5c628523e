/*
 * avx512_k.h - the AVX-512 VNNI repacked layouts of the K formats
 * (avx512_k.c, x86-64 builds only): 16 rows a group, up to
 * BC__PACK_MAX_NA activation rows a call.
 */
#ifndef BC_AVX512_K_H
#define BC_AVX512_K_H

#include "kernels/kernel_types.h"

BC__HIDDEN extern const bc__pack_layout bc__layout_q4_K_avx512;
BC__HIDDEN extern const bc__pack_layout bc__layout_q5_K_avx512;
BC__HIDDEN extern const bc__pack_layout bc__layout_q6_K_avx512;

#endif /* BC_AVX512_K_H */

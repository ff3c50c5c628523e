/*
 * avx512_q4x.h - the AVX-512 repacked layouts of nf4 and fp4 (avx512_q4x.c,
 * x86-64 builds only): 16 rows a group, up to 32 activation rows a call.
 */
#ifndef BC_AVX512_Q4X_H
#define BC_AVX512_Q4X_H

#include "kernels/kernel_types.h"

BC__HIDDEN extern const bc__pack_layout bc__layout_nf4_avx512;
BC__HIDDEN extern const bc__pack_layout bc__layout_fp4_avx512;

#endif /* BC_AVX512_Q4X_H */

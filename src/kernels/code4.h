/*
 * code4.h - the NF4 and FP4 code tables in the form the kernels multiply:
 * int16, round(code * 2^14) (code4.c). The C kernels (ref.c) and the AVX2
 * ones (avx2_q4x.c) read the same tables, so both give the same integer
 * sums.
 */
#ifndef BC_CODE4_H
#define BC_CODE4_H

#include "base/base.h"

BC__HIDDEN extern const int16_t bc__nf4_i16[16];
BC__HIDDEN extern const int16_t bc__fp4_i16[16];

#endif /* BC_CODE4_H */

/*
 * code4.c - the NF4 and FP4 code tables as int16 (see code4.h): data only.
 */
#include "kernels/code4.h"

/* round(code * 2^14), within 2^-15 of the code (3e-5 of a block's absmax;
 * bitsandbytes itself rounds the weights to f16, 2^-11 relative). Checked
 * against bc__nf4_code / bc__fp4_code in test_kernels. */
const int16_t bc__nf4_i16[16] = {-16384, -11406, -8603, -6470, -4660, -3027, -1492, 0,
                                 1304,   2637,   4032,  5536,  7221,  9218,  11845, 16384};
const int16_t bc__fp4_i16[16] = {0, 85,  10923,  16384,  5461,  8192,  2731,  4096,
                                 0, -85, -10923, -16384, -5461, -8192, -2731, -4096};

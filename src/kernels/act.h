/*
 * act.h - the activation formats of the dtypes (kernel_types.h, BC__ACT_*)
 * and the quantizer that makes them from f32 rows.
 */
#ifndef BC_ACT_H
#define BC_ACT_H

#include "kernels/kernel_types.h"

/* The activation format (BC__ACT_*) the kernels of a dtype read. */
BC__HIDDEN int bc__act_kind(bc_dtype dtype);
/* Bytes of one activation row of cols values for kind. */
BC__HIDDEN size_t bc__act_row_bytes(int kind, int64_t cols);
/* Quantizes one activation row of cols values (whole blocks) into dst, with
 * the AVX2 quantizer for a8 and a8k at that level (the same blocks). */
BC__HIDDEN void bc__quantize_act(int kind, const float *x, void *dst, int64_t cols);

#endif /* BC_ACT_H */

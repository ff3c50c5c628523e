/*
 * lora_expand.h - the expand product of a LoRA update (lora_expand.c):
 * B t for a run of output rows, with B held transposed (r, out) so that the
 * output rows are contiguous and a run of them is one vector loop per rank.
 */
#ifndef BC_LORA_EXPAND_H
#define BC_LORA_EXPAND_H

#include "base/base.h"

/* acc[i] = sum over k = 0 .. r-1, in that order, of bt[k * ld + o0 + i] * t[k],
 * for i < n: bt (r, ld) elements of dtype (f32, f16 or bf16). Each acc[i]
 * gets the same arithmetic whatever o0 and n are (the vector lanes and the
 * scalar tail both fuse the multiply-add, or neither does), so a row's bits do
 * not depend on which run it is computed in. */
BC__HIDDEN void bc__lora_expand(bc_dtype dtype, int r, const void *bt, int64_t ld, int64_t o0, int n, const float *t,
                                float *acc);

#endif /* BC_LORA_EXPAND_H */

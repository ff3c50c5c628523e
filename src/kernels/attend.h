/*
 * attend.h - causal attention of one head for one query over the keys and
 * values of the paged KV pool (kv_rows.h), f32, f16 or q8_0 rows.
 */
#ifndef BC_ATTEND_H
#define BC_ATTEND_H

#include "kernels/kv_rows.h"

/* One head of causal attention for one query: out (D) = sum over keys
 * j < n_keys of softmax_j(s_j) * v_j, s_j = dot(q, k_j) * scale (+ *slope *
 * (j - pos) with ALiBi, slope non-NULL). scores: n_keys floats of scratch.
 * Dispatches to the best kernel for the CPU and dtype: the AVX2 one
 * (avx2_attend.h) for D a multiple of 32 at the AVX2 level and above, the C
 * one otherwise.
 *
 * Every kernel computes each key's score, the softmax sums and the weighted
 * sum of each output in the order of j, with the same arithmetic whatever
 * the block of j: for a dtype and level the result depends on the rows'
 * values only, not on block_shift or the block table (so a query attends
 * the same in a batch as alone). f16 and q8_0 values convert to f32 exactly
 * (d * q has at most 19 significant bits) before they are used, so at a
 * level they give the bits of the f32 kernel on the converted rows.
 * block_shift is 0..30. */
BC__HIDDEN void bc__attend(const float *q, const bc__kv_rows *k, const bc__kv_rows *v, int n_keys, int D, float scale,
                           const float *slope, int pos, float *scores, float *out);
/* The portable C version (any D; D % 32 == 0 for q8_0). f16 goes through
 * bc__f16_to_f32, so bc__f16_init() must have run. */
BC__HIDDEN void bc__attend_ref(const float *q, const bc__kv_rows *k, const bc__kv_rows *v, int n_keys, int D,
                               float scale, const float *slope, int pos, float *scores, float *out);

#endif /* BC_ATTEND_H */

/*
 * avx2_attend.h - the AVX2 attention of one head over the paged KV pool
 * (avx2_attend.c, x86-64 builds only).
 */
#ifndef BC_AVX2_ATTEND_H
#define BC_AVX2_ATTEND_H

#include "kernels/kv_rows.h"

/* bc__attend (attend.h) for D a multiple of 32, on a CPU with AVX2: the
 * same contract, its own bits; bc__attend runs it at the AVX2 level and
 * above. */
BC__HIDDEN void bc__attend_avx2(const float *q, const bc__kv_rows *k, const bc__kv_rows *v, int n_keys, int D,
                                float scale, const float *slope, int pos, float *scores, float *out);

#endif /* BC_AVX2_ATTEND_H */

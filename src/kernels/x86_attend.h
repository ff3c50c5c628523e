/*
 * x86_attend.h - the AVX2 and AVX-512 part kernels of tiled attention over
 * the paged KV pool (x86_attend.c, x86-64 builds only).
 */
#ifndef BC_X86_ATTEND_H
#define BC_X86_ATTEND_H

#include "kernels/att_tile.h"

/* bc__attend_part (attend.h) for D a multiple of 32: the same contract,
 * each its own bits. _avx2 needs AVX2, FMA and F16C (8 lanes); _avx512 the
 * AVX-512 level (16 lanes, 32 registers for larger tiles). */
BC__HIDDEN void bc__attend_part_avx2(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m,
                                     float *l, float *o);
BC__HIDDEN void bc__attend_part_avx512(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m,
                                       float *l, float *o);

#endif /* BC_X86_ATTEND_H */

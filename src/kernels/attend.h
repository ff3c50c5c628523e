/*
 * attend.h - causal attention of one head over the keys and values of the
 * paged KV pool (kv_rows.h, f32, f16 or q8_0 rows), for a tile of query rows
 * at consecutive positions of one sequence: a prompt chunk's rows together,
 * a decode step's row alone.
 *
 * The keys of a query are taken in segments of BC__ATT_SEGMENT positions
 * counted from position 0. A segment gives each row a part: the largest
 * score m, l = sum_j exp(s_j - m) and o = sum_j exp(s_j - m) * v_j over the
 * row's keys in the segment (s_j = q . k_j * scale, + slope * (j - pos) with
 * ALiBi). The parts are merged in the order of the segments
 * (bc__attend_merge) and the output is o / l. Within a segment the scores
 * are made, exponentiated and summed in chunks that start at the segment's
 * start. So a row's arithmetic depends on its query, its position and the
 * rows' values only: not on the other rows of its tile, not on which
 * segments ran on which thread, not on where the pool's blocks lie. A query
 * attends with the same bits in a prompt of any chunking, in a batch or
 * alone, split over threads or not.
 *
 * f16 and q8_0 values convert to f32 exactly (d * q has at most 19
 * significant bits) before they are used, so at a level they give the bits
 * of the f32 kernel on the converted rows.
 */
#ifndef BC_ATTEND_H
#define BC_ATTEND_H

#include "kernels/att_tile.h"

/* Floats of scratch bc__attend_part and bc__attend_tile need for n_rows rows
 * of head_dim D. */
BC__HIDDEN size_t bc__attend_scratch_floats(int n_rows, int D);

/* Part seg of the tile's rows: m[r], l[r] and o[r * D ...] (a row with no
 * key in the segment gets m = -inf, l = 0, o = 0). Runs the best kernel for
 * the CPU and dtype (x86_attend.h): for D a multiple of 32 the AVX-512 one
 * at the AVX-512 level, the AVX2 one at the AVX2 level; C otherwise. */
BC__HIDDEN void bc__attend_part(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m,
                                float *l, float *o);

/* Merges a part (m, l, o) into the running (*M, *L, O) of one row: the
 * larger maximum is kept and both sides are scaled to it. The state starts
 * at (-inf, 0, zeros). */
BC__HIDDEN void bc__attend_merge(int D, float *M, float *L, float *O, float m, float l, const float *o);

/* out (D) = O / L. */
BC__HIDDEN void bc__attend_finish(int D, float L, const float *O, float *out);

/* The whole attention of a tile: every segment's part merged in order, row
 * r's output at out + r * out_stride. */
BC__HIDDEN void bc__attend_tile(const bc__att_tile *t, const bc__att_head *h, float *scratch, float *out,
                                size_t out_stride);

/* The portable C part kernel (any D; D % 32 == 0 for q8_0); f16 goes
 * through bc__f16_to_f32, so bc__f16_init() must have run. */
BC__HIDDEN void bc__attend_part_ref(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m,
                                    float *l, float *o);

#endif /* BC_ATTEND_H */

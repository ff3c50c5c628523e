/*
 * kv_rows.h - how the attention kernels see one head's keys or values in
 * the paged KV pool (header only: the C and the AVX2 kernels both walk it).
 */
#ifndef BC_KV_ROWS_H
#define BC_KV_ROWS_H

#include "base/base.h"

/* Rows of one head's keys (or values) in the paged KV pool: the row of
 * position j is at base + blocks[j >> block_shift] * block_stride +
 * (j & ((1 << block_shift) - 1)) * row_stride (bytes), D values of dtype:
 * BC_DTYPE_F32, BC_DTYPE_F16 (IEEE half) or BC_DTYPE_Q8_0 (D / 32 blocks of
 * 34 bytes: f16 d, int8 q[32]; value = d * q). */
typedef struct bc__kv_rows {
    const uint8_t *base;
    const int32_t *blocks;
    size_t block_stride, row_stride;
    int block_shift;
    bc_dtype dtype;
} bc__kv_rows;

/* The row of position j. */
static inline const uint8_t *bc__kv_row(const bc__kv_rows *r, int j) {
    return r->base + (size_t)r->blocks[j >> r->block_shift] * r->block_stride +
           (size_t)(j & ((1 << r->block_shift) - 1)) * r->row_stride;
}

/* The run of rows of r starting at position j (j < n_keys): sets *row to
 * the row of j and returns how many positions from j on lie in the same
 * block (at most n_keys - j), their rows row_stride bytes apart. The kernels
 * walk the positions a block at a time with it. */
static inline int bc__kv_run(const bc__kv_rows *r, int j, int n_keys, const uint8_t **row) {
    const int in_block = j & ((1 << r->block_shift) - 1), left = (1 << r->block_shift) - in_block;
    *row = r->base + (size_t)r->blocks[j >> r->block_shift] * r->block_stride + (size_t)in_block * r->row_stride;
    return left < n_keys - j ? left : n_keys - j;
}

#endif /* BC_KV_ROWS_H */

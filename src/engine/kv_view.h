/*
 * kv_view.h - what the forward pass sees of the KV cache: the pool's K and V
 * blocks and every sequence's block table, as flat pointers and strides, with
 * no pool or context behind them. The context fills one at init; the pool's
 * buffers and the tables never move, so it holds for the context's life.
 *
 * K (and V) is (n_blocks, n_layer, BC_KV_BLOCK, row_bytes): a row is one
 * layer's n_embd values of one position in the cache type, head h at byte
 * h * head_bytes of it. Position p of sequence s is row p % BC_KV_BLOCK of
 * block tables[s * table_stride + p / BC_KV_BLOCK].
 */
#ifndef BC_KV_VIEW_H
#define BC_KV_VIEW_H

#include "kernels/kernels.h"

#include <stddef.h>
#include <stdint.h>

/* log2(BC_KV_BLOCK): the kernels walk a block table by shift and mask. */
#define BC__KV_BLOCK_SHIFT 4
_Static_assert(1 << BC__KV_BLOCK_SHIFT == BC_KV_BLOCK, "BC__KV_BLOCK_SHIFT must match BC_KV_BLOCK");

typedef struct bc__kv_view {
    uint8_t *k, *v;        /* (n_blocks, n_layer, BC_KV_BLOCK, row_bytes) each */
    const int32_t *tables; /* (n_seq, table_stride) block tables */
    size_t table_stride;   /* entries per sequence's table: ceil(n_ctx / BC_KV_BLOCK) */
    bc_dtype type;         /* F32, F16 or Q8_0 */
    size_t row_bytes;      /* one layer's K (or V) of one position: n_embd values of type */
    size_t head_bytes;     /* one head's part of a row: head_dim values of type */
    size_t block_bytes;    /* one block of K (or V): (n_layer, BC_KV_BLOCK, row_bytes) */
} bc__kv_view;

/* Byte offset in k (or v) of layer il's row of position pos of sequence seq
 * (a position the sequence holds a block for). */
static inline size_t bc__kv_view_row(const bc__kv_view *kv, int seq, int il, int pos) {
    const int32_t b = kv->tables[(size_t)seq * kv->table_stride + (size_t)(pos / BC_KV_BLOCK)];
    return (size_t)b * kv->block_bytes + ((size_t)il * BC_KV_BLOCK + (size_t)(pos % BC_KV_BLOCK)) * kv->row_bytes;
}

/* The rows of head h of layer il of sequence seq in pool (k or v), as
 * bc__attend reads them. */
static inline bc__kv_rows bc__kv_view_rows(const bc__kv_view *kv, const uint8_t *pool, int seq, int il, int h) {
    return (bc__kv_rows){pool + (size_t)il * BC_KV_BLOCK * kv->row_bytes + (size_t)h * kv->head_bytes,
                         kv->tables + (size_t)seq * kv->table_stride,
                         kv->block_bytes,
                         kv->row_bytes,
                         BC__KV_BLOCK_SHIFT,
                         kv->type};
}

static inline bc__kv_rows bc__kv_view_keys(const bc__kv_view *kv, int seq, int il, int h) {
    return bc__kv_view_rows(kv, kv->k, seq, il, h);
}

static inline bc__kv_rows bc__kv_view_values(const bc__kv_view *kv, int seq, int il, int h) {
    return bc__kv_view_rows(kv, kv->v, seq, il, h);
}

#endif /* BC_KV_VIEW_H */

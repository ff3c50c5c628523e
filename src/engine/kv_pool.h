/*
 * kv_pool.h - the paged KV pool (kv_pool.c): n_blocks blocks of BC_KV_BLOCK
 * positions for every layer's keys and values, allocated once. A block is
 * free, held by one or more sequences (refs), or unused but kept by the
 * prefix cache (prefix_cache.h) until it is evicted. The block tables that
 * give each sequence its blocks are in kv_seq.h.
 *
 * A block may be written only while exactly one sequence holds it and it is
 * not indexed; otherwise the writer copies it first (copy-on-write).
 */
#ifndef BC_KV_POOL_H
#define BC_KV_POOL_H

#include "base/base.h"
#include "engine/prefix_cache.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct bc__kv_pool {
    int n_blocks;
    int n_layer;
    bc_dtype type;      /* F32, F16 or Q8_0 */
    size_t row_bytes;   /* one layer's K (or V) of one position: n_embd values of type */
    size_t block_bytes; /* one block of K (or V): (n_layer, BC_KV_BLOCK, row_bytes) */
    uint8_t *k, *v;     /* (n_blocks, n_layer, BC_KV_BLOCK, row_bytes) each */
    int32_t *tokens;    /* (n_blocks, BC_KV_BLOCK) the token id each position was written with */
    int32_t *refs;      /* (n_blocks) sequences holding the block */
    int32_t *free;      /* (n_blocks) a stack of blocks neither held nor indexed */
    int n_free;
    int n_shared;         /* blocks with refs > 1 */
    bc__prefix_cache *pc; /* NULL without prefix caching */
} bc__kv_pool;

/* Row bytes of n values in a cache of type (0 for a type a cache cannot have
 * or n not a whole number of its blocks). */
BC__HIDDEN size_t bc__kv_row_bytes(bc_dtype type, int64_t n);

/* Bytes bc__kv_pool_init allocates (UINT64_MAX on overflow). */
BC__HIDDEN uint64_t bc__kv_pool_bytes(int n_blocks, int n_layer, size_t row_bytes, bool prefix_cache);

BC__HIDDEN int bc__kv_pool_init(bc__kv_pool *p, int n_blocks, int n_layer, bc_dtype type, size_t row_bytes,
                                bool prefix_cache);
BC__HIDDEN void bc__kv_pool_free(bc__kv_pool *p);

/* Blocks that bc__kv_pool_take can hand out now: free plus evictable. */
BC__HIDDEN int bc__kv_pool_available(const bc__kv_pool *p);

/* A block with refs 1, not indexed: a free one, else the least recently used
 * cached one (evicted). -1 when there is none. */
BC__HIDDEN int32_t bc__kv_pool_take(bc__kv_pool *p);

/* One more holder of block b (taking it off the LRU list if it was unused). */
BC__HIDDEN void bc__kv_pool_ref(bc__kv_pool *p, int32_t b);

/* One holder less; an unused block goes to the LRU list if indexed, else to
 * the free stack. */
BC__HIDDEN void bc__kv_pool_drop(bc__kv_pool *p, int32_t b);

/* True when a sequence holding b may write into it in place. */
static inline bool bc__kv_pool_writable(const bc__kv_pool *p, int32_t b) {
    return p->refs[b] == 1 && (p->pc == NULL || p->pc->id[b] == 0);
}

/* Copies block src's keys, values and ids into dst. */
BC__HIDDEN void bc__kv_pool_copy(bc__kv_pool *p, int32_t dst, int32_t src);

#endif /* BC_KV_POOL_H */

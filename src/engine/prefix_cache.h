/*
 * prefix_cache.h - an index of full KV blocks by the token ids from the start
 * of their sequence (prefix_cache.c), so that a later sequence starting with
 * the same ids takes the blocks instead of computing them again.
 *
 * The lookup is a chain hash, then an exact check (the block's own ids and the
 * identity of the block before it), so a hash collision can never share wrong
 * keys. Unused indexed blocks sit on an LRU list, oldest evicted first when
 * the pool (kv_pool.h) has no free block. The cache knows blocks by number
 * only; the pool holds their contents and token ids.
 */
#ifndef BC_PREFIX_CACHE_H
#define BC_PREFIX_CACHE_H

#include "base/base.h"

#include <stdint.h>

typedef struct bc__prefix_cache {
    int n_blocks;
    uint64_t *hash;   /* (n_blocks) chain hash of the block's ids and those before it */
    uint64_t *id;     /* (n_blocks) 0: not indexed; else the block's identity, never reused */
    uint64_t *parent; /* (n_blocks) identity of the block before it in its sequence, 0 for the first */
    int32_t *next;    /* (n_blocks) next block in the same hash bucket, -1 at the end */
    int32_t *buckets; /* (mask + 1) first block of each bucket, -1 if none */
    uint64_t mask;
    int32_t *lru_prev, *lru_next; /* (n_blocks) unused indexed blocks, oldest at lru_head */
    int32_t lru_head, lru_tail;
    int n_lru;
    uint64_t next_id;
    int64_t n_evicted;
} bc__prefix_cache;

/* Bytes bc__prefix_cache_init allocates. */
BC__HIDDEN uint64_t bc__prefix_cache_bytes(int n_blocks);
BC__HIDDEN int bc__prefix_cache_init(bc__prefix_cache *pc, int n_blocks);
BC__HIDDEN void bc__prefix_cache_free(bc__prefix_cache *pc);

/* Chain hash of a block with ids tokens (BC_KV_BLOCK of them) after a block
 * of hash parent_hash (0 for the first block of a sequence). */
BC__HIDDEN uint64_t bc__prefix_hash(uint64_t parent_hash, const int32_t *tokens);

/* The indexed block with this hash whose parent identity is parent_id and
 * whose ids (in pool_tokens) equal tokens; -1 if none. */
BC__HIDDEN int32_t bc__prefix_find(const bc__prefix_cache *pc, const int32_t *pool_tokens, uint64_t hash,
                                   uint64_t parent_id, const int32_t *tokens);

/* Indexes block b (held, full, not yet indexed) under hash after parent_id. */
BC__HIDDEN void bc__prefix_insert(bc__prefix_cache *pc, int32_t b, uint64_t hash, uint64_t parent_id);

/* Takes block b (indexed, held) out of the index: its holder is about to
 * write into it. */
BC__HIDDEN void bc__prefix_forget(bc__prefix_cache *pc, int32_t b);

/* Unused indexed blocks: push as the newest, remove, or evict the oldest
 * (unindexed and returned; -1 when the list is empty). */
BC__HIDDEN void bc__prefix_lru_push(bc__prefix_cache *pc, int32_t b);
BC__HIDDEN void bc__prefix_lru_remove(bc__prefix_cache *pc, int32_t b);
BC__HIDDEN int32_t bc__prefix_evict(bc__prefix_cache *pc);

#endif /* BC_PREFIX_CACHE_H */

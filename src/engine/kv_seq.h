/*
 * kv_seq.h - the block tables of a context's sequences (kv_seq.c): for each
 * sequence, the pool's blocks (kv_pool.h) that hold its positions, in order.
 * Position p of sequence s is in block blocks[s * max_blocks + p / BC_KV_BLOCK].
 *
 * The tables take blocks from the pool as a sequence grows, copy a block
 * before it is written when it may not be written in place, give blocks
 * back, take the blocks of a cached prefix, share a sequence's blocks with a
 * fork, and index full blocks in the prefix cache. How many positions a
 * sequence holds is the caller's (the context's) count: these calls take
 * positions and keep the blocks that cover them.
 */
#ifndef BC_KV_SEQ_H
#define BC_KV_SEQ_H

#include "base/base.h"
#include "engine/kv_pool.h"

#include <stdint.h>

typedef struct bc__kv_seqs {
    bc__kv_pool *pool; /* the blocks' pool; outlives the tables */
    int n_seq;
    int max_blocks;  /* per sequence: ceil(n_ctx / BC_KV_BLOCK) */
    int32_t *blocks; /* (n_seq, max_blocks) block tables */
    int *n_blocks;   /* (n_seq) blocks held: each table's used length */
    uint64_t *root;  /* (n_seq) what the first block of each sequence hangs from in the
                      * prefix cache: 0 for the base model, else a key of its LoRA
                      * adapters (with the top bit set, so never a block's identity):
                      * blocks computed under other adapters are never found */
} bc__kv_seqs;

/* Bytes bc__kv_seqs_init allocates (UINT64_MAX on overflow). */
BC__HIDDEN uint64_t bc__kv_seqs_bytes(int n_seq, int max_blocks);

/* Empty tables for n_seq sequences of up to max_blocks blocks of pool; -1
 * when out of memory (bc__kv_seqs_free then frees what was made). */
BC__HIDDEN int bc__kv_seqs_init(bc__kv_seqs *s, bc__kv_pool *pool, int n_seq, int max_blocks);
BC__HIDDEN void bc__kv_seqs_free(bc__kv_seqs *s);

/* Blocks that making positions [from, to) of seq writable takes from the
 * pool (0 when to <= from). */
BC__HIDDEN int bc__kv_seq_blocks_needed(const bc__kv_seqs *s, int seq, int from, int to);

/* Makes positions [from, to) of seq writable: new blocks past the table's
 * end, a copy of the block holding `from` if it is shared or indexed. The
 * caller has checked that the pool has bc__kv_seq_blocks_needed() blocks. */
BC__HIDDEN void bc__kv_seq_make_writable(bc__kv_seqs *s, int seq, int from, int to);

/* Records that position pos of seq (writable) was written with token: the
 * ids the prefix cache finds blocks by. */
BC__HIDDEN void bc__kv_seq_set_token(bc__kv_seqs *s, int seq, int pos, int32_t token);

/* Keeps the blocks of seq that hold positions [0, n_positions) and gives the
 * rest back to the pool, the last first (so that of a sequence's cached
 * blocks the later ones are evicted first). */
BC__HIDDEN void bc__kv_seq_keep(bc__kv_seqs *s, int seq, int n_positions);

/* Indexes in the prefix cache the blocks of seq that positions [from, to)
 * completed; a block whose twin is indexed already is swapped for it. No-op
 * without a prefix cache. */
BC__HIDDEN void bc__kv_seq_index(bc__kv_seqs *s, int seq, int from, int to);

/* Gives seq (holding no blocks) the cached blocks that hold tokens[0 .. k *
 * BC_KV_BLOCK) for the largest such k with k * BC_KV_BLOCK <= n_tokens, and
 * returns the positions they hold, k * BC_KV_BLOCK. Needs a prefix cache. */
BC__HIDDEN int bc__kv_seq_reuse(bc__kv_seqs *s, int seq, const int32_t *tokens, int n_tokens);

/* Makes dst (holding no blocks) share the blocks of src that hold its
 * positions [0, n_positions). */
BC__HIDDEN void bc__kv_seq_fork(bc__kv_seqs *s, int src, int dst, int n_positions);

#endif /* BC_KV_SEQ_H */

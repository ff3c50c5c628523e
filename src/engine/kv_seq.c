/*
 * kv_seq.c - the sequences' block tables into the KV pool: taking blocks,
 * copying-on-write and giving them back, taking a cached prefix's blocks,
 * forking, and indexing full blocks in the prefix cache. See kv_seq.h.
 */
#include "engine/kv_seq.h"

#include <stdlib.h>
#include <string.h>

uint64_t bc__kv_seqs_bytes(int n_seq, int max_blocks) {
    uint64_t bytes;
    /* a table, its used length and its root per sequence */
    if (bc__mul_u64((uint64_t)n_seq, (uint64_t)max_blocks * sizeof(int32_t) + sizeof(int) + sizeof(uint64_t), &bytes))
        return UINT64_MAX;
    return bytes;
}

int bc__kv_seqs_init(bc__kv_seqs *s, bc__kv_pool *pool, int n_seq, int max_blocks) {
    memset(s, 0, sizeof *s);
    s->pool = pool;
    s->n_seq = n_seq;
    s->max_blocks = max_blocks;
    s->blocks = malloc((size_t)n_seq * (size_t)max_blocks * sizeof *s->blocks);
    s->n_blocks = calloc((size_t)n_seq, sizeof *s->n_blocks);
    s->root = calloc((size_t)n_seq, sizeof *s->root);
    return s->blocks && s->n_blocks && s->root ? 0 : -1;
}

void bc__kv_seqs_free(bc__kv_seqs *s) {
    free(s->blocks);
    free(s->n_blocks);
    free(s->root);
    memset(s, 0, sizeof *s);
}

static int32_t *table_of(const bc__kv_seqs *s, int seq) { return s->blocks + (size_t)seq * (size_t)s->max_blocks; }

/* A new block for each block index past the table, and a copy of a held
 * block that other holders share (only the one holding `from` can be such:
 * the blocks after it were taken by this sequence). A block this sequence
 * alone holds is written in place even when the prefix cache indexed it
 * (the cache forgets it): after a truncation into it, growing back to the
 * whole context must not need a block more than the context has. */
int bc__kv_seq_blocks_needed(const bc__kv_seqs *s, int seq, int from, int to) {
    if (to <= from) return 0;
    int first = from / BC_KV_BLOCK, end = (to + BC_KV_BLOCK - 1) / BC_KV_BLOCK, held = s->n_blocks[seq];
    int need = end > held ? end - (first > held ? first : held) : 0;
    if (first < held && s->pool->refs[table_of(s, seq)[first]] > 1) need++;
    return need;
}

void bc__kv_seq_make_writable(bc__kv_seqs *s, int seq, int from, int to) {
    if (to <= from) return;
    bc__kv_pool *pool = s->pool;
    int32_t *table = table_of(s, seq);
    int first = from / BC_KV_BLOCK, end = (to + BC_KV_BLOCK - 1) / BC_KV_BLOCK;
    if (first < s->n_blocks[seq] && !bc__kv_pool_writable(pool, table[first]) && pool->refs[table[first]] == 1)
        bc__prefix_forget(pool->pc, table[first]); /* held alone: written in place */
    if (first < s->n_blocks[seq] && !bc__kv_pool_writable(pool, table[first])) {
        int32_t b = bc__kv_pool_take(pool); /* copy-on-write */
        bc__kv_pool_copy(pool, b, table[first]);
        bc__kv_pool_drop(pool, table[first]);
        table[first] = b;
    }
    while (s->n_blocks[seq] < end) table[s->n_blocks[seq]++] = bc__kv_pool_take(pool);
}

void bc__kv_seq_set_token(bc__kv_seqs *s, int seq, int pos, int32_t token) {
    int32_t b = table_of(s, seq)[pos / BC_KV_BLOCK];
    s->pool->tokens[(size_t)b * BC_KV_BLOCK + (size_t)(pos % BC_KV_BLOCK)] = token;
}

void bc__kv_seq_keep(bc__kv_seqs *s, int seq, int n_positions) {
    int32_t *table = table_of(s, seq);
    int keep = (n_positions + BC_KV_BLOCK - 1) / BC_KV_BLOCK;
    while (s->n_blocks[seq] > keep) bc__kv_pool_drop(s->pool, table[--s->n_blocks[seq]]);
}

/* In order, each block after the one before it. A block whose twin (same
 * ids after the same parent) is already indexed is swapped for the twin and
 * freed: the two hold the same keys and values, so concurrent requests with
 * one system prompt end up sharing one copy. */
void bc__kv_seq_index(bc__kv_seqs *s, int seq, int from, int to) {
    bc__kv_pool *pool = s->pool;
    bc__prefix_cache *pc = pool->pc;
    if (pc == NULL) return;
    int32_t *table = table_of(s, seq);
    for (int bi = from / BC_KV_BLOCK; bi < to / BC_KV_BLOCK; bi++) {
        int32_t b = table[bi];
        if (pc->id[b] != 0) continue; /* indexed already (reused, never written) */
        uint64_t parent_id = s->root[seq], parent_hash = s->root[seq];
        if (bi > 0) {
            int32_t prev = table[bi - 1];
            if (pc->id[prev] == 0) return; /* the chain is broken: nothing after it can be found */
            parent_id = pc->id[prev];
            parent_hash = pc->hash[prev];
        }
        const int32_t *ids = pool->tokens + (size_t)b * BC_KV_BLOCK;
        uint64_t h = bc__prefix_hash(parent_hash, ids);
        int32_t twin = bc__prefix_find(pc, pool->tokens, h, parent_id, ids);
        if (twin >= 0) {
            bc__kv_pool_ref(pool, twin);
            bc__kv_pool_drop(pool, b);
            table[bi] = twin;
        } else {
            bc__prefix_insert(pc, b, h, parent_id);
        }
    }
}

int bc__kv_seq_reuse(bc__kv_seqs *s, int seq, const int32_t *tokens, int n_tokens) {
    bc__kv_pool *pool = s->pool;
    const bc__prefix_cache *pc = pool->pc;
    int32_t *table = table_of(s, seq);
    uint64_t parent_id = s->root[seq], hash = s->root[seq];
    for (int bi = 0; (bi + 1) * BC_KV_BLOCK <= n_tokens; bi++) {
        const int32_t *ids = tokens + (size_t)bi * BC_KV_BLOCK;
        hash = bc__prefix_hash(hash, ids);
        int32_t b = bc__prefix_find(pc, pool->tokens, hash, parent_id, ids);
        if (b < 0) break;
        bc__kv_pool_ref(pool, b);
        table[s->n_blocks[seq]++] = b;
        parent_id = pc->id[b];
    }
    return s->n_blocks[seq] * BC_KV_BLOCK;
}

/* Only the blocks holding src's positions: blocks src reserved past them
 * stay its own, as decoding writes a held block past the first in place. */
void bc__kv_seq_fork(bc__kv_seqs *s, int src, int dst, int n_positions) {
    const int32_t *from = table_of(s, src);
    int32_t *to = table_of(s, dst);
    int n_blocks = (n_positions + BC_KV_BLOCK - 1) / BC_KV_BLOCK;
    for (int bi = 0; bi < n_blocks; bi++) {
        bc__kv_pool_ref(s->pool, from[bi]);
        to[bi] = from[bi];
    }
    s->n_blocks[dst] = n_blocks;
}

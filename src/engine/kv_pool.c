/*
 * kv_pool.c - the paged KV pool: blocks of BC_KV_BLOCK positions for every
 * layer's keys and values, allocated once, handed to sequences and taken
 * back, with reference counts so that sequences (and the prefix cache) can
 * share a block. See kv_pool.h.
 */
#include "engine/kv_pool.h"

#include <stdlib.h>
#include <string.h>

size_t bc__kv_row_bytes(bc_dtype type, int64_t n) {
    switch (type) {
    case BC_DTYPE_F32: return (size_t)n * 4;
    case BC_DTYPE_F16: return (size_t)n * 2;
    case BC_DTYPE_Q8_0: return n % 32 == 0 ? (size_t)(n / 32) * 34 : 0;
    default: return 0;
    }
}

uint64_t bc__kv_pool_bytes(int n_blocks, int n_layer, size_t row_bytes, bool prefix_cache) {
    uint64_t block, half, kv, meta, total;
    /* K and V blocks (each on huge pages); per block the ids of its
     * positions, refs, a free slot */
    if (bc__mul_u64((uint64_t)n_layer * BC_KV_BLOCK, row_bytes, &block) || bc__mul_u64(block, n_blocks, &half) ||
        half > SIZE_MAX / 2)
        return UINT64_MAX;
    kv = 2 * (uint64_t)bc__streamed_bytes((size_t)half);
    if (bc__mul_u64((uint64_t)n_blocks, BC_KV_BLOCK * 4 + 8, &meta) || bc__add_u64(kv, meta, &total)) return UINT64_MAX;
    if (prefix_cache && bc__add_u64(total, bc__prefix_cache_bytes(n_blocks), &total)) return UINT64_MAX;
    return total;
}

int bc__kv_pool_init(bc__kv_pool *p, int n_blocks, int n_layer, bc_dtype type, size_t row_bytes, bool prefix_cache) {
    memset(p, 0, sizeof *p);
    p->n_blocks = n_blocks;
    p->n_layer = n_layer;
    p->type = type;
    p->row_bytes = row_bytes;
    p->block_bytes = (size_t)n_layer * BC_KV_BLOCK * row_bytes;
    /* Pages of the pool are touched only as blocks are first written. On
     * huge pages: a decode step at depth reads every block of every layer,
     * each head its part of 16 rows of a block, and with 4 KiB pages that
     * walked the page tables for every page of the pool once per head. */
    p->k = bc__alloc_streamed((size_t)n_blocks * p->block_bytes);
    p->v = bc__alloc_streamed((size_t)n_blocks * p->block_bytes);
    p->tokens = malloc((size_t)n_blocks * BC_KV_BLOCK * sizeof *p->tokens);
    p->refs = calloc((size_t)n_blocks, sizeof *p->refs);
    p->free = malloc((size_t)n_blocks * sizeof *p->free);
    if (!p->k || !p->v || !p->tokens || !p->refs || !p->free) return -1;
    if (prefix_cache) {
        p->pc = calloc(1, sizeof *p->pc);
        if (p->pc == NULL || bc__prefix_cache_init(p->pc, n_blocks) != 0) return -1;
    }
    /* Low block numbers on top, so a lightly used pool stays in low pages. */
    for (int i = 0; i < n_blocks; i++) p->free[i] = n_blocks - 1 - i;
    p->n_free = n_blocks;
    return 0;
}

void bc__kv_pool_free(bc__kv_pool *p) {
    if (p->pc) bc__prefix_cache_free(p->pc);
    free(p->pc);
    free(p->k);
    free(p->v);
    free(p->tokens);
    free(p->refs);
    free(p->free);
    memset(p, 0, sizeof *p);
}

int bc__kv_pool_available(const bc__kv_pool *p) { return p->n_free + (p->pc ? p->pc->n_lru : 0); }

int32_t bc__kv_pool_take(bc__kv_pool *p) {
    int32_t b = -1;
    if (p->n_free > 0)
        b = p->free[--p->n_free];
    else if (p->pc)
        b = bc__prefix_evict(p->pc);
    if (b >= 0) p->refs[b] = 1;
    return b;
}

void bc__kv_pool_ref(bc__kv_pool *p, int32_t b) {
    if (p->refs[b] == 0 && p->pc) bc__prefix_lru_remove(p->pc, b);
    if (++p->refs[b] == 2) p->n_shared++;
}

void bc__kv_pool_drop(bc__kv_pool *p, int32_t b) {
    if (p->refs[b]-- == 2) p->n_shared--;
    if (p->refs[b] > 0) return;
    if (p->pc && p->pc->id[b] != 0)
        bc__prefix_lru_push(p->pc, b);
    else
        p->free[p->n_free++] = b;
}

void bc__kv_pool_copy(bc__kv_pool *p, int32_t dst, int32_t src) {
    memcpy(p->k + (size_t)dst * p->block_bytes, p->k + (size_t)src * p->block_bytes, p->block_bytes);
    memcpy(p->v + (size_t)dst * p->block_bytes, p->v + (size_t)src * p->block_bytes, p->block_bytes);
    memcpy(p->tokens + (size_t)dst * BC_KV_BLOCK, p->tokens + (size_t)src * BC_KV_BLOCK,
           BC_KV_BLOCK * sizeof *p->tokens);
}

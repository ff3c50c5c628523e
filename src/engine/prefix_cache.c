/*
 * prefix_cache.c - full KV blocks indexed by the token ids from the start of
 * their sequence, so that a later sequence starting with the same ids (a
 * shared system prompt, the history of a conversation) takes the blocks
 * instead of computing them again. See prefix_cache.h.
 *
 * A block's key is a chain hash: hash(parent's hash, the block's ids). A
 * lookup hashes the prompt block by block and accepts a candidate only when
 * its ids equal the prompt's and its recorded parent is the block matched
 * just before (by identity: a number given once per indexing, never reused),
 * so the accepted chain holds exactly the prompt's ids from position 0.
 */
#include "engine/prefix_cache.h"

#include <stdlib.h>
#include <string.h>

static uint64_t n_buckets_for(int n_blocks) {
    uint64_t n = 16;
    while (n < 2 * (uint64_t)n_blocks) n *= 2;
    return n;
}

uint64_t bc__prefix_cache_bytes(int n_blocks) {
    return (uint64_t)n_blocks * (3 * 8 + 3 * 4) + n_buckets_for(n_blocks) * 4;
}

int bc__prefix_cache_init(bc__prefix_cache *pc, int n_blocks) {
    memset(pc, 0, sizeof *pc);
    size_t n = (size_t)n_blocks, nb = (size_t)n_buckets_for(n_blocks);
    pc->n_blocks = n_blocks;
    pc->mask = nb - 1;
    pc->hash = calloc(n, sizeof *pc->hash);
    pc->id = calloc(n, sizeof *pc->id);
    pc->parent = calloc(n, sizeof *pc->parent);
    pc->next = malloc(n * sizeof *pc->next);
    pc->lru_prev = malloc(n * sizeof *pc->lru_prev);
    pc->lru_next = malloc(n * sizeof *pc->lru_next);
    pc->buckets = malloc(nb * sizeof *pc->buckets);
    if (!pc->hash || !pc->id || !pc->parent || !pc->next || !pc->lru_prev || !pc->lru_next || !pc->buckets) return -1;
    memset(pc->buckets, 0xff, nb * sizeof *pc->buckets);
    pc->lru_head = pc->lru_tail = -1;
    pc->next_id = 1;
    return 0;
}

void bc__prefix_cache_free(bc__prefix_cache *pc) {
    free(pc->hash);
    free(pc->id);
    free(pc->parent);
    free(pc->next);
    free(pc->lru_prev);
    free(pc->lru_next);
    free(pc->buckets);
}

/* 64-bit FNV-1a over the ids' bytes, then a splitmix64 finish so that the
 * low bits (the bucket) depend on every input bit. */
uint64_t bc__prefix_hash(uint64_t parent_hash, const int32_t *tokens) {
    uint64_t h = 0xcbf29ce484222325ull ^ parent_hash;
    for (int i = 0; i < BC_KV_BLOCK; i++) {
        uint32_t t = (uint32_t)tokens[i];
        for (int k = 0; k < 4; k++) {
            h ^= (t >> (8 * k)) & 0xff;
            h *= 0x100000001b3ull;
        }
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

int32_t bc__prefix_find(const bc__prefix_cache *pc, const int32_t *pool_tokens, uint64_t hash, uint64_t parent_id,
                        const int32_t *tokens) {
    for (int32_t b = pc->buckets[hash & pc->mask]; b >= 0; b = pc->next[b])
        if (pc->hash[b] == hash && pc->parent[b] == parent_id &&
            memcmp(pool_tokens + (size_t)b * BC_KV_BLOCK, tokens, BC_KV_BLOCK * sizeof *tokens) == 0)
            return b;
    return -1;
}

void bc__prefix_insert(bc__prefix_cache *pc, int32_t b, uint64_t hash, uint64_t parent_id) {
    pc->hash[b] = hash;
    pc->parent[b] = parent_id;
    pc->id[b] = pc->next_id++;
    int32_t *head = &pc->buckets[hash & pc->mask];
    pc->next[b] = *head;
    *head = b;
}

/* Takes b out of its bucket and clears its identity. */
static void unindex(bc__prefix_cache *pc, int32_t b) {
    int32_t *link = &pc->buckets[pc->hash[b] & pc->mask];
    while (*link != b) link = &pc->next[*link];
    *link = pc->next[b];
    pc->id[b] = 0;
}

void bc__prefix_forget(bc__prefix_cache *pc, int32_t b) { unindex(pc, b); }

void bc__prefix_lru_push(bc__prefix_cache *pc, int32_t b) {
    pc->lru_prev[b] = pc->lru_tail;
    pc->lru_next[b] = -1;
    if (pc->lru_tail >= 0)
        pc->lru_next[pc->lru_tail] = b;
    else
        pc->lru_head = b;
    pc->lru_tail = b;
    pc->n_lru++;
}

void bc__prefix_lru_remove(bc__prefix_cache *pc, int32_t b) {
    int32_t p = pc->lru_prev[b], n = pc->lru_next[b];
    if (p >= 0)
        pc->lru_next[p] = n;
    else
        pc->lru_head = n;
    if (n >= 0)
        pc->lru_prev[n] = p;
    else
        pc->lru_tail = p;
    pc->n_lru--;
}

int32_t bc__prefix_evict(bc__prefix_cache *pc) {
    int32_t b = pc->lru_head;
    if (b < 0) return -1;
    bc__prefix_lru_remove(pc, b);
    unindex(pc, b);
    pc->n_evicted++;
    return b;
}

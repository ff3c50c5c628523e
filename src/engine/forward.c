/*
 * forward.c - the Baichuan forward pass over a batch of (sequence, position,
 * token) entries. One function for every variant: RoPE or ALiBi and NormHead
 * are data prepared by the model loader.
 *
 * Per layer, for the n entries of the batch (pre-norm):
 *   xn   = rmsnorm(x) * attn_norm
 *   qkv  = xn @ W_pack^T               Q | K | V, head h at columns h*head_dim
 *   RoPE on Q and K (rotate-half)      with RoPE
 *   K, V -> the KV pool, in the block of each entry's sequence that holds
 *           its position, converted to the cache type
 *   attn = softmax(Q K^T / sqrt(head_dim) + alibi) V   causal, per head
 *   x   += attn @ o_proj^T
 *   xn   = rmsnorm(x) * ffn_norm
 *   x   += (silu(xn @ gate^T) * (xn @ up^T)) @ down^T
 * then model.norm and lm_head (times the NormHead row scales) for the entries
 * that asked for logits.
 *
 * With a profile accumulator each step is bracketed by bc__prof_begin /
 * bc__prof_end (profile.h), which add its wall time to one bc_profile_op.
 *
 * The workspace's buffers are laid out here, in one allocation: the sizes
 * bc__workspace_init allocates and those bc__workspace_bytes reports (in
 * bc_model_context_bytes) come from the one function below.
 */
#include "engine/forward.h"
#include "engine/lora_apply.h"
#include "engine/profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* The workspace                                                            */
/* ------------------------------------------------------------------------ */

/* Under AddressSanitizer each piece is followed by a poisoned gap, so that
 * running off the end of one buffer is caught as with separate allocations. */
#if defined(__SANITIZE_ADDRESS__)
#define WS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WS_ASAN 1
#endif
#endif
#ifdef WS_ASAN
#include <sanitizer/asan_interface.h>
#define WS_GAP 64
#else
#define WS_GAP                          0
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

/* A pass splits its attention over the keys' segments when it has at most
 * this many (entry, head) pairs per thread, or one entry (see attention()
 * below). */
#define SPLIT_ROWS_PER_THREAD 8

/* Hands out 64-byte aligned pieces of one allocation (of mem, or only counts
 * the bytes when mem is NULL). */
typedef struct carver {
    uint8_t *mem;
    uint64_t used;
    bool overflow;
} carver;

static void *carve(carver *c, uint64_t count, uint64_t size) {
    uint64_t bytes, span, end;
    if (bc__mul_u64(count, size, &bytes) || bc__add_u64(bytes, 63 + WS_GAP, &span) ||
        bc__add_u64(c->used, span / 64 * 64, &end)) {
        c->overflow = true;
        return NULL;
    }
    uint8_t *p = NULL;
    if (c->mem) {
        p = c->mem + c->used;
        ASAN_POISON_MEMORY_REGION(p + bytes, (size_t)(end - c->used - bytes));
    }
    c->used = end;
    return p;
}

/* Points ws's buffers into mem (or NULL) and returns the bytes they take,
 * UINT64_MAX on overflow: the one place the workspace's sizes are written. */
static uint64_t lay_out(bc__workspace *ws, const bc__hparams *hp, int n_batch, int n_threads, int n_ctx, uint8_t *mem) {
    const uint64_t nb = (uint64_t)n_batch, E = (uint64_t)hp->n_embd, F = (uint64_t)hp->n_ff;
    const uint64_t half = (uint64_t)hp->head_dim / 2, V = (uint64_t)hp->n_vocab;
    const int64_t row_max = hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd;
    carver c = {mem, 0, false};
    ws->n_batch = n_batch;
    ws->n_ctx = n_ctx;
    ws->x = carve(&c, nb * E, sizeof(float));
    ws->xn = carve(&c, nb * E, sizeof(float));
    ws->qkv = carve(&c, nb * 3 * E, sizeof(float));
    ws->qkv_split = carve(&c, nb * 3 * E, sizeof(float));
    ws->attn = carve(&c, nb * E, sizeof(float));
    ws->ff_gate = carve(&c, nb * F, sizeof(float));
    ws->ff_up = carve(&c, nb * F, sizeof(float));
    ws->rope_cos = carve(&c, nb * half, sizeof(double));
    ws->rope_sin = carve(&c, nb * half, sizeof(double));
    ws->matmul_scratch = carve(&c, bc__matmul_scratch_bytes(row_max, n_batch), 1);
    /* attention: each thread's kernel scratch (a whole number of cache
     * lines), the tiles, and the parts of a split pass */
    ws->n_threads = n_threads;
    ws->att_scratch_stride = (bc__attend_scratch_floats(BC__ATT_MAX_ROWS, hp->head_dim) + 15) / 16 * 16;
    ws->att_scratch = carve(&c, (uint64_t)n_threads * ws->att_scratch_stride, sizeof(float));
    ws->att_tiles = carve(&c, nb * 2, sizeof(int));
    ws->att_seg_base = carve(&c, nb + 1, sizeof(int));
    ws->att_split_rows =
        SPLIT_ROWS_PER_THREAD * n_threads > hp->n_head ? SPLIT_ROWS_PER_THREAD * n_threads : hp->n_head;
    const uint64_t n_seg = ((uint64_t)n_ctx + BC__ATT_SEGMENT - 1) / BC__ATT_SEGMENT;
    ws->att_parts = carve(&c, (uint64_t)ws->att_split_rows * n_seg * ((uint64_t)hp->head_dim + 2), sizeof(float));
    ws->logits = carve(&c, nb * V, sizeof(float));
    ws->logit_row = carve(&c, nb, sizeof(int));
    ws->n_logit_rows = 0;
    ws->mem = mem;
    return c.overflow ? UINT64_MAX : c.used;
}

uint64_t bc__workspace_bytes(const bc__hparams *hp, int n_batch, int n_threads, int n_ctx) {
    bc__workspace ws;
    return lay_out(&ws, hp, n_batch, n_threads, n_ctx, NULL);
}

int bc__workspace_init(bc__workspace *ws, const bc__hparams *hp, int n_batch, int n_threads, int n_ctx) {
    memset(ws, 0, sizeof *ws);
    uint64_t bytes = lay_out(ws, hp, n_batch, n_threads, n_ctx, NULL);
    /* bytes is a whole number of 64-byte pieces, as aligned_alloc wants. */
    uint8_t *mem = bytes != UINT64_MAX && bytes <= (uint64_t)SIZE_MAX ? aligned_alloc(64, (size_t)bytes) : NULL;
    if (mem == NULL) {
        memset(ws, 0, sizeof *ws);
        return -1;
    }
    lay_out(ws, hp, n_batch, n_threads, n_ctx, mem);
    return 0;
}

void bc__workspace_free(bc__workspace *ws) {
    free(ws->mem);
    memset(ws, 0, sizeof *ws);
}

/* ------------------------------------------------------------------------ */
/* Rotary position embedding                                                */
/* ------------------------------------------------------------------------ */

/* cos/sin of pos * inv_freq[i] for each entry, shared by all layers. */
static void rope_prepare(const bc_model *m, bc__workspace *ws, const bc_batch_entry *entries, int n) {
    int half = m->hp.head_dim / 2;
    for (int e = 0; e < n; e++)
        for (int i = 0; i < half; i++) {
            double angle = (double)entries[e].pos * m->rope_inv_freq[i];
            ws->rope_cos[(size_t)e * (size_t)half + (size_t)i] = cos(angle);
            ws->rope_sin[(size_t)e * (size_t)half + (size_t)i] = sin(angle);
        }
}

/* Rotate-half layout: element i pairs with element i + head_dim/2. */
static void rope_apply(float *v, int n_head, int head_dim, const double *cs, const double *sn) {
    int half = head_dim / 2;
    for (int h = 0; h < n_head; h++) {
        float *x = v + (size_t)h * (size_t)head_dim;
        for (int i = 0; i < half; i++) {
            double x0 = x[i], x1 = x[i + half];
            x[i] = (float)(x0 * cs[i] - x1 * sn[i]);
            x[i + half] = (float)(x1 * cs[i] + x0 * sn[i]);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The pass's state                                                         */
/* ------------------------------------------------------------------------ */

/* What one call of bc__forward works over. */
typedef struct pass {
    const bc_model *m;
    bc__workspace *ws;
    const bc__kv_view *kv;
    bc__pool *pool;
    unsigned matmul_flags;
    bc_profile *prof;          /* NULL: not profiling */
    const bc__lora_plan *lora; /* NULL: no entry runs under an adapter */
    const bc_batch_entry *entries;
    int n;
} pass;

/* y += the adapters' products for one slot of layer il (no-op without). */
static void lora_add(const pass *p, int il, bc__lora_slot slot, const float *x, float *y) {
    if (p->lora != NULL && bc__lora_plan_touches(p->lora, il, slot))
        bc__lora_apply(p->lora, p->pool, il, &slot, 1, x, &y);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                */
/* ------------------------------------------------------------------------ */

/* The entries attend in tiles: runs of up to BC__ATT_MAX_ROWS entries of
 * one sequence at consecutive positions (a prompt chunk's rows; a decode
 * entry alone), each tile and head one task for the pool. When a pass has
 * few (entry, head) pairs for its threads (decode of a few sequences, or of
 * one) and their keys span several segments, the work goes by segment
 * instead: a task per (entry, segment) makes every head's part of it, and a
 * second run merges each pair's parts in order: the same arithmetic either
 * way (attend.h), spread wider and read block by block. */
/* Groups the entries into tiles (ws->att_tiles); returns their number. */
static int make_tiles(bc__workspace *ws, const bc_batch_entry *entries, int n) {
    int n_tiles = 0;
    for (int e = 0; e < n;) {
        int rows = 1;
        while (e + rows < n && rows < BC__ATT_MAX_ROWS && entries[e + rows].seq == entries[e].seq &&
               entries[e + rows].pos == entries[e].pos + rows)
            rows++;
        ws->att_tiles[2 * n_tiles] = e;
        ws->att_tiles[2 * n_tiles + 1] = rows;
        n_tiles++;
        e += rows;
    }
    return n_tiles;
}

/* One layer's attention over the batch, as the workers see it. */
typedef struct attention_task {
    const bc__kv_view *kv;
    const bc_batch_entry *entries;
    const bc__workspace *ws;
    const float *alibi_slopes; /* (n_head) with ALiBi, else NULL */
    int n_embd, n_head, head_dim, layer;
    int n_tiles;
    int total_segs; /* split: the parts of all entries of one head */
} attention_task;

static bc__att_head head_of(const attention_task *t, int seq, int h) {
    return (bc__att_head){bc__kv_view_keys(t->kv, seq, t->layer, h), bc__kv_view_values(t->kv, seq, t->layer, h),
                          t->head_dim, 1.0f / sqrtf((float)t->head_dim), t->alibi_slopes ? &t->alibi_slopes[h] : NULL};
}

/* The tile of entries first .. first + rows - 1 for head h. */
static bc__att_tile tile_of(const attention_task *t, int first, int rows, int h) {
    const size_t E = (size_t)t->n_embd;
    return (bc__att_tile){t->ws->qkv + (size_t)first * 3 * E + (size_t)h * (size_t)t->head_dim, 3 * E, rows,
                          t->entries[first].pos};
}

static float *scratch_of(const attention_task *t, int ith) {
    return t->ws->att_scratch + (size_t)ith * t->ws->att_scratch_stride;
}

/* Chunk k: tile k / n_head, head k % n_head, every segment. */
static void tile_worker(void *arg, int64_t k, int ith) {
    const attention_task *t = arg;
    const int tile = (int)(k / t->n_head), h = (int)(k % t->n_head);
    const int first = t->ws->att_tiles[2 * tile], rows = t->ws->att_tiles[2 * tile + 1];
    const bc__att_tile at = tile_of(t, first, rows, h);
    const bc__att_head ah = head_of(t, t->entries[first].seq, h);
    bc__attend_tile(&at, &ah, scratch_of(t, ith),
                    t->ws->attn + (size_t)first * (size_t)t->n_embd + (size_t)h * (size_t)t->head_dim,
                    (size_t)t->n_embd);
}

static float *part_of(const attention_task *t, int h, int e, int seg) {
    const size_t i = (size_t)h * (size_t)t->total_segs + (size_t)t->ws->att_seg_base[e] + (size_t)seg;
    return t->ws->att_parts + i * ((size_t)t->head_dim + 2);
}

/* Chunk k: the (entry, segment) pair k, every head. A segment's 16 blocks
 * of a layer hold all heads' rows side by side, so one thread takes them
 * all: the pages it walks stay few and in the TLB, the rows stream. */
static void split_worker(void *arg, int64_t k, int ith) {
    const attention_task *t = arg;
    int e = 0;
    while (t->ws->att_seg_base[e + 1] <= k) e++;
    const int seg = (int)k - t->ws->att_seg_base[e];
    for (int h = 0; h < t->n_head; h++) {
        const bc__att_tile at = tile_of(t, e, 1, h);
        const bc__att_head ah = head_of(t, t->entries[e].seq, h);
        float *p = part_of(t, h, e, seg);
        bc__attend_part(&at, &ah, seg, scratch_of(t, ith), &p[0], &p[1], p + 2);
    }
}

/* Chunk k: entry k / n_head, head k % n_head: its parts merged in order. */
static void merge_worker(void *arg, int64_t k, int ith) {
    const attention_task *t = arg;
    (void)ith;
    const int e = (int)(k / t->n_head), h = (int)(k % t->n_head), D = t->head_dim;
    float *out = t->ws->attn + (size_t)e * (size_t)t->n_embd + (size_t)h * (size_t)D;
    float M = -INFINITY, L = 0.0f;
    memset(out, 0, (size_t)D * sizeof(float));
    for (int seg = 0; seg < t->ws->att_seg_base[e + 1] - t->ws->att_seg_base[e]; seg++) {
        const float *p = part_of(t, h, e, seg);
        bc__attend_merge(D, &M, &L, out, p[0], p[1], p + 2);
    }
    bc__attend_finish(D, L, out, out);
}

static void attention(const pass *p, int il, int n_tiles) {
    const bc__hparams *hp = &p->m->hp;
    bc__workspace *ws = p->ws;
    attention_task t = {p->kv, p->entries, ws, p->m->alibi_slopes, hp->n_embd, hp->n_head, hp->head_dim,
                        il,    n_tiles,    0};
    /* split when the pairs are few for the threads and some span segments */
    const int n = p->n;
    if ((int64_t)n * hp->n_head <= ws->att_split_rows) {
        ws->att_seg_base[0] = 0;
        for (int e = 0; e < n; e++)
            ws->att_seg_base[e + 1] = ws->att_seg_base[e] + p->entries[e].pos / BC__ATT_SEGMENT + 1;
        if (ws->att_seg_base[n] > n) {
            t.total_segs = ws->att_seg_base[n];
            bc__pool_run(p->pool, split_worker, &t, t.total_segs);
            bc__pool_run(p->pool, merge_worker, &t, (int64_t)n * hp->n_head);
            return;
        }
    }
    bc__pool_run(p->pool, tile_worker, &t, (int64_t)n_tiles * hp->n_head);
}

/* ------------------------------------------------------------------------ */
/* The pass                                                                 */
/* ------------------------------------------------------------------------ */

/* Q, K, V from split weights (GGUF) into the fused layout of ws->qkv. The Q
 * and K rows of a llama.cpp GGUF are in its interleaved-pair RoPE order: row
 * h*D + 2i + j holds what W_pack row h*D + j*D/2 + i holds (j = 0, 1). The
 * permutation is undone on the outputs, which costs O(n * n_embd) beside the
 * O(n * n_embd^2) products and keeps the weights where the file put them. */
static void split_qkv(const pass *p, const bc__layer *L) {
    const bc__hparams *hp = &p->m->hp;
    bc__workspace *ws = p->ws;
    const int n = p->n;
    const size_t E = (size_t)hp->n_embd, D = (size_t)hp->head_dim, half = D / 2;
    float *q = ws->qkv_split, *k = q + (size_t)n * E, *v = k + (size_t)n * E;
    const bc__weight *ws3[3] = {&L->wq, &L->wk, &L->wv};
    float *ys[3] = {q, k, v};
    bc__matmul_multi(p->pool, ws3, 3, ws->xn, n, ys, ws->matmul_scratch, p->matmul_flags);
    for (int e = 0; e < n; e++) {
        float *dst = ws->qkv + (size_t)e * 3 * E;
        const float *qe = q + (size_t)e * E, *ke = k + (size_t)e * E;
        for (size_t h = 0; h < E; h += D)
            for (size_t i = 0; i < half; i++) {
                dst[h + i] = qe[h + 2 * i];
                dst[h + half + i] = qe[h + 2 * i + 1];
                dst[E + h + i] = ke[h + 2 * i];
                dst[E + h + half + i] = ke[h + 2 * i + 1];
            }
        memcpy(dst + 2 * E, v + (size_t)e * E, E * sizeof(float));
    }
}

static void attention_block(const pass *p, const bc__layer *L, int il, int n_tiles) {
    const bc_model *m = p->m;
    const bc__hparams *hp = &m->hp;
    bc__workspace *ws = p->ws;
    const bc_batch_entry *entries = p->entries;
    const int n = p->n;
    const size_t E = (size_t)hp->n_embd;
    const int half = hp->head_dim / 2;

    double t0 = bc__prof_begin(p->prof);
    for (int e = 0; e < n; e++) bc__rmsnorm(ws->x + e * E, L->attn_norm, hp->n_embd, hp->norm_eps, ws->xn + e * E);
    bc__prof_end(p->prof, BC_PROFILE_OP_ATTN_NORM, t0);

    t0 = bc__prof_begin(p->prof);
    if (L->wqkv.rows > 0) /* W_pack (its rows may live in the repacked copy only) */
        bc__matmul(p->pool, &L->wqkv, ws->xn, n, ws->qkv, ws->matmul_scratch, p->matmul_flags);
    else
        split_qkv(p, L);
    /* B's rows are W_pack's (Q, K, V), the order ws->qkv has either way */
    lora_add(p, il, BC__LORA_W_PACK, ws->xn, ws->qkv);
    bc__prof_end(p->prof, BC_PROFILE_OP_QKV, t0);

    if (hp->pos_encoding == BC_POS_ENCODING_ROPE) {
        t0 = bc__prof_begin(p->prof);
        for (int e = 0; e < n; e++) {
            float *q = ws->qkv + (size_t)e * 3 * E, *k = q + E;
            const double *cs = ws->rope_cos + (size_t)e * (size_t)half, *sn = ws->rope_sin + (size_t)e * (size_t)half;
            rope_apply(q, hp->n_head, hp->head_dim, cs, sn);
            rope_apply(k, hp->n_head, hp->head_dim, cs, sn);
        }
        bc__prof_end(p->prof, BC_PROFILE_OP_ROPE, t0);
    }

    t0 = bc__prof_begin(p->prof);
    const bc__kv_view *kv = p->kv;
    for (int e = 0; e < n; e++) {
        const float *k = ws->qkv + (size_t)e * 3 * E + E, *v = k + E;
        const size_t off = bc__kv_view_row(kv, entries[e].seq, il, entries[e].pos);
        bc__kv_store_row(kv->type, k, kv->k + off, hp->n_embd);
        bc__kv_store_row(kv->type, v, kv->v + off, hp->n_embd);
    }
    bc__prof_end(p->prof, BC_PROFILE_OP_KV_STORE, t0);

    t0 = bc__prof_begin(p->prof);
    attention(p, il, n_tiles);
    bc__prof_end(p->prof, BC_PROFILE_OP_ATTENTION, t0);

    t0 = bc__prof_begin(p->prof);
    bc__matmul(p->pool, &L->wo, ws->attn, n, ws->xn, ws->matmul_scratch, p->matmul_flags);
    lora_add(p, il, BC__LORA_O_PROJ, ws->attn, ws->xn);
    bc__prof_end(p->prof, BC_PROFILE_OP_O_PROJ, t0);

    t0 = bc__prof_begin(p->prof);
    for (size_t i = 0; i < (size_t)n * E; i++) ws->x[i] += ws->xn[i];
    bc__prof_end(p->prof, BC_PROFILE_OP_RESIDUAL, t0);
}

static void mlp_block(const pass *p, const bc__layer *L, int il) {
    const bc__hparams *hp = &p->m->hp;
    bc__workspace *ws = p->ws;
    const int n = p->n;
    const size_t E = (size_t)hp->n_embd;
    double t0 = bc__prof_begin(p->prof);
    for (int e = 0; e < n; e++) bc__rmsnorm(ws->x + e * E, L->ffn_norm, hp->n_embd, hp->norm_eps, ws->xn + e * E);
    bc__prof_end(p->prof, BC_PROFILE_OP_FFN_NORM, t0);

    /* gate and up in one pass, silu(gate) * up applied by each thread to the
     * rows it computed (timed as gate_up) */
    t0 = bc__prof_begin(p->prof);
    const bc__weight *wgu[2] = {&L->w_gate, &L->w_up};
    float *ys[2] = {ws->ff_gate, ws->ff_up};
    if (p->lora != NULL &&
        (bc__lora_plan_touches(p->lora, il, BC__LORA_GATE) || bc__lora_plan_touches(p->lora, il, BC__LORA_UP))) {
        /* the adapters' products go in before the SwiGLU: the same
         * silu_mul on whole rows gives the fused epilogue's bits (its
         * runs start at multiples of 16 columns, as the vector loop's) */
        bc__matmul_multi(p->pool, wgu, 2, ws->xn, n, ys, ws->matmul_scratch, p->matmul_flags);
        static const bc__lora_slot slots[2] = {BC__LORA_GATE, BC__LORA_UP};
        bc__lora_apply(p->lora, p->pool, il, slots, 2, ws->xn, ys);
        for (int e = 0; e < n; e++)
            bc__silu_mul(ws->ff_gate + (size_t)e * (size_t)hp->n_ff, ws->ff_up + (size_t)e * (size_t)hp->n_ff,
                         hp->n_ff);
    } else {
        bc__matmul_multi(p->pool, wgu, 2, ws->xn, n, ys, ws->matmul_scratch, p->matmul_flags | BC__MATMUL_SILU_MUL);
    }
    bc__prof_end(p->prof, BC_PROFILE_OP_GATE_UP, t0);

    t0 = bc__prof_begin(p->prof);
    bc__matmul(p->pool, &L->w_down, ws->ff_gate, n, ws->xn, ws->matmul_scratch, p->matmul_flags);
    lora_add(p, il, BC__LORA_DOWN, ws->ff_gate, ws->xn);
    bc__prof_end(p->prof, BC_PROFILE_OP_DOWN, t0);

    t0 = bc__prof_begin(p->prof);
    for (size_t i = 0; i < (size_t)n * E; i++) ws->x[i] += ws->xn[i];
    bc__prof_end(p->prof, BC_PROFILE_OP_RESIDUAL, t0);
}

static void output_block(const pass *p) {
    const bc_model *m = p->m;
    const bc__hparams *hp = &m->hp;
    bc__workspace *ws = p->ws;
    const size_t E = (size_t)hp->n_embd, V = (size_t)hp->n_vocab;
    /* Gather the normed rows of the entries that want logits, in order. */
    double t0 = bc__prof_begin(p->prof);
    for (int e = 0; e < p->n; e++) {
        int r = ws->logit_row[e];
        if (r >= 0) bc__rmsnorm(ws->x + (size_t)e * E, m->out_norm, hp->n_embd, hp->norm_eps, ws->xn + (size_t)r * E);
    }
    bc__prof_end(p->prof, BC_PROFILE_OP_OUTPUT_NORM, t0);
    int rows = ws->n_logit_rows;
    if (rows == 0) return;

    t0 = bc__prof_begin(p->prof);
    bc__matmul(p->pool, &m->lm_head, ws->xn, rows, ws->logits, ws->matmul_scratch, p->matmul_flags);
    bc__prof_end(p->prof, BC_PROFILE_OP_LM_HEAD, t0);

    if (m->lm_head_scale) {
        t0 = bc__prof_begin(p->prof);
        for (int r = 0; r < rows; r++)
            for (size_t v = 0; v < V; v++) ws->logits[(size_t)r * V + v] *= m->lm_head_scale[v];
        bc__prof_end(p->prof, BC_PROFILE_OP_NORM_HEAD, t0);
    }
}

void bc__forward(const bc_model *model, bc__workspace *ws, const bc__kv_view *kv, bc__pool *pool, unsigned matmul_flags,
                 bc_profile *prof, const bc__lora_plan *lora, const bc_batch_entry *entries, int n) {
    const pass p = {model,   ws, kv, pool, matmul_flags, prof, lora != NULL && lora->n_adapters > 0 ? lora : NULL,
                    entries, n};
    const bc__hparams *hp = &model->hp;
    const size_t E = (size_t)hp->n_embd;

    ws->n_logit_rows = 0;
    for (int e = 0; e < n; e++) ws->logit_row[e] = entries[e].logits ? ws->n_logit_rows++ : -1;

    double t0 = bc__prof_begin(prof);
    for (int e = 0; e < n; e++) bc__weight_row_f32(&model->tok_embd, entries[e].token, ws->x + (size_t)e * E);
    bc__prof_end(prof, BC_PROFILE_OP_EMBEDDING, t0);

    if (hp->pos_encoding == BC_POS_ENCODING_ROPE) {
        t0 = bc__prof_begin(prof);
        rope_prepare(model, ws, entries, n);
        bc__prof_end(prof, BC_PROFILE_OP_ROPE, t0);
    }

    const int n_tiles = make_tiles(ws, entries, n);
    for (int il = 0; il < hp->n_layer; il++) {
        attention_block(&p, &model->layers[il], il, n_tiles);
        mlp_block(&p, &model->layers[il], il);
    }
    output_block(&p);
}

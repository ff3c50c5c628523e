/*
 * context.c - a context: one thread's use of a model. It owns the KV pool
 * (kv_pool.h), the sequences' block tables into it (kv_seq.h), the forward
 * pass's workspace (forward.h), the thread pool and the profile. This file
 * holds its life cycle and exact size, the checks a batch must pass before
 * the pass runs, the public sequence calls (positions counted here, blocks
 * in kv_seq.c), and the per-op profile's figures.
 */
#include "engine/forward.h"
#include "engine/kv_pool.h"
#include "engine/kv_seq.h"
#include "engine/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct bc_context {
    const bc_model *model;
    int n_ctx;   /* most positions of one sequence */
    int n_seq;   /* sequences */
    int n_batch; /* most entries per decode */
    bc__pool *pool;
    bc__err err; /* the last failed call's message */

    int *seq_len;         /* (n_seq) cached positions per sequence */
    int *seq_next;        /* (n_seq) decode's running position per sequence */
    uint8_t *seq_touched; /* (n_seq) scratch of decode: sequence has entries in the batch */

    /* The KV cache: a pool of blocks (keys after RoPE), a block table per
     * sequence into it, and the view of both that the pass reads. */
    bc__kv_pool kv;
    bc__kv_seqs seqs;
    bc__kv_view kv_view;

    bc__workspace ws;      /* the pass's scratch and the last decode's logits */
    int n_entries;         /* entries of the last successful decode */
    unsigned matmul_flags; /* BC__MATMUL_* from the params */

    bool profiling;  /* bc_context_params.profile */
    bc_profile prof; /* summed since init or the last reset; OTHER filled on reading */

    /* LoRA adapters (lora_apply.h): each sequence's set, the sets of the
     * entries of a decode, the plan's scratch (sized for adapters of rank up
     * to lora_rank_cap, grown by bc_context_seq_set_loras, never by a
     * decode), and every distinct set of adapter ids sequences have run
     * under: set i's prefix-cache root is KEY_BIT | (i + 1). */
    bc__lora_set *seq_loras;         /* (n_seq) */
    const bc__lora_set **entry_sets; /* (n_batch) */
    void *lora_mem;
    int lora_rank_cap;
    bc__lora_plan lora_plan;
    uint64_t (*lora_keys)[BC_MAX_SEQ_LORAS + 1]; /* (n_lora_keys) n, then the ids */
    int n_lora_keys, cap_lora_keys;
};

/* Set in every LoRA root key: block identities count up from 1 and never get
 * there, so a root is never mistaken for a block. */
#define KEY_BIT (1ull << 63)

bc_context_params bc_context_default_params(void) {
    bc_context_params p;
    p.n_ctx = 0;
    p.n_seq = 1;
    p.n_kv = 0;
    p.cache_type = BC_DTYPE_F16;
    p.prefix_cache = true;
    p.n_batch = 512;
    p.n_threads = 0;
    p.bf16_activations = false;
    p.profile = false;
    return p;
}

bool bc_cache_type_from_name(const char *name, bc_dtype *out) {
    static const bc_dtype types[] = {BC_DTYPE_F32, BC_DTYPE_F16, BC_DTYPE_Q8_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(name, bc_dtype_name(types[i])) == 0) {
            *out = types[i];
            return true;
        }
    return false;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* The params with their defaults filled in, or a message in err. */
static int resolve_params(const bc__hparams *hp, bc_context_params *p, bc__err *err) {
    if (p->n_ctx == 0) p->n_ctx = hp->n_ctx_train;
    if (p->n_threads == 0) p->n_threads = default_threads();
    if (p->n_ctx < 1 || p->n_ctx > (1 << 24) || p->n_seq < 1 || p->n_seq > 4096 || p->n_batch < 1 ||
        p->n_batch > (1 << 20) || p->n_threads < 1 || p->n_threads > 1024 || p->n_kv < 0 || p->n_kv > (1 << 28))
        return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT,
                          "invalid context parameters: n_ctx %d (1..16777216), n_seq %d (1..4096), n_kv %d "
                          "(0..268435456), n_batch %d (1..1048576), n_threads %d (1..1024)",
                          p->n_ctx, p->n_seq, p->n_kv, p->n_batch, p->n_threads);
    if (p->n_kv == 0) {
        int64_t all = (int64_t)(p->n_ctx + BC_KV_BLOCK - 1) / BC_KV_BLOCK * BC_KV_BLOCK * p->n_seq;
        if (all > (1 << 28))
            return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT,
                              "n_ctx %d x n_seq %d positions is too large a KV pool; give n_kv", p->n_ctx, p->n_seq);
        p->n_kv = (int)all;
    }
    if (bc__kv_row_bytes(p->cache_type, hp->n_embd) == 0 || (p->cache_type == BC_DTYPE_Q8_0 && hp->head_dim % 32 != 0))
        return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT,
                          "KV cache type %s is not available for this model (cache types: f32, f16, and q8_0 "
                          "when head_dim is a multiple of 32; head_dim is %d)",
                          bc_dtype_name(p->cache_type), hp->head_dim);
    return 0;
}

/* Sizes of everything a context allocates, in bytes: each part's size comes
 * from the module that allocates it. */
typedef struct context_sizes {
    int n_blocks;
    int max_seq_blocks;
    uint64_t kv_bytes;        /* the pool with its metadata and prefix index */
    uint64_t seq_bytes;       /* block tables and per-sequence counters */
    uint64_t workspace_bytes; /* the pass's scratch and logits */
    uint64_t total_bytes;
} context_sizes;

static int sizes_of(const bc__hparams *hp, const bc_context_params *p, context_sizes *s) {
    s->n_blocks = (p->n_kv + BC_KV_BLOCK - 1) / BC_KV_BLOCK;
    s->max_seq_blocks = (p->n_ctx + BC_KV_BLOCK - 1) / BC_KV_BLOCK;
    s->kv_bytes =
        bc__kv_pool_bytes(s->n_blocks, hp->n_layer, bc__kv_row_bytes(p->cache_type, hp->n_embd), p->prefix_cache);
    s->workspace_bytes = bc__workspace_bytes(hp, p->n_batch, p->n_threads, p->n_ctx);
    const uint64_t tables = bc__kv_seqs_bytes(p->n_seq, s->max_seq_blocks);
    /* seq_len, seq_next and seq_touched */
    const uint64_t counters = (uint64_t)p->n_seq * (2 * sizeof(int) + sizeof(uint8_t));
    uint64_t total;
    if (s->kv_bytes == UINT64_MAX || s->workspace_bytes == UINT64_MAX || tables == UINT64_MAX ||
        bc__add_u64(tables, counters, &s->seq_bytes) || bc__add_u64(s->kv_bytes, s->seq_bytes, &total) ||
        bc__add_u64(total, s->workspace_bytes, &total))
        return -1;
    s->total_bytes = total;
    return 0;
}

uint64_t bc_model_context_bytes(const bc_model *model, bc_context_params params) {
    bc__err err = {BC_STATUS_OK, ""};
    context_sizes s;
    if (resolve_params(&model->hp, &params, &err) != 0 || sizes_of(&model->hp, &params, &s) != 0) return UINT64_MAX;
    return s.total_bytes;
}

uint64_t bc_model_kv_bytes_per_position(const bc_model *model, bc_dtype cache_type) {
    return 2ull * (uint64_t)model->hp.n_layer * bc__kv_row_bytes(cache_type, model->hp.n_embd);
}

bc_status bc_context_init(const bc_model *model, bc_context_params params, bc_context **out, char *err_buf,
                          size_t err_size) {
    bc__err err = {BC_STATUS_OK, ""};
    *out = NULL;
    const bc__hparams *hp = &model->hp;
    context_sizes sz;
    if (resolve_params(hp, &params, &err) != 0) {
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    if (sizes_of(hp, &params, &sz) != 0 || sz.total_bytes > (uint64_t)SIZE_MAX / 2) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT, "context of n_kv %d, n_seq %d is too large to address", params.n_kv,
                   params.n_seq);
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }

    bc_context *c = calloc(1, sizeof *c);
    if (c == NULL) goto oom;
    c->model = model;
    c->n_ctx = params.n_ctx;
    c->n_seq = params.n_seq;
    c->n_batch = params.n_batch;
    c->seq_len = calloc((size_t)c->n_seq, sizeof *c->seq_len);
    c->seq_next = calloc((size_t)c->n_seq, sizeof *c->seq_next);
    c->seq_touched = calloc((size_t)c->n_seq, 1);
    c->seq_loras = calloc((size_t)c->n_seq, sizeof *c->seq_loras);
    c->entry_sets = calloc((size_t)c->n_batch, sizeof *c->entry_sets);
    if (bc__kv_pool_init(&c->kv, sz.n_blocks, hp->n_layer, params.cache_type,
                         bc__kv_row_bytes(params.cache_type, hp->n_embd), params.prefix_cache) != 0 ||
        bc__kv_seqs_init(&c->seqs, &c->kv, c->n_seq, sz.max_seq_blocks) != 0 ||
        bc__workspace_init(&c->ws, hp, params.n_batch, params.n_threads, params.n_ctx) != 0)
        goto oom;
    c->kv_view = (bc__kv_view){.k = c->kv.k,
                               .v = c->kv.v,
                               .tables = c->seqs.blocks,
                               .table_stride = (size_t)c->seqs.max_blocks,
                               .type = c->kv.type,
                               .row_bytes = c->kv.row_bytes,
                               .head_bytes = bc__kv_row_bytes(c->kv.type, hp->head_dim),
                               .block_bytes = c->kv.block_bytes};
    c->matmul_flags = params.bf16_activations ? BC__MATMUL_BF16_ACT : 0;
    c->profiling = params.profile;
    c->pool = bc__pool_create(params.n_threads);
    if (!c->seq_len || !c->seq_next || !c->seq_touched || !c->pool || !c->seq_loras || !c->entry_sets) goto oom;
    *out = c;
    return BC_STATUS_OK;
oom:
    bc_context_free(c);
    bc__errorf(&err, BC_STATUS_ERROR_MEMORY,
               "out of memory allocating a context of %.1f MiB (n_kv %d, n_seq %d, n_batch %d)",
               (double)sz.total_bytes / (1 << 20), params.n_kv, params.n_seq, params.n_batch);
    bc__err_copy(&err, err_buf, err_size);
    return err.status;
}

void bc_context_free(bc_context *c) {
    if (c == NULL) return;
    bc__pool_free(c->pool);
    free(c->seq_len);
    free(c->seq_next);
    free(c->seq_touched);
    free(c->seq_loras);
    free(c->entry_sets);
    free(c->lora_mem);
    free(c->lora_keys);
    bc__kv_seqs_free(&c->seqs);
    bc__kv_pool_free(&c->kv);
    bc__workspace_free(&c->ws);
    free(c);
}

const char *bc_context_error(const bc_context *ctx) { return ctx->err.msg; }

static bc_status fail(bc_context *ctx, bc_status status, const char *fmt, ...) BC__PRINTF(3, 4);
static bc_status fail(bc_context *ctx, bc_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ctx->err.status = status;
    vsnprintf(ctx->err.msg, sizeof ctx->err.msg, fmt, ap);
    va_end(ap);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

bc_status bc_context_decode(bc_context *ctx, const bc_batch_entry *entries, int n) {
    bc_profile *prof = ctx->profiling ? &ctx->prof : NULL;
    double t0 = bc__prof_begin(prof);
    ctx->err.status = BC_STATUS_OK;
    ctx->err.msg[0] = '\0';
    ctx->n_entries = 0;
    if (entries == NULL || n < 1 || n > ctx->n_batch)
        return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "batch of %d entries (must be 1..%d)", n, ctx->n_batch);
    const bc__hparams *hp = &ctx->model->hp;
    for (int i = 0; i < n; i++) {
        const bc_batch_entry *e = &entries[i];
        if (e->seq < 0 || e->seq >= ctx->n_seq)
            return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "entry %d: sequence %d out of range [0, %d)", i, e->seq,
                        ctx->n_seq);
        ctx->seq_next[e->seq] = ctx->seq_len[e->seq];
    }
    for (int i = 0; i < n; i++) {
        const bc_batch_entry *e = &entries[i];
        if (e->token < 0 || e->token >= hp->n_vocab)
            return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "entry %d: token %d out of range [0, %d)", i, e->token,
                        hp->n_vocab);
        int expect = ctx->seq_next[e->seq];
        if (e->pos != expect)
            return fail(ctx, BC_STATUS_ERROR_ARGUMENT,
                        "entry %d: sequence %d continues at position %d, but the entry has position %d", i, e->seq,
                        expect, e->pos);
        if (e->pos >= ctx->n_ctx)
            return fail(ctx, BC_STATUS_ERROR_CONTEXT_FULL,
                        "entry %d: position %d of sequence %d is past the context size %d", i, e->pos, e->seq,
                        ctx->n_ctx);
        ctx->seq_next[e->seq] = expect + 1;
    }
    /* The blocks the batch takes, all or none. */
    int need = 0;
    for (int i = 0; i < n; i++) {
        int s = entries[i].seq;
        if (ctx->seq_touched[s]) continue;
        ctx->seq_touched[s] = 1;
        need += bc__kv_seq_blocks_needed(&ctx->seqs, s, ctx->seq_len[s], ctx->seq_next[s]);
    }
    int have = bc__kv_pool_available(&ctx->kv);
    if (need > have) {
        for (int i = 0; i < n; i++) ctx->seq_touched[entries[i].seq] = 0;
        return fail(ctx, BC_STATUS_ERROR_KV_FULL,
                    "the KV pool is full: this batch needs %d more blocks of %d positions and %d are free "
                    "(%d blocks in all)",
                    need, BC_KV_BLOCK, have, ctx->kv.n_blocks);
    }
    for (int i = 0; i < n; i++) {
        int s = entries[i].seq;
        if (!ctx->seq_touched[s]) continue;
        bc__kv_seq_make_writable(&ctx->seqs, s, ctx->seq_len[s], ctx->seq_next[s]);
    }
    for (int i = 0; i < n; i++) bc__kv_seq_set_token(&ctx->seqs, entries[i].seq, entries[i].pos, entries[i].token);

    const bc__lora_plan *lora = NULL;
    if (ctx->lora_mem != NULL) {
        bool any = false;
        for (int i = 0; i < n; i++) {
            const bc__lora_set *set = &ctx->seq_loras[entries[i].seq];
            ctx->entry_sets[i] = set->n > 0 ? set : NULL;
            any |= set->n > 0;
        }
        if (any) {
            bc__lora_plan_make(&ctx->lora_plan, ctx->lora_mem, ctx->n_batch, ctx->lora_rank_cap, ctx->entry_sets, n);
            lora = &ctx->lora_plan;
        }
    }
    bc__forward(ctx->model, &ctx->ws, &ctx->kv_view, ctx->pool, ctx->matmul_flags, prof, lora, entries, n);

    for (int i = 0; i < n; i++) {
        int s = entries[i].seq;
        if (!ctx->seq_touched[s]) continue;
        ctx->seq_touched[s] = 0;
        bc__kv_seq_index(&ctx->seqs, s, ctx->seq_len[s], ctx->seq_next[s]);
        ctx->seq_len[s] = ctx->seq_next[s];
    }
    ctx->n_entries = n;
    if (prof) {
        prof->total_seconds += bc__prof_now() - t0;
        prof->n_decodes++;
        prof->n_tokens += n;
    }
    return BC_STATUS_OK;
}

const float *bc_context_logits(const bc_context *ctx, int i) {
    if (i < 0 || i >= ctx->n_entries || ctx->ws.logit_row[i] < 0) return NULL;
    return ctx->ws.logits + (size_t)ctx->ws.logit_row[i] * (size_t)ctx->model->hp.n_vocab;
}

/* ------------------------------------------------------------------------ */
/* Sequences                                                                */
/* ------------------------------------------------------------------------ */

int bc_context_seq_len(const bc_context *ctx, int seq) { return seq >= 0 && seq < ctx->n_seq ? ctx->seq_len[seq] : 0; }

bc_status bc_context_seq_truncate(bc_context *ctx, int seq, int pos) {
    if (seq < 0 || seq >= ctx->n_seq || pos < 0)
        return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "truncate: sequence %d / position %d out of range", seq, pos);
    if (pos < ctx->seq_len[seq]) ctx->seq_len[seq] = pos;
    bc__kv_seq_keep(&ctx->seqs, seq, ctx->seq_len[seq]);
    return BC_STATUS_OK;
}

int bc_context_seq_reuse(bc_context *ctx, int seq, const int32_t *tokens, int n_tokens, int max_reuse) {
    if (ctx->kv.pc == NULL || seq < 0 || seq >= ctx->n_seq || ctx->seqs.n_blocks[seq] != 0 || tokens == NULL) return 0;
    if (n_tokens > ctx->n_ctx) n_tokens = ctx->n_ctx;
    if (max_reuse > n_tokens) max_reuse = n_tokens;
    if (max_reuse <= 0) return 0;
    int got = bc__kv_seq_reuse(&ctx->seqs, seq, tokens, n_tokens);
    ctx->seq_len[seq] = got < max_reuse ? got : max_reuse;
    bc__kv_seq_keep(&ctx->seqs, seq, ctx->seq_len[seq]);
    return ctx->seq_len[seq];
}

bc_status bc_context_seq_fork(bc_context *ctx, int src, int dst) {
    if (src < 0 || src >= ctx->n_seq || dst < 0 || dst >= ctx->n_seq || src == dst)
        return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "fork: sequences %d -> %d out of range (%d sequences)", src, dst,
                    ctx->n_seq);
    if (ctx->seqs.n_blocks[dst] != 0 || ctx->seq_len[dst] != 0)
        return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "fork: sequence %d is not empty (%d positions)", dst,
                    ctx->seq_len[dst]);
    bc__kv_seq_fork(&ctx->seqs, src, dst, ctx->seq_len[src]);
    ctx->seq_len[dst] = ctx->seq_len[src];
    ctx->seq_loras[dst] = ctx->seq_loras[src];
    ctx->seqs.root[dst] = ctx->seqs.root[src];
    return BC_STATUS_OK;
}

/* The prefix-cache root of a set of adapters: its index among the distinct
 * sets of ids this context has seen (adapter ids are never reused, so a key
 * never comes to mean other adapters). 0 for none; UINT64_MAX when out of
 * memory. */
static uint64_t lora_key(bc_context *ctx, const bc_lora *const *loras, int n) {
    if (n == 0) return 0;
    uint64_t want[BC_MAX_SEQ_LORAS + 1] = {(uint64_t)n};
    for (int j = 0; j < n; j++) {
        bc_lora_info info;
        bc_lora_get_info(loras[j], &info);
        want[j + 1] = info.id;
    }
    for (int i = 0; i < ctx->n_lora_keys; i++)
        if (memcmp(ctx->lora_keys[i], want, sizeof want) == 0) return KEY_BIT | (uint64_t)(i + 1);
    if (ctx->n_lora_keys == ctx->cap_lora_keys) {
        int cap = ctx->cap_lora_keys ? 2 * ctx->cap_lora_keys : 16;
        void *p = realloc(ctx->lora_keys, (size_t)cap * sizeof *ctx->lora_keys);
        if (p == NULL) return UINT64_MAX;
        ctx->lora_keys = p;
        ctx->cap_lora_keys = cap;
    }
    memcpy(ctx->lora_keys[ctx->n_lora_keys], want, sizeof want);
    return KEY_BIT | (uint64_t)++ctx->n_lora_keys;
}

bc_status bc_context_seq_set_loras(bc_context *ctx, int seq, const bc_lora *const *loras, int n_loras) {
    if (seq < 0 || seq >= ctx->n_seq || n_loras < 0 || n_loras > BC_MAX_SEQ_LORAS || (n_loras > 0 && loras == NULL))
        return fail(ctx, BC_STATUS_ERROR_ARGUMENT,
                    "set_loras: sequence %d / %d adapters out of range (%d sequences, %d adapters)", seq, n_loras,
                    ctx->n_seq, BC_MAX_SEQ_LORAS);
    if (ctx->seq_len[seq] != 0)
        return fail(ctx, BC_STATUS_ERROR_ARGUMENT,
                    "set_loras: sequence %d holds %d positions; its adapters change only while it is empty", seq,
                    ctx->seq_len[seq]);
    int max_rank = 0;
    for (int j = 0; j < n_loras; j++) {
        if (loras[j] == NULL || loras[j]->model != ctx->model)
            return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "set_loras: adapter %d is %s", j,
                        loras[j] == NULL ? "NULL" : "for another model");
        if (loras[j]->rank > max_rank) max_rank = loras[j]->rank;
    }
    if (max_rank > ctx->lora_rank_cap || (n_loras > 0 && ctx->lora_mem == NULL)) {
        int cap = max_rank > ctx->lora_rank_cap ? max_rank : ctx->lora_rank_cap;
        uint64_t bytes = bc__lora_plan_bytes(ctx->n_batch, cap);
        void *mem = bytes <= SIZE_MAX ? malloc((size_t)bytes) : NULL;
        if (mem == NULL)
            return fail(ctx, BC_STATUS_ERROR_MEMORY, "set_loras: out of memory for %.1f MiB of LoRA scratch",
                        (double)bytes / (1 << 20));
        free(ctx->lora_mem);
        ctx->lora_mem = mem;
        ctx->lora_rank_cap = cap;
    }
    uint64_t key = lora_key(ctx, loras, n_loras);
    if (key == UINT64_MAX) return fail(ctx, BC_STATUS_ERROR_MEMORY, "set_loras: out of memory");
    bc__lora_set *set = &ctx->seq_loras[seq];
    set->n = n_loras;
    for (int j = 0; j < n_loras; j++) set->loras[j] = loras[j];
    ctx->seqs.root[seq] = key;
    return BC_STATUS_OK;
}

bc_status bc_context_seq_reserve(bc_context *ctx, int seq, int n_positions) {
    if (seq < 0 || seq >= ctx->n_seq || n_positions < 0)
        return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "reserve: sequence %d / %d positions out of range", seq,
                    n_positions);
    int from = ctx->seq_len[seq];
    if ((int64_t)from + n_positions > ctx->n_ctx)
        return fail(ctx, BC_STATUS_ERROR_CONTEXT_FULL,
                    "reserve: sequence %d holds %d positions; %d more pass the context size %d", seq, from, n_positions,
                    ctx->n_ctx);
    int need = bc__kv_seq_blocks_needed(&ctx->seqs, seq, from, from + n_positions),
        have = bc__kv_pool_available(&ctx->kv);
    if (need > have)
        return fail(ctx, BC_STATUS_ERROR_KV_FULL,
                    "the KV pool is full: sequence %d needs %d more blocks of %d positions and %d are free", seq, need,
                    BC_KV_BLOCK, have);
    bc__kv_seq_make_writable(&ctx->seqs, seq, from, from + n_positions);
    return BC_STATUS_OK;
}

int bc_context_seq_blocks_needed(const bc_context *ctx, int seq, int n_positions) {
    if (seq < 0 || seq >= ctx->n_seq || n_positions <= 0) return 0;
    int from = ctx->seq_len[seq];
    int64_t to = (int64_t)from + n_positions;
    return bc__kv_seq_blocks_needed(&ctx->seqs, seq, from, to > ctx->n_ctx ? ctx->n_ctx : (int)to);
}

void bc_context_kv_stats(const bc_context *ctx, bc_kv_stats *out) {
    const bc__kv_pool *p = &ctx->kv;
    memset(out, 0, sizeof *out);
    out->n_blocks = p->n_blocks;
    out->block_size = BC_KV_BLOCK;
    out->n_free = bc__kv_pool_available(p);
    out->n_cached = p->pc ? p->pc->n_lru : 0;
    out->n_shared = p->n_shared;
    out->bytes = 2ull * (uint64_t)p->n_blocks * p->block_bytes;
    out->n_evicted = p->pc ? p->pc->n_evicted : 0;
    out->cache_type = p->type;
    out->prefix_cache = p->pc != NULL;
}

int bc_context_n_ctx(const bc_context *ctx) { return ctx->n_ctx; }
int bc_context_n_kv(const bc_context *ctx) { return ctx->kv.n_blocks * BC_KV_BLOCK; }
int bc_context_n_seq(const bc_context *ctx) { return ctx->n_seq; }

typedef struct parallel_job {
    void (*fn)(void *arg, int i);
    void *arg;
} parallel_job;

static void parallel_chunk(void *p, int64_t i, int ith) {
    (void)ith;
    const parallel_job *j = p;
    j->fn(j->arg, (int)i);
}

void bc_context_parallel_for(bc_context *ctx, void (*fn)(void *arg, int i), void *arg, int n) {
    if (n <= 0) return;
    parallel_job j = {fn, arg};
    if (n == 1)
        fn(arg, 0);
    else
        bc__pool_run(ctx->pool, parallel_chunk, &j, n);
}
int bc_context_n_batch(const bc_context *ctx) { return ctx->n_batch; }
int bc_context_n_threads(const bc_context *ctx) { return bc__pool_size(ctx->pool); }

const char *bc_profile_op_name(bc_profile_op op) {
    static const char *const names[BC_PROFILE_OP_COUNT] = {
        [BC_PROFILE_OP_EMBEDDING] = "embedding",
        [BC_PROFILE_OP_ATTN_NORM] = "attn_norm",
        [BC_PROFILE_OP_QKV] = "qkv",
        [BC_PROFILE_OP_ROPE] = "rope",
        [BC_PROFILE_OP_KV_STORE] = "kv_store",
        [BC_PROFILE_OP_ATTENTION] = "attention",
        [BC_PROFILE_OP_O_PROJ] = "o_proj",
        [BC_PROFILE_OP_RESIDUAL] = "residual",
        [BC_PROFILE_OP_FFN_NORM] = "ffn_norm",
        [BC_PROFILE_OP_GATE_UP] = "gate_up",
        [BC_PROFILE_OP_DOWN] = "down",
        [BC_PROFILE_OP_OUTPUT_NORM] = "output_norm",
        [BC_PROFILE_OP_LM_HEAD] = "lm_head",
        [BC_PROFILE_OP_NORM_HEAD] = "norm_head",
        [BC_PROFILE_OP_OTHER] = "other",
    };
    return (unsigned)op < BC_PROFILE_OP_COUNT ? names[op] : "?";
}

bc_status bc_context_profile(const bc_context *ctx, bc_profile *out) {
    memset(out, 0, sizeof *out);
    if (!ctx->profiling) return BC_STATUS_ERROR_ARGUMENT;
    *out = ctx->prof;
    double steps = 0.0;
    for (int k = 0; k < BC_PROFILE_OP_COUNT; k++)
        if (k != BC_PROFILE_OP_OTHER) steps += out->op_seconds[k];
    /* Not clamped at 0: a negative rest would show steps counted twice. */
    out->op_seconds[BC_PROFILE_OP_OTHER] = out->total_seconds - steps;
    return BC_STATUS_OK;
}

void bc_context_profile_reset(bc_context *ctx) { memset(&ctx->prof, 0, sizeof ctx->prof); }

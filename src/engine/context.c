/*
 * context.c - context lifecycle; the checks a batch must pass before the
 * forward pass runs; the public sequence calls (positions counted here, the
 * blocks that hold them in kv_seq.c); and the per-op profile's figures.
 */
#include "engine/context.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

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

/* Sizes of everything a context allocates, in bytes. */
typedef struct context_sizes {
    int n_blocks;
    int max_seq_blocks;
    uint64_t kv_bytes;      /* the pool with its metadata */
    uint64_t table_bytes;   /* block tables and per-sequence counters */
    uint64_t scratch_bytes; /* all per-batch and per-thread scratch */
    uint64_t total_bytes;
} context_sizes;

static int sizes_of(const bc__hparams *hp, const bc_context_params *p, context_sizes *s) {
    s->n_blocks = (p->n_kv + BC_KV_BLOCK - 1) / BC_KV_BLOCK;
    s->max_seq_blocks = (p->n_ctx + BC_KV_BLOCK - 1) / BC_KV_BLOCK;
    s->kv_bytes =
        bc__kv_pool_bytes(s->n_blocks, hp->n_layer, bc__kv_row_bytes(p->cache_type, hp->n_embd), p->prefix_cache);
    uint64_t nb = (uint64_t)p->n_batch;
    uint64_t per_entry = 4ull * (uint64_t)hp->n_embd * 4   /* x, xn, attn + slack */
                         + 6ull * (uint64_t)hp->n_embd * 4 /* qkv, qkv_split */
                         + 2ull * (uint64_t)hp->n_ff * 4   /* gate, up */
                         + (uint64_t)hp->head_dim * 8      /* rope cos, sin */
                         + (uint64_t)hp->n_vocab * 4 + 4   /* logits, logit_row */
                         + (uint64_t)(hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd) * 5 / 4 +
                         1; /* 8-bit activations */
    uint64_t per_thread = (uint64_t)p->n_ctx * 4;
    uint64_t scratch, threads, tables, total;
    if (s->kv_bytes == UINT64_MAX || bc__mul_u64(nb, per_entry, &scratch) ||
        bc__mul_u64((uint64_t)p->n_threads, per_thread, &threads) || bc__add_u64(scratch, threads, &scratch) ||
        bc__mul_u64((uint64_t)p->n_seq, (uint64_t)s->max_seq_blocks * 4 + 16, &tables) ||
        bc__add_u64(s->kv_bytes, scratch, &total) || bc__add_u64(total, tables, &total))
        return -1;
    s->table_bytes = tables;
    s->scratch_bytes = scratch;
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
    size_t nb = (size_t)params.n_batch, nt = (size_t)params.n_threads;
    size_t E = (size_t)hp->n_embd, F = (size_t)hp->n_ff, half = (size_t)hp->head_dim / 2;
    size_t row_max = F > E ? F : E;
    c->seq_len = calloc((size_t)c->n_seq, sizeof *c->seq_len);
    c->seq_next = calloc((size_t)c->n_seq, sizeof *c->seq_next);
    c->seq_touched = calloc((size_t)c->n_seq, 1);
    if (bc__kv_pool_init(&c->kv, sz.n_blocks, hp->n_layer, params.cache_type,
                         bc__kv_row_bytes(params.cache_type, hp->n_embd), params.prefix_cache) != 0 ||
        bc__kv_seqs_init(&c->seqs, &c->kv, c->n_seq, sz.max_seq_blocks) != 0)
        goto oom;
    c->x = malloc(nb * E * sizeof(float));
    c->xn = malloc(nb * E * sizeof(float));
    c->qkv = malloc(nb * 3 * E * sizeof(float));
    c->qkv_split = malloc(nb * 3 * E * sizeof(float));
    c->attn = malloc(nb * E * sizeof(float));
    c->ff_gate = malloc(nb * F * sizeof(float));
    c->ff_up = malloc(nb * F * sizeof(float));
    c->rope_cos = malloc((nb * half + 1) * sizeof(double));
    c->rope_sin = malloc((nb * half + 1) * sizeof(double));
    c->logits = malloc(nb * (size_t)hp->n_vocab * sizeof(float));
    c->logit_row = malloc(nb * sizeof(int));
    c->matmul_scratch = malloc(bc__matmul_scratch_bytes((int64_t)row_max, params.n_batch));
    c->att_scratch = malloc(nt * (size_t)c->n_ctx * sizeof(float));
    c->matmul_flags = params.bf16_activations ? BC__MATMUL_BF16_ACT : 0;
    c->profiling = params.profile;
    c->pool = bc__pool_create(params.n_threads);
    if (!c->seq_len || !c->seq_next || !c->seq_touched || !c->x || !c->xn || !c->qkv || !c->qkv_split || !c->attn ||
        !c->ff_gate || !c->ff_up || !c->rope_cos || !c->rope_sin || !c->logits || !c->logit_row || !c->matmul_scratch ||
        !c->att_scratch || !c->pool)
        goto oom;
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
    bc__kv_seqs_free(&c->seqs);
    bc__kv_pool_free(&c->kv);
    free(c->x);
    free(c->xn);
    free(c->qkv);
    free(c->qkv_split);
    free(c->attn);
    free(c->ff_gate);
    free(c->ff_up);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->logits);
    free(c->logit_row);
    free(c->matmul_scratch);
    free(c->att_scratch);
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
    double t0 = bc__prof_begin(ctx);
    ctx->err.status = BC_STATUS_OK;
    ctx->err.msg[0] = '\0';
    ctx->n_logit_rows = 0;
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
    for (int i = 0; i < n; i++) {
        const bc_batch_entry *e = &entries[i];
        bc__kv_seq_set_token(&ctx->seqs, e->seq, e->pos, e->token);
        ctx->logit_row[i] = e->logits ? ctx->n_logit_rows++ : -1;
    }

    bc__forward(ctx, entries, n);

    for (int i = 0; i < n; i++) {
        int s = entries[i].seq;
        if (!ctx->seq_touched[s]) continue;
        ctx->seq_touched[s] = 0;
        bc__kv_seq_index(&ctx->seqs, s, ctx->seq_len[s], ctx->seq_next[s]);
        ctx->seq_len[s] = ctx->seq_next[s];
    }
    ctx->n_entries = n;
    if (ctx->profiling) {
        ctx->prof.total_seconds += bc__prof_now() - t0;
        ctx->prof.n_decodes++;
        ctx->prof.n_tokens += n;
    }
    return BC_STATUS_OK;
}

const float *bc_context_logits(const bc_context *ctx, int i) {
    if (i < 0 || i >= ctx->n_entries || ctx->logit_row[i] < 0) return NULL;
    return ctx->logits + (size_t)ctx->logit_row[i] * (size_t)ctx->model->hp.n_vocab;
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

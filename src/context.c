/*
 * context.c - context lifecycle, sequence bookkeeping, the checks a batch
 * must pass before the forward pass runs, and the per-op profile's figures.
 */
#include "context.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bc_context_params bc_context_default_params(void) {
    bc_context_params p;
    p.n_ctx = 0;
    p.n_seq = 1;
    p.n_batch = 512;
    p.n_threads = 0;
    p.bf16_activations = false;
    p.profile = false;
    return p;
}

/* Sizes of everything a context allocates, in floats (or bytes where said). */
typedef struct context_sizes {
    uint64_t kv_floats;     /* per cache (K or V) */
    uint64_t scratch_bytes; /* all per-batch scratch */
    uint64_t total_bytes;
} context_sizes;

static int sizes_of(const bc__hparams *hp, int n_ctx, int n_seq, int n_batch, int n_threads, context_sizes *s) {
    uint64_t kv = 1;
    if (bc__mul_u64(kv, (uint64_t)n_seq, &kv) || bc__mul_u64(kv, (uint64_t)hp->n_layer, &kv) ||
        bc__mul_u64(kv, (uint64_t)n_ctx, &kv) || bc__mul_u64(kv, (uint64_t)hp->n_embd, &kv))
        return -1;
    uint64_t nb = (uint64_t)n_batch;
    uint64_t per_entry = 4ull * (uint64_t)hp->n_embd * 4   /* x, xn, attn + slack */
                         + 6ull * (uint64_t)hp->n_embd * 4 /* qkv, qkv_split */
                         + 2ull * (uint64_t)hp->n_ff * 4   /* gate, up */
                         + (uint64_t)hp->head_dim * 8      /* rope cos, sin */
                         + (uint64_t)hp->n_vocab * 4 + 4   /* logits, logit_row */
                         + (uint64_t)(hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd) * 5 / 4 +
                         1; /* 8-bit activations */
    uint64_t per_thread = (uint64_t)n_ctx * 4;
    uint64_t scratch, threads, kv_bytes, total;
    if (bc__mul_u64(nb, per_entry, &scratch) || bc__mul_u64((uint64_t)n_threads, per_thread, &threads) ||
        bc__mul_u64(kv, 8, &kv_bytes) || bc__add_u64(scratch, threads, &scratch) ||
        bc__add_u64(kv_bytes, scratch, &total))
        return -1;
    s->kv_floats = kv;
    s->scratch_bytes = scratch;
    s->total_bytes = total;
    return 0;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

uint64_t bc_model_context_bytes(const bc_model *model, int n_ctx, int n_seq, int n_batch) {
    context_sizes s;
    if (n_ctx <= 0) n_ctx = model->hp.n_ctx_train;
    if (sizes_of(&model->hp, n_ctx, n_seq, n_batch, default_threads(), &s) != 0) return UINT64_MAX;
    return s.total_bytes;
}

bc_status bc_context_init(const bc_model *model, bc_context_params params, bc_context **out, char *err_buf,
                          size_t err_size) {
    bc__err err = {BC_STATUS_OK, ""};
    *out = NULL;
    const bc__hparams *hp = &model->hp;
    if (params.n_ctx == 0) params.n_ctx = hp->n_ctx_train;
    if (params.n_threads == 0) params.n_threads = default_threads();
    if (params.n_ctx < 1 || params.n_ctx > (1 << 24) || params.n_seq < 1 || params.n_seq > 4096 || params.n_batch < 1 ||
        params.n_batch > (1 << 20) || params.n_threads < 1 || params.n_threads > 1024) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT,
                   "invalid context parameters: n_ctx %d (1..16777216), n_seq %d (1..4096), n_batch %d "
                   "(1..1048576), n_threads %d (1..1024)",
                   params.n_ctx, params.n_seq, params.n_batch, params.n_threads);
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    context_sizes sz;
    if (sizes_of(hp, params.n_ctx, params.n_seq, params.n_batch, params.n_threads, &sz) != 0 ||
        sz.total_bytes > (uint64_t)SIZE_MAX / 2) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT, "context of n_ctx %d x n_seq %d is too large to address",
                   params.n_ctx, params.n_seq);
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
    /* Untouched pages of the caches cost nothing until a sequence grows. */
    c->k_cache = malloc((size_t)sz.kv_floats * sizeof(float));
    c->v_cache = malloc((size_t)sz.kv_floats * sizeof(float));
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
    if (!c->seq_len || !c->seq_next || !c->k_cache || !c->v_cache || !c->x || !c->xn || !c->qkv || !c->qkv_split ||
        !c->attn || !c->ff_gate || !c->ff_up || !c->rope_cos || !c->rope_sin || !c->logits || !c->logit_row ||
        !c->matmul_scratch || !c->att_scratch || !c->pool)
        goto oom;
    *out = c;
    return BC_STATUS_OK;
oom:
    bc_context_free(c);
    bc__errorf(&err, BC_STATUS_ERROR_MEMORY,
               "out of memory allocating a context of %.1f MiB (n_ctx %d, n_seq %d, n_batch %d)",
               (double)sz.total_bytes / (1 << 20), params.n_ctx, params.n_seq, params.n_batch);
    bc__err_copy(&err, err_buf, err_size);
    return err.status;
}

void bc_context_free(bc_context *c) {
    if (c == NULL) return;
    bc__pool_free(c->pool);
    free(c->seq_len);
    free(c->seq_next);
    free(c->k_cache);
    free(c->v_cache);
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

bc_status bc_context_decode(bc_context *ctx, const bc_batch_entry *entries, int n) {
    double t0 = bc__prof_begin(ctx);
    ctx->err.status = BC_STATUS_OK;
    ctx->err.msg[0] = '\0';
    ctx->n_logit_rows = 0;
    ctx->n_entries = 0;
    if (entries == NULL || n < 1 || n > ctx->n_batch)
        return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "batch of %d entries (must be 1..%d)", n, ctx->n_batch);
    const bc__hparams *hp = &ctx->model->hp;
    memcpy(ctx->seq_next, ctx->seq_len, (size_t)ctx->n_seq * sizeof(int));
    for (int i = 0; i < n; i++) {
        const bc_batch_entry *e = &entries[i];
        if (e->seq < 0 || e->seq >= ctx->n_seq)
            return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "entry %d: sequence %d out of range [0, %d)", i, e->seq,
                        ctx->n_seq);
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
    for (int i = 0; i < n; i++) ctx->logit_row[i] = entries[i].logits ? ctx->n_logit_rows++ : -1;

    bc__forward(ctx, entries, n);

    memcpy(ctx->seq_len, ctx->seq_next, (size_t)ctx->n_seq * sizeof(int));
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

int bc_context_seq_len(const bc_context *ctx, int seq) { return seq >= 0 && seq < ctx->n_seq ? ctx->seq_len[seq] : 0; }

bc_status bc_context_seq_truncate(bc_context *ctx, int seq, int pos) {
    if (seq < 0 || seq >= ctx->n_seq || pos < 0)
        return fail(ctx, BC_STATUS_ERROR_ARGUMENT, "truncate: sequence %d / position %d out of range", seq, pos);
    if (pos < ctx->seq_len[seq]) ctx->seq_len[seq] = pos;
    return BC_STATUS_OK;
}

int bc_context_n_ctx(const bc_context *ctx) { return ctx->n_ctx; }
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

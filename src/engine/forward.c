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
 * With bc_context_params.profile each step is bracketed by bc__prof_begin /
 * bc__prof_end (context.h), which add its wall time to one bc_profile_op.
 */
#include "engine/context.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Rotary position embedding                                                */
/* ------------------------------------------------------------------------ */

/* cos/sin of pos * inv_freq[i] for each entry, shared by all layers. */
static void rope_prepare(bc_context *ctx, const bc_batch_entry *entries, int n) {
    const bc_model *m = ctx->model;
    int half = m->hp.head_dim / 2;
    for (int e = 0; e < n; e++)
        for (int i = 0; i < half; i++) {
            double angle = (double)entries[e].pos * m->rope_inv_freq[i];
            ctx->rope_cos[(size_t)e * (size_t)half + (size_t)i] = cos(angle);
            ctx->rope_sin[(size_t)e * (size_t)half + (size_t)i] = sin(angle);
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
/* Attention                                                                */
/* ------------------------------------------------------------------------ */

typedef struct attention_task {
    bc_context *ctx;
    const bc_batch_entry *entries;
    int n;
    int layer;
} attention_task;

/* The rows of head h of layer il for sequence seq in the K (or V) pool. */
static bc__kv_rows kv_rows(const bc_context *ctx, const uint8_t *pool, int seq, int il, int h) {
    const bc__kv_pool *kv = &ctx->kv;
    const size_t head_bytes = bc__kv_row_bytes(kv->type, ctx->model->hp.head_dim);
    return (bc__kv_rows){pool + (size_t)il * BC_KV_BLOCK * kv->row_bytes + (size_t)h * head_bytes,
                         ctx->seqs.blocks + (size_t)seq * (size_t)ctx->seqs.max_blocks,
                         kv->block_bytes,
                         kv->row_bytes,
                         BC__KV_BLOCK_SHIFT,
                         kv->type};
}

/* One (entry, head) pair: causal attention over the entry's sequence up to
 * and including its own position. */
static void attend(const attention_task *t, int e, int h, float *scores) {
    bc_context *ctx = t->ctx;
    const bc_model *m = ctx->model;
    const int E = m->hp.n_embd, D = m->hp.head_dim;
    const bc_batch_entry *en = &t->entries[e];
    const float *q = ctx->qkv + (size_t)e * 3 * (size_t)E + (size_t)h * (size_t)D;
    const bc__kv_rows k = kv_rows(ctx, ctx->kv.k, en->seq, t->layer, h);
    const bc__kv_rows v = kv_rows(ctx, ctx->kv.v, en->seq, t->layer, h);
    const float *slope = m->alibi_slopes ? &m->alibi_slopes[h] : NULL;
    float *out = ctx->attn + (size_t)e * (size_t)E + (size_t)h * (size_t)D;
    bc__attend(q, &k, &v, en->pos + 1, D, 1.0f / sqrtf((float)D), slope, en->pos, scores, out);
}

/* Chunk k is the (entry, head) pair (k / n_head, k % n_head). */
static void attention_worker(void *p, int64_t k, int ith) {
    const attention_task *t = p;
    int n_head = t->ctx->model->hp.n_head;
    float *scores = t->ctx->att_scratch + (size_t)ith * (size_t)t->ctx->n_ctx;
    attend(t, (int)(k / n_head), (int)(k % n_head), scores);
}

/* ------------------------------------------------------------------------ */
/* The pass                                                                 */
/* ------------------------------------------------------------------------ */

/* Q, K, V from split weights (GGUF) into the fused layout of ctx->qkv. The Q
 * and K rows of a llama.cpp GGUF are in its interleaved-pair RoPE order: row
 * h*D + 2i + j holds what W_pack row h*D + j*D/2 + i holds (j = 0, 1). The
 * permutation is undone on the outputs, which costs O(n * n_embd) beside the
 * O(n * n_embd^2) products and keeps the weights where the file put them. */
static void split_qkv(bc_context *ctx, const bc__layer *L, int n) {
    const bc__hparams *hp = &ctx->model->hp;
    const size_t E = (size_t)hp->n_embd, D = (size_t)hp->head_dim, half = D / 2;
    float *q = ctx->qkv_split, *k = q + (size_t)n * E, *v = k + (size_t)n * E;
    const bc__weight *ws[3] = {&L->wq, &L->wk, &L->wv};
    float *ys[3] = {q, k, v};
    bc__matmul_multi(ctx->pool, ws, 3, ctx->xn, n, ys, ctx->matmul_scratch, ctx->matmul_flags);
    for (int e = 0; e < n; e++) {
        float *dst = ctx->qkv + (size_t)e * 3 * E;
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

static void attention_block(bc_context *ctx, const bc__layer *L, int il, const bc_batch_entry *entries, int n) {
    const bc_model *m = ctx->model;
    const bc__hparams *hp = &m->hp;
    const size_t E = (size_t)hp->n_embd;
    const int half = hp->head_dim / 2;

    double t0 = bc__prof_begin(ctx);
    for (int e = 0; e < n; e++) bc__rmsnorm(ctx->x + e * E, L->attn_norm, hp->n_embd, hp->norm_eps, ctx->xn + e * E);
    bc__prof_end(ctx, BC_PROFILE_OP_ATTN_NORM, t0);

    t0 = bc__prof_begin(ctx);
    if (L->wqkv.rows > 0) /* W_pack (its rows may live in the repacked copy only) */
        bc__matmul(ctx->pool, &L->wqkv, ctx->xn, n, ctx->qkv, ctx->matmul_scratch, ctx->matmul_flags);
    else
        split_qkv(ctx, L, n);
    bc__prof_end(ctx, BC_PROFILE_OP_QKV, t0);

    if (hp->pos_encoding == BC_POS_ENCODING_ROPE) {
        t0 = bc__prof_begin(ctx);
        for (int e = 0; e < n; e++) {
            float *q = ctx->qkv + (size_t)e * 3 * E, *k = q + E;
            const double *cs = ctx->rope_cos + (size_t)e * (size_t)half, *sn = ctx->rope_sin + (size_t)e * (size_t)half;
            rope_apply(q, hp->n_head, hp->head_dim, cs, sn);
            rope_apply(k, hp->n_head, hp->head_dim, cs, sn);
        }
        bc__prof_end(ctx, BC_PROFILE_OP_ROPE, t0);
    }

    t0 = bc__prof_begin(ctx);
    const bc__kv_pool *kv = &ctx->kv;
    for (int e = 0; e < n; e++) {
        const float *k = ctx->qkv + (size_t)e * 3 * E + E, *v = k + E;
        const int pos = entries[e].pos;
        const int32_t b = ctx->seqs.blocks[(size_t)entries[e].seq * (size_t)ctx->seqs.max_blocks + pos / BC_KV_BLOCK];
        const size_t off = (size_t)b * kv->block_bytes + ((size_t)il * BC_KV_BLOCK + pos % BC_KV_BLOCK) * kv->row_bytes;
        bc__kv_store_row(kv->type, k, kv->k + off, hp->n_embd);
        bc__kv_store_row(kv->type, v, kv->v + off, hp->n_embd);
    }
    bc__prof_end(ctx, BC_PROFILE_OP_KV_STORE, t0);

    t0 = bc__prof_begin(ctx);
    attention_task t = {ctx, entries, n, il};
    bc__pool_run(ctx->pool, attention_worker, &t, (int64_t)n * hp->n_head);
    bc__prof_end(ctx, BC_PROFILE_OP_ATTENTION, t0);

    t0 = bc__prof_begin(ctx);
    bc__matmul(ctx->pool, &L->wo, ctx->attn, n, ctx->xn, ctx->matmul_scratch, ctx->matmul_flags);
    bc__prof_end(ctx, BC_PROFILE_OP_O_PROJ, t0);

    t0 = bc__prof_begin(ctx);
    for (size_t i = 0; i < (size_t)n * E; i++) ctx->x[i] += ctx->xn[i];
    bc__prof_end(ctx, BC_PROFILE_OP_RESIDUAL, t0);
}

static void mlp_block(bc_context *ctx, const bc__layer *L, int n) {
    const bc__hparams *hp = &ctx->model->hp;
    const size_t E = (size_t)hp->n_embd;
    double t0 = bc__prof_begin(ctx);
    for (int e = 0; e < n; e++) bc__rmsnorm(ctx->x + e * E, L->ffn_norm, hp->n_embd, hp->norm_eps, ctx->xn + e * E);
    bc__prof_end(ctx, BC_PROFILE_OP_FFN_NORM, t0);

    /* gate and up in one pass, silu(gate) * up applied by each thread to the
     * rows it computed (timed as gate_up) */
    t0 = bc__prof_begin(ctx);
    const bc__weight *ws[2] = {&L->w_gate, &L->w_up};
    float *ys[2] = {ctx->ff_gate, ctx->ff_up};
    bc__matmul_multi(ctx->pool, ws, 2, ctx->xn, n, ys, ctx->matmul_scratch, ctx->matmul_flags | BC__MATMUL_SILU_MUL);
    bc__prof_end(ctx, BC_PROFILE_OP_GATE_UP, t0);

    t0 = bc__prof_begin(ctx);
    bc__matmul(ctx->pool, &L->w_down, ctx->ff_gate, n, ctx->xn, ctx->matmul_scratch, ctx->matmul_flags);
    bc__prof_end(ctx, BC_PROFILE_OP_DOWN, t0);

    t0 = bc__prof_begin(ctx);
    for (size_t i = 0; i < (size_t)n * E; i++) ctx->x[i] += ctx->xn[i];
    bc__prof_end(ctx, BC_PROFILE_OP_RESIDUAL, t0);
}

static void output_block(bc_context *ctx, int n) {
    const bc_model *m = ctx->model;
    const bc__hparams *hp = &m->hp;
    const size_t E = (size_t)hp->n_embd, V = (size_t)hp->n_vocab;
    /* Gather the normed rows of the entries that want logits, in order. */
    double t0 = bc__prof_begin(ctx);
    for (int e = 0; e < n; e++) {
        int r = ctx->logit_row[e];
        if (r >= 0) bc__rmsnorm(ctx->x + (size_t)e * E, m->out_norm, hp->n_embd, hp->norm_eps, ctx->xn + (size_t)r * E);
    }
    bc__prof_end(ctx, BC_PROFILE_OP_OUTPUT_NORM, t0);
    int rows = ctx->n_logit_rows;
    if (rows == 0) return;

    t0 = bc__prof_begin(ctx);
    bc__matmul(ctx->pool, &m->lm_head, ctx->xn, rows, ctx->logits, ctx->matmul_scratch, ctx->matmul_flags);
    bc__prof_end(ctx, BC_PROFILE_OP_LM_HEAD, t0);

    if (m->lm_head_scale) {
        t0 = bc__prof_begin(ctx);
        for (int r = 0; r < rows; r++)
            for (size_t v = 0; v < V; v++) ctx->logits[(size_t)r * V + v] *= m->lm_head_scale[v];
        bc__prof_end(ctx, BC_PROFILE_OP_NORM_HEAD, t0);
    }
}

void bc__forward(bc_context *ctx, const bc_batch_entry *entries, int n) {
    const bc_model *m = ctx->model;
    const bc__hparams *hp = &m->hp;
    const size_t E = (size_t)hp->n_embd;

    double t0 = bc__prof_begin(ctx);
    for (int e = 0; e < n; e++) bc__weight_row_f32(&m->tok_embd, entries[e].token, ctx->x + (size_t)e * E);
    bc__prof_end(ctx, BC_PROFILE_OP_EMBEDDING, t0);

    if (hp->pos_encoding == BC_POS_ENCODING_ROPE) {
        t0 = bc__prof_begin(ctx);
        rope_prepare(ctx, entries, n);
        bc__prof_end(ctx, BC_PROFILE_OP_ROPE, t0);
    }

    for (int il = 0; il < hp->n_layer; il++) {
        attention_block(ctx, &m->layers[il], il, entries, n);
        mlp_block(ctx, &m->layers[il], n);
    }
    output_block(ctx, n);
}

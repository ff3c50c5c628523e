/*
 * context.h - a context: KV cache and scratch for one thread's use of a model.
 */
#ifndef BC_CONTEXT_H
#define BC_CONTEXT_H

#include "kernels/kernels.h"
#include "model/model.h"
#include "engine/kv_seq.h"

#include <time.h>

struct bc_context {
    const bc_model *model;
    int n_ctx;   /* most positions of one sequence */
    int n_seq;   /* sequences */
    int n_batch; /* most entries per decode */
    bc__pool *pool;
    bc__err err; /* the last failed call's message */

    int *seq_len;  /* (n_seq) cached positions per sequence */
    int *seq_next; /* (n_seq) decode's running position per sequence */

    uint8_t *seq_touched; /* (n_seq) scratch of decode: sequence has entries in the batch */

    /* The KV cache: a pool of blocks (keys after RoPE), and per sequence a
     * block table into it (kv_seq.h). */
    bc__kv_pool kv;
    bc__kv_seqs seqs;

    /* Scratch for one decode, (n_batch, ...) each. */
    float *x;         /* (n_batch, n_embd) residual stream */
    float *xn;        /* (n_batch, n_embd) normed input / projection output */
    float *qkv;       /* (n_batch, 3*n_embd) Q | K | V per entry */
    float *qkv_split; /* (3, n_batch, n_embd) Q, K, V from split weights (GGUF) */
    float *attn;      /* (n_batch, n_embd) attention output before o_proj */
    float *ff_gate;   /* (n_batch, n_ff) */
    float *ff_up;     /* (n_batch, n_ff) */
    double *rope_cos; /* (n_batch, head_dim/2) with RoPE */
    double *rope_sin; /* (n_batch, head_dim/2) with RoPE */
    float *logits;    /* (n_batch, n_vocab) rows of the entries that asked */
    int *logit_row;   /* (n_batch) row in logits of entry i, or -1 */
    int n_logit_rows;
    int n_entries; /* entries of the last successful decode */

    void *matmul_scratch;  /* bc__matmul_scratch_bytes(max(n_embd, n_ff), n_batch): 8-bit activations */
    unsigned matmul_flags; /* BC__MATMUL_* from the params */
    float *att_scratch;    /* (n_threads, n_ctx) attention scores */

    bool profiling;  /* bc_context_params.profile */
    bc_profile prof; /* summed since init or the last reset; OTHER filled on reading */
};

/* Profiling: a step of the pass is bracketed as
 *     double t = bc__prof_begin(ctx);  ...step...  bc__prof_end(ctx, BC_PROFILE_OP_X, t);
 * With profiling off each is one predictable branch and no clock read. */
static inline double bc__prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static inline double bc__prof_begin(const bc_context *ctx) { return ctx->profiling ? bc__prof_now() : 0.0; }
static inline void bc__prof_end(bc_context *ctx, bc_profile_op op, double t0) {
    if (ctx->profiling) ctx->prof.op_seconds[op] += bc__prof_now() - t0;
}

/* Runs the layers over validated entries; cannot fail. */
BC__HIDDEN void bc__forward(bc_context *ctx, const bc_batch_entry *entries, int n);

#endif /* BC_CONTEXT_H */

/*
 * forward.h - the Baichuan forward pass over a batch of (sequence, position,
 * token) entries, and the workspace it runs in.
 *
 * The pass sees only what it is handed: the model, a workspace (its scratch
 * buffers and the logits it leaves), a view of the KV cache (kv_view.h), the
 * thread pool, the matmul flags and an optional profile accumulator. The
 * caller (the context) owns all of them, checks the entries and gives each
 * entry's position a writable block before the pass runs.
 */
#ifndef BC_FORWARD_H
#define BC_FORWARD_H

#include "base/threadpool.h"
#include "engine/kv_view.h"
#include "engine/lora_apply.h"
#include "model/model.h"

/* The buffers of one pass of up to n_batch entries, in one allocation whose
 * layout forward.c owns. Shapes use n for the entries of the pass. */
typedef struct bc__workspace {
    int n_batch; /* most entries per pass */
    int n_ctx;   /* most keys one query attends to */

    float *x;             /* (n_batch, n_embd) residual stream */
    float *xn;            /* (n_batch, n_embd) normed input / projection output */
    float *qkv;           /* (n_batch, 3*n_embd) Q | K | V per entry */
    float *qkv_split;     /* (3, n_batch, n_embd) Q, K, V from split weights (GGUF) */
    float *attn;          /* (n_batch, n_embd) attention output before o_proj */
    float *ff_gate;       /* (n_batch, n_ff) */
    float *ff_up;         /* (n_batch, n_ff) */
    double *rope_cos;     /* (n_batch, head_dim/2) with RoPE */
    double *rope_sin;     /* (n_batch, head_dim/2) with RoPE */
    void *matmul_scratch; /* bc__matmul_scratch_bytes(max(n_embd, n_ff), n_batch): 8-bit activations */
    float *att_scratch;   /* (n_threads, att_scratch_stride) the attention kernels' scratch */
    size_t att_scratch_stride;
    int *att_tiles;     /* (n_batch, 2) first entry and rows of each attention tile */
    int *att_seg_base;  /* (n_batch + 1) where each entry's parts start, split attention */
    float *att_parts;   /* (att_split_rows * n_seg, head_dim + 2) parts of split attention */
    int att_split_rows; /* most (entry, head) pairs a pass splits over segments */
    int n_threads;

    /* What the last pass left: the logits of the entries that asked, in the
     * order of the entries. */
    float *logits;  /* (n_batch, n_vocab) */
    int *logit_row; /* (n_batch) row in logits of entry i, or -1 */
    int n_logit_rows;

    void *mem; /* the allocation all of the above point into */
} bc__workspace;

/* Bytes bc__workspace_init allocates (UINT64_MAX on overflow). */
BC__HIDDEN uint64_t bc__workspace_bytes(const bc__hparams *hp, int n_batch, int n_threads, int n_ctx);

/* Allocates ws for passes of up to n_batch entries on n_threads threads over
 * sequences of up to n_ctx positions; -1 when out of memory (ws then holds
 * nothing to free). */
BC__HIDDEN int bc__workspace_init(bc__workspace *ws, const bc__hparams *hp, int n_batch, int n_threads, int n_ctx);
BC__HIDDEN void bc__workspace_free(bc__workspace *ws);

/* Runs the layers over n (1..ws->n_batch) checked entries: each entry's
 * keys and values go to its position's row of kv, then it attends to the
 * positions 0..pos of its sequence; the logits of the entries with
 * e->logits are left in ws. matmul_flags: BC__MATMUL_* for every matmul.
 * prof: the accumulator each step's time is added to, or NULL. lora: the
 * adapters of the entries (lora_apply.h), or NULL. Cannot fail. */
BC__HIDDEN void bc__forward(const bc_model *model, bc__workspace *ws, const bc__kv_view *kv, bc__pool *pool,
                            unsigned matmul_flags, bc_profile *prof, const bc__lora_plan *lora,
                            const bc_batch_entry *entries, int n);

#endif /* BC_FORWARD_H */

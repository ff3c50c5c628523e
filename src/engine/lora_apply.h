/*
 * lora_apply.h - LoRA adapters applied unmerged inside the forward pass
 * (lora_apply.c): after a matrix's base product y = W x over the batch,
 * y += scale * B (A x) for each entry under each adapter of its sequence,
 * the low-rank products grouped per adapter (Punica's BGMV): an adapter's
 * factor rows are read once per pass for all of its entries.
 *
 * Bits: every output element of an entry is the base product plus, in the
 * order of its sequence's adapters, scale * dot(B row, t) with t = A x made
 * by the same dot kernel with the same operands, whatever else the batch
 * holds; so an entry's logits do not depend on the batch.
 */
#ifndef BC_LORA_APPLY_H
#define BC_LORA_APPLY_H

#include "base/threadpool.h"
#include "model/lora.h"

/* The adapters one sequence runs under, in the order their products add. */
typedef struct bc__lora_set {
    int n;
    const bc_lora *loras[BC_MAX_SEQ_LORAS];
} bc__lora_set;

/* One pass's adapters: which distinct adapters the batch uses and which
 * (entry, position in its set) pairs use each, sorted by that position. Laid
 * out in the scratch that bc__lora_plan_bytes sizes. */
typedef struct bc__lora_plan {
    int n_adapters;           /* distinct adapters in the batch; 0: nothing to apply */
    int max_set;              /* most adapters of one entry */
    int max_rank;             /* largest rank among them */
    const bc_lora **adapters; /* (n_batch * BC_MAX_SEQ_LORAS) */
    int *user_start; /* (n_batch * BC_MAX_SEQ_LORAS + 1) adapter u's users are [user_start[u], user_start[u+1]) */
    int *user_entry; /* (n_batch * BC_MAX_SEQ_LORAS) the entry of each user */
    int *user_pos;   /* (n_batch * BC_MAX_SEQ_LORAS) its adapter's position in the entry's set */
    float *t;        /* (2, n_users, max_rank) A x of each user, for up to two matrices at once */
    size_t t_floats; /* room in t */
} bc__lora_plan;

/* Bytes of the plan's scratch for batches of n_batch entries under adapters
 * of rank up to max_rank. */
BC__HIDDEN uint64_t bc__lora_plan_bytes(int n_batch, int max_rank);

/* Points plan's arrays into mem (bc__lora_plan_bytes(n_batch, max_rank)
 * bytes, 8-aligned) and fills them for the n entries whose sets are sets[e]
 * (NULL or empty: the base alone). */
BC__HIDDEN void bc__lora_plan_make(bc__lora_plan *plan, void *mem, int n_batch, int max_rank,
                                   const bc__lora_set *const *sets, int n);

/* Whether some adapter of the plan adapts slot in layer il. */
BC__HIDDEN bool bc__lora_plan_touches(const bc__lora_plan *plan, int il, bc__lora_slot slot);

/* For the n_slots (1 or 2) slots of layer il that read the same input x
 * (n, in): ys[i] (n, out of slots[i]) += the adapters' products. */
BC__HIDDEN void bc__lora_apply(const bc__lora_plan *plan, bc__pool *pool, int il, const bc__lora_slot *slots,
                               int n_slots, const float *x, float *const *ys);

#endif /* BC_LORA_APPLY_H */

/*
 * lora.h - a LoRA adapter as the forward pass reads it (lora.c loads it):
 * for each adapted matrix of each layer, the factors A (r, in) and B
 * (out, r; held in transposed blocks) in one element type, and the scale
 * their product is added with.
 * Not part of the public API (bc_lora is opaque there).
 */
#ifndef BC_LORA_H
#define BC_LORA_H

#include "model/model.h"

#include <stdbool.h>

/* The matrices an adapter may adapt, in the order of bc_lora_module's bits. */
typedef enum bc__lora_slot {
    BC__LORA_W_PACK = 0,
    BC__LORA_O_PROJ,
    BC__LORA_GATE,
    BC__LORA_UP,
    BC__LORA_DOWN,
    BC__LORA_N_SLOTS
} bc__lora_slot;

/* Output rows per block of B's layout (and per expand task of the pass). */
#define BC__LORA_B_BLOCK 64

/* One adapted matrix: y (out) += scale * B (A x) for x (in). a NULL: the
 * adapter leaves this matrix alone. */
typedef struct bc__lora_mat {
    const void *a; /* (r, in) rows of in elements of the adapter's dtype */
    const void *b; /* B (out, r; W_pack: Q rows, then K, then V) in blocks of
                    * BC__LORA_B_BLOCK output rows, each block transposed:
                    * element (o, k) at (o / BLOCK) * r * BLOCK + k * BLOCK +
                    * o % BLOCK, the last block padded with zeros. A block is
                    * one contiguous read for the expand kernel */
    int64_t in, out;
} bc__lora_mat;

struct bc_lora {
    const bc_model *model; /* the model it was loaded for */
    char *path;
    int rank;
    float alpha;
    bool rslora;
    float scale; /* alpha / r (or / sqrt(r)) times the user's scale */
    uint32_t modules;
    int n_matrices;
    bc_dtype dtype; /* of every factor: f32, f16 or bf16 */
    uint64_t bytes; /* factors and this record */
    uint64_t id;
    bc__lora_mat *mats; /* (n_layer, BC__LORA_N_SLOTS) */
    void *factors;      /* the one allocation all factors live in */
};

/* Input and output sizes of a slot's matrix in a model of hp. */
BC__HIDDEN void bc__lora_slot_dims(const bc__hparams *hp, bc__lora_slot slot, int64_t *in, int64_t *out);

/* The adapted matrix of slot in layer il, or NULL. */
static inline const bc__lora_mat *bc__lora_mat_of(const bc_lora *l, int il, bc__lora_slot slot) {
    const bc__lora_mat *m = &l->mats[(size_t)il * BC__LORA_N_SLOTS + (size_t)slot];
    return m->a != NULL ? m : NULL;
}

/* row (in floats) += scale * (B A)[o, :]: row o of the adapter's whole
 * update of a matrix, in f32, for a merge. */
BC__HIDDEN void bc__lora_delta_row(const bc_lora *l, const bc__lora_mat *m, int64_t o, float *row);

#endif /* BC_LORA_H */

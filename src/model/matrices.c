/*
 * matrices.c - the model's weight matrices as one list, and dropping the
 * stored pages of a matrix a copy replaces (see matrices.h).
 */
#include "model/matrices.h"

#include <stdlib.h>

bc__weight **bc__model_matrices(bc_model *m, int *n) {
    bc__weight **out = malloc((1 + 8 * (size_t)m->hp.n_layer) * sizeof *out);
    *n = 0;
    if (out == NULL) return NULL;
    out[(*n)++] = &m->lm_head;
    for (int il = 0; m->layers != NULL && il < m->hp.n_layer; il++) {
        bc__layer *L = &m->layers[il];
        bc__weight *ws[] = {&L->wqkv, &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) out[(*n)++] = ws[i];
    }
    return out;
}

uint64_t bc__model_release_stored_pages(const bc__weight *w) {
    const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
    return bc__release_pages(w->data, (uint64_t)(w->rows * (w->cols / tr->block_elems)) * tr->block_bytes);
}

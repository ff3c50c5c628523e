/*
 * matrices.h - the model's weight matrices as one list, and dropping the
 * stored pages of a matrix once a copy replaces them. Shared by loading,
 * quantizing at load and repacking.
 */
#ifndef BC_MATRICES_H
#define BC_MATRICES_H

#include "model/model.h"

/* The matrices the matmul reads (the embeddings are only looked up by row):
 * the lm_head and 8 per layer (wqkv or wq, wk, wv; unused ones are zero), as
 * a malloc'd array of *n pointers into m, or NULL when out of memory. */
BC__HIDDEN bc__weight **bc__model_matrices(bc_model *m, int *n);

/* The whole pages of w's stored bytes, dropped from the process once a copy
 * replaces them: they are clean pages of a read-only file mapping, so the
 * kernel can reclaim them instead of holding the weights twice, and a later
 * read (a lower kernel level forced, a row looked up) faults them in again
 * from the file. Returns the bytes released. */
BC__HIDDEN uint64_t bc__model_release_stored_pages(const bc__weight *w);

#endif /* BC_MATRICES_H */

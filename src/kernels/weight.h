/*
 * weight.h - a weight matrix as the kernels read it: rows in the stored
 * dtype, an optional repacked copy for this CPU's kernels, an optional
 * column order; and one row of it back as f32 for every other reader
 * (weight.c).
 */
#ifndef BC_WEIGHT_H
#define BC_WEIGHT_H

#include "base/base.h"

/* A weight matrix (rows, cols), row-major, in its stored dtype. Vectors are
 * matrices with one row. */
typedef struct bc__weight {
    const void *data;
    bc_dtype dtype;
    int64_t rows, cols;
    const char *name;                   /* the checkpoint's tensor name (owned by the table) */
    void *packed;                       /* NULL, or the same rows interleaved in layout `pack` by
                                         * bc__weight_repack (kernels/repack.h), owned by the
                                         * weight's owner; data stays the row-major original for
                                         * every other use */
    const struct bc__pack_layout *pack; /* the layout of packed, NULL without */
    void *owned;                        /* NULL, or data when it is a heap copy made at load
                                         * (bc_model_params.quantize, or a 4-bit checkpoint's
                                         * blocks), owned by the model */
    int32_t *perm;                      /* NULL, or (cols) the column order of data: column k
                                         * of the stored rows multiplies activation perm[k]
                                         * (GPTQ with desc_act); owned by the model */
} bc__weight;

/* Row i of w converted to f32 into row (w->cols floats); any dtype. With
 * w->perm the values come back in the input order (row[perm[c]] = stored
 * column c), so the GGUF writer, quantize-at-load and NormHead see the
 * matrix as the checkpoint defines it. */
BC__HIDDEN void bc__weight_row_f32(const bc__weight *w, int64_t i, float *row);

#endif /* BC_WEIGHT_H */

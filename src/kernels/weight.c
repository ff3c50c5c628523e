/*
 * weight.c - a row of a weight matrix as f32 (see weight.h), in the input
 * order of its columns.
 */
#include "kernels/weight.h"

#include "quant/quants.h"

void bc__weight_row_f32(const bc__weight *w, int64_t i, float *row) {
    const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
    size_t row_bytes = (size_t)(w->cols / tr->block_elems) * (size_t)tr->block_bytes;
    const char *src = (const char *)w->data + (size_t)i * row_bytes;
    if (w->perm == NULL) {
        bc__dequantize_row(w->dtype, src, row, w->cols);
        return;
    }
    /* Stored column c is input column perm[c]: a block at a time, scattered
     * back into the input order. */
    float block[256];
    for (int64_t c = 0; c < w->cols; c += tr->block_elems) {
        bc__dequantize_row(w->dtype, src + (size_t)(c / tr->block_elems) * (size_t)tr->block_bytes, block,
                           tr->block_elems);
        for (int j = 0; j < tr->block_elems; j++) row[w->perm[c + j]] = block[j];
    }
}

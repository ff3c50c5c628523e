/*
 * converted.h - what a 4-bit checkpoint converter (bnb4.c, gptq.c) hands
 * back for one matrix: the blocks it made, and the figures the model adds to
 * its own counts. Header-only: the type both converters share.
 */
#ifndef BC_CONVERTED_H
#define BC_CONVERTED_H

#include "base/base.h"
#include "formats/tensor_table.h"

#include <stdlib.h>

/* The most table entries one matrix is stored as (bitsandbytes: data,
 * absmax, offset, absmax2, code2, code). */
#define BC__CONVERTED_MAX_PARTS 6

/* A buffer a caller lends the converters for one matrix at a time (the
 * model, when it repacks each matrix as soon as it is converted): it grows
 * as needed and is reused, so a 7B checkpoint's 4 GB of blocks never exist
 * at once and their pages are not faulted in and zeroed a second time. */
typedef struct bc__convert_buf {
    void *p;     /* 64-byte aligned, or NULL */
    size_t size; /* bytes at p */
} bc__convert_buf;

/* Makes buf at least bytes long (its contents lost); returns buf->p or NULL
 * when out of memory. */
static inline void *bc__convert_buf_reserve(bc__convert_buf *buf, size_t bytes) {
    if (buf->size >= bytes && buf->p != NULL) return buf->p;
    free(buf->p);
    buf->size = 0;
    buf->p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (buf->p != NULL) buf->size = bytes;
    return buf->p;
}

/* One matrix of (rows, cols) weights, converted into our blocks. The caller
 * takes ownership of blocks (unless they are in the caller's buffer) and perm
 * (free() both). */
typedef struct bc__converted {
    void *blocks;     /* (rows, cols / block_elems) blocks of dtype, row-major, 64-byte aligned */
    bc_dtype dtype;   /* BC_DTYPE_NF4, BC_DTYPE_FP4 or BC_DTYPE_Q4_GPTQ */
    int32_t *perm;    /* NULL, or (cols) the column order of blocks: column k of the
                       * rows multiplies activation perm[k] (GPTQ with desc_act,
                       * see bc__weight.perm) */
    const char *name; /* the tensor the weight is named after (owned by the table) */

    int64_t n_params;                                /* rows * cols */
    uint64_t stored_bytes;                           /* bytes of the tensors as the checkpoint stores them */
    uint64_t converted_bytes;                        /* bytes of blocks */
    uint64_t released_bytes;                         /* bytes of stored pages released once converted */
    const bc__tensor *used[BC__CONVERTED_MAX_PARTS]; /* (n_used) the table entries the matrix was read from */
    int n_used;
    char layout[256]; /* the checkpoint's layout in words, for bc_model_info.quantization */
} bc__converted;

#endif /* BC_CONVERTED_H */

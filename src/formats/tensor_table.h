/*
 * tensor_table.h - what the checkpoint readers produce: every tensor of a
 * checkpoint by name, with its dtype, shape and bytes (in a mapped file or
 * an owned copy), and the bitsandbytes quant states of a 4-bit checkpoint.
 */
#ifndef BC_TENSOR_TABLE_H
#define BC_TENSOR_TABLE_H

#include "base/base.h"

#include <stdbool.h>

#define BC__MAX_DIMS 4

typedef struct bc__tensor {
    char *name; /* owned */
    bc_dtype dtype;
    int n_dims;
    int64_t shape[BC__MAX_DIMS]; /* outermost first, as PyTorch writes it */
    const void *data;            /* into a mapped file, or an owned copy */
    uint64_t n_bytes;
    const bc__file *file; /* where the bytes come from */
    uint64_t file_offset; /* of the first byte, for messages */
    /* The checkpoint's name for a dtype bc_dtype lacks ("I32", "F64", ...), a
     * static string; NULL otherwise. Such a tensor's size was checked by its
     * reader, but the model cannot use it: dtype is then BC_DTYPE_COUNT. */
    const char *foreign_dtype;
} bc__tensor;

/* The scalar fields of a bitsandbytes 4-bit quant state: the list torch.save
 * wrote under "<weight>.quant_state" in Baichuan2's 4bits checkpoints (see
 * bnb4.c for the layout). The torch reader adds its tensors to the table as
 * "<weight>.quant_state.absmax" (u8 with compressed statistics, else f32)
 * and, with compressed statistics, ".offset", ".absmax2" and ".code2"; the
 * code table, when the list has one, as ".code". */
typedef struct bc__bnb_state {
    char *weight;                /* "<weight>", owned */
    const bc__file *file;        /* the checkpoint, for messages */
    int n_dims;                  /* of the weight before quantization (quant_state[1]) */
    int64_t shape[BC__MAX_DIMS]; /* its shape */
    const char *dtype;           /* what was quantized: "float16", "bfloat16" or "float32" (static) */
    int64_t blocksize;           /* quant_state[3]: weights per absmax */
    bool nested;                 /* compressed statistics (double quantization) */
    int64_t blocksize2;          /* absmax values per absmax2, when nested */
    char quant_type[8];          /* quant_state[5]: "nf4" or "fp4" (checked by the converter) */
} bc__bnb_state;

typedef struct bc__tensor_table {
    bc__tensor *tensors;
    size_t n_tensors, cap_tensors;
    bc__bnb_state *bnb; /* bitsandbytes quant states, see above */
    size_t n_bnb, cap_bnb;
    bc__file **files; /* owned mappings, kept alive with the table */
    size_t n_files, cap_files;
    void **copies; /* owned buffers for data that could not be used in place */
    size_t n_copies, cap_copies;
} bc__tensor_table;

/* Takes ownership of a mapping; it is unmapped by bc__table_free(). */
BC__HIDDEN int bc__table_add_file(bc__tensor_table *t, bc__file *file, bc__err *err);

/* Adds a tensor whose n_bytes bytes start at `data` inside `file`.
 * Checks: the name is new, the shape is non-negative and its element count
 * times the dtype size equals n_bytes without overflow, and the bytes lie
 * inside the file. If data is not aligned to the dtype size, the bytes are
 * copied to an aligned buffer. */
BC__HIDDEN int bc__table_add(bc__tensor_table *t, const char *name, bc_dtype dtype, int n_dims, const int64_t *shape,
                             const bc__file *file, uint64_t offset, uint64_t n_bytes, bc__err *err);

/* Adds a tensor of a dtype bc_dtype lacks, named foreign_dtype (a static
 * string). The reader has checked n_bytes against the shape; this checks the
 * name is new and the bytes lie inside the file. The bytes are not copied. */
BC__HIDDEN int bc__table_add_foreign(bc__tensor_table *t, const char *name, const char *foreign_dtype, int n_dims,
                                     const int64_t *shape, const bc__file *file, uint64_t offset, uint64_t n_bytes,
                                     bc__err *err);

BC__HIDDEN const bc__tensor *bc__table_find(const bc__tensor_table *t, const char *name);
/* bc__release_pages on x's bytes when they lie in its file's mapping (not
 * on a copy the table made); returns the bytes dropped. */
BC__HIDDEN uint64_t bc__tensor_release(const bc__tensor *x);
/* Adds a copy of state (its weight name duplicated); a weight's second state is an error. */
BC__HIDDEN int bc__table_add_bnb(bc__tensor_table *t, const bc__bnb_state *state, bc__err *err);
/* The quant state of weight, or NULL. */
BC__HIDDEN const bc__bnb_state *bc__table_find_bnb(const bc__tensor_table *t, const char *weight);
BC__HIDDEN void bc__table_free(bc__tensor_table *t);

#endif /* BC_TENSOR_TABLE_H */

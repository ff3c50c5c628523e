/*
 * internal.h - what the engine's modules share and nothing outside sees.
 *
 * Internal symbols carry the bc__ prefix and hidden visibility.
 *
 *   errors        bc__err: a message buffer every fallible function fills
 *   mapped files  bc__file: a read-only mmap of a whole file
 *   tensor table  bc__tensor_table: what the checkpoint readers produce
 *   readers       safetensors, torch zip + pickle
 */
#ifndef BC_INTERNAL_H
#define BC_INTERNAL_H

#include "baichuan.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define BC__HIDDEN       __attribute__((visibility("hidden")))
#define BC__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BC__HIDDEN
#define BC__PRINTF(f, a)
#endif

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "baichuan.c reads little-endian files in place and needs a little-endian host"
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct bc__err {
    bc_status status; /* BC_STATUS_OK until an error is set */
    char msg[1024];
} bc__err;

/* Sets err (the first error wins; later calls are ignored so that the
 * innermost, most precise message survives) and returns -1. */
BC__HIDDEN int bc__errorf(bc__err *err, bc_status status, const char *fmt, ...) BC__PRINTF(3, 4);

/* Copies err's message into a caller buffer of size n (n may be 0). */
BC__HIDDEN void bc__err_copy(const bc__err *err, char *buf, size_t n);

/* ------------------------------------------------------------------------ */
/* Checked arithmetic and small helpers                                     */
/* ------------------------------------------------------------------------ */

/* *out = a * b; returns 0, or -1 on overflow. */
static inline int bc__mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int bc__add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

BC__HIDDEN char *bc__strdup(const char *s);
BC__HIDDEN char *bc__strndup(const char *s, size_t n);
/* "dir/name" in a new buffer. */
BC__HIDDEN char *bc__path_join(const char *dir, const char *name);
BC__HIDDEN int bc__file_exists(const char *path);
BC__HIDDEN int bc__is_directory(const char *path);

/* How a dtype lays out its elements: blocks of block_elems elements in
 * block_bytes bytes (1 and the element size for f32/f16/bf16). */
typedef struct bc__dtype_traits {
    const char *name; /* "f32", "q4_0", ... */
    int block_elems;  /* elements per block */
    int block_bytes;  /* bytes per block */
    int ggml_type;    /* llama.cpp's ggml_type id, as GGUF stores it; -1 for ours */
    int align;        /* alignment the data needs in memory */
} bc__dtype_traits;

/* NULL for a value outside the enum. */
BC__HIDDEN const bc__dtype_traits *bc__dtype_traits_of(bc_dtype dtype);

/* *bytes = the size of n consecutive elements (a row); -1 when n is not a
 * whole number of blocks or the size overflows. */
BC__HIDDEN int bc__dtype_row_bytes(bc_dtype dtype, uint64_t n, uint64_t *bytes);

/* ------------------------------------------------------------------------ */
/* Half-precision conversion                                                */
/* ------------------------------------------------------------------------ */

BC__HIDDEN extern float bc__f16_table[65536]; /* filled by bc__f16_init() */
BC__HIDDEN void bc__f16_init(void);           /* idempotent, thread-safe */

static inline float bc__f16_to_f32(uint16_t h) { return bc__f16_table[h]; }

static inline float bc__bf16_to_f32(uint16_t b) {
    union {
        uint32_t u;
        float f;
    } v;
    v.u = (uint32_t)b << 16;
    return v.f;
}

/* ------------------------------------------------------------------------ */
/* Mapped files                                                             */
/* ------------------------------------------------------------------------ */

typedef struct bc__file {
    char *path;          /* as opened */
    const uint8_t *data; /* the whole file, read-only */
    uint64_t size;
} bc__file;

/* Maps the whole file at path. An empty file is an error. */
BC__HIDDEN int bc__file_map(const char *path, bc__file **out, bc__err *err);
BC__HIDDEN void bc__file_unmap(bc__file *file);
/* Drops the whole pages inside [p, p + n) of a read-only file mapping from
 * the process once a copy replaces them: the kernel may reclaim them, and a
 * later read faults them in again from the file. Returns the bytes dropped. */
BC__HIDDEN uint64_t bc__release_pages(const void *p, uint64_t n);

/* ------------------------------------------------------------------------ */
/* Tensor table: the checkpoint readers' output                             */
/* ------------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------------ */
/* Checkpoint readers: each appends every tensor of one file to the table   */
/* ------------------------------------------------------------------------ */

/* safetensors: u64 header size, JSON header, raw little-endian data. */
BC__HIDDEN int bc__safetensors_read(bc__tensor_table *t, const char *path, bc__err *err);

/* PyTorch torch.save zip archive: data.pkl (a restricted pickle) + storages. */
BC__HIDDEN int bc__torch_read(bc__tensor_table *t, const char *path, bc__err *err);

#endif /* BC_INTERNAL_H */

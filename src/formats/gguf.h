/*
 * gguf.h - GGUF (llama.cpp's single-file model format), versions 2 and 3.
 *
 * Layout (all little-endian):
 *   u32 magic "GGUF", u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x   { string key, u32 value type, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims] (innermost first),
 *                 u32 ggml_type, u64 offset (from the data section) }
 *   padding to general.alignment (default 32), then the data section.
 *   string = u64 length + bytes (no NUL); array = u32 element type, u64 count,
 *   elements (arrays may nest).
 *
 * The reader maps the file, checks every count, length and offset against
 * the file size, and adds the tensors to a tensor table (zero copy). The
 * metadata stays in the mapping; keys are copied.
 */
#ifndef BC_GGUF_H
#define BC_GGUF_H

#include "formats/tensor_table.h"

#include <stdbool.h>

/* GGUF value types. */
enum {
    BC__GGUF_U8 = 0,
    BC__GGUF_I8 = 1,
    BC__GGUF_U16 = 2,
    BC__GGUF_I16 = 3,
    BC__GGUF_U32 = 4,
    BC__GGUF_I32 = 5,
    BC__GGUF_F32 = 6,
    BC__GGUF_BOOL = 7,
    BC__GGUF_STRING = 8,
    BC__GGUF_ARRAY = 9,
    BC__GGUF_U64 = 10,
    BC__GGUF_I64 = 11,
    BC__GGUF_F64 = 12,
    BC__GGUF_TYPE_COUNT
};

#define BC__GGUF_DEFAULT_ALIGNMENT 32

typedef struct bc__gguf_kv {
    char *key;            /* owned, NUL-terminated */
    uint32_t type;        /* BC__GGUF_* */
    uint32_t arr_type;    /* element type of an array */
    uint64_t arr_n;       /* elements of an array */
    const uint8_t *value; /* the value's bytes in the mapping (after the type) */
    uint64_t value_size;  /* bytes of the value */
    uint64_t offset;      /* file offset of the value, for messages */
} bc__gguf_kv;

typedef struct bc__gguf {
    const bc__file *file; /* owned by the tensor table it was read into */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset; /* start of the data section */
    bc__gguf_kv *kvs;     /* (n_kv) */
    size_t n_kv;
} bc__gguf;

/* Reads the GGUF file at path: metadata into g, tensors into t (which owns
 * the mapping afterwards). Tensor shapes are stored outermost first. */
BC__HIDDEN int bc__gguf_read(bc__tensor_table *t, const char *path, bc__gguf *g, bc__err *err);
BC__HIDDEN void bc__gguf_free(bc__gguf *g);

/* True if the file at path starts with the GGUF magic. */
BC__HIDDEN bool bc__gguf_is_file(const char *path);

BC__HIDDEN const bc__gguf_kv *bc__gguf_find(const bc__gguf *g, const char *key);

/* Typed getters: 1 if found and read, 0 if absent, -1 (err set) when the key
 * has the wrong type or (for integers) lies outside [lo, hi]. Any integer
 * type is accepted for an integer, f32 or f64 for a float. */
BC__HIDDEN int bc__gguf_get_int(const bc__gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *out, bc__err *err);
BC__HIDDEN int bc__gguf_get_float(const bc__gguf *g, const char *key, double *out, bc__err *err);
BC__HIDDEN int bc__gguf_get_bool(const bc__gguf *g, const char *key, bool *out, bc__err *err);
/* The string's bytes (not NUL-terminated) stay in the mapping. */
BC__HIDDEN int bc__gguf_get_str(const bc__gguf *g, const char *key, const char **s, size_t *len, bc__err *err);

/* Size of one value of a fixed-size type, 0 for strings and arrays. */
BC__HIDDEN size_t bc__gguf_type_size(uint32_t type);
BC__HIDDEN const char *bc__gguf_type_name(uint32_t type);

#endif /* BC_GGUF_H */

/*
 * base.h - what every layer of the engine uses: errors, checked arithmetic,
 * strings and paths, byte buffers and UTF-8, element types, half-precision
 * conversion, mapped files. Nothing outside the library sees it.
 *
 * Internal symbols carry the bc__ prefix and hidden visibility.
 *
 *   errors        bc__err: a message buffer every fallible function fills
 *   buffers       bc__buf (growable bytes), bc__span (borrowed bytes), UTF-8
 *   dtypes        bc__dtype_traits: how an element type lays out its blocks
 *   mapped files  bc__file: a read-only mmap of a whole file
 */
#ifndef BC_BASE_H
#define BC_BASE_H

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

/* ------------------------------------------------------------------------ */
/* Byte buffers and UTF-8 (buf.c)                                           */
/* ------------------------------------------------------------------------ */

/* A byte range inside a buffer someone else owns. */
typedef struct bc__span {
    const char *ptr;
    size_t len;
} bc__span;

/* A growable byte buffer. */
typedef struct bc__buf {
    char *data;
    size_t len, cap;
} bc__buf;

BC__HIDDEN int bc__buf_reserve(bc__buf *b, size_t extra);
BC__HIDDEN int bc__buf_append(bc__buf *b, const void *p, size_t n);

/* SentencePiece's UTF-8 rules (util.h): the length its lead byte claims
 * (1 for stray bytes), and the strict decoder that maps every malformed,
 * overlong, surrogate or out-of-range sequence to one invalid byte. */
static inline size_t bc__utf8_lead_len(uint8_t c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }
/* Returns the length of the valid sequence at s[0, n) (n >= 1), or 0 if the
 * first byte does not start one. */
BC__HIDDEN size_t bc__utf8_valid_len(const uint8_t *s, size_t n);

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

/* Memory for a big buffer the kernels stream through (repacked weights, the
 * KV pool): from BC__HUGE_PAGE bytes on, on a BC__HUGE_PAGE boundary and
 * advised as transparent huge pages, so that a pass over it costs a TLB miss
 * per 2 MiB instead of per 4 KiB; released with free(). NULL when out of
 * memory. bc__streamed_bytes is what it takes for a buffer of n bytes. */
#define BC__HUGE_PAGE ((size_t)2 << 20)
BC__HIDDEN void *bc__alloc_streamed(size_t n);
static inline size_t bc__streamed_bytes(size_t n) {
    const size_t align = n >= BC__HUGE_PAGE ? BC__HUGE_PAGE : 64;
    return (n + align - 1) / align * align;
}

#endif /* BC_BASE_H */

/*
 * util.c - errors, strings, paths and half-precision tables.
 */
#include "base/base.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

int bc__errorf(bc__err *err, bc_status status, const char *fmt, ...) {
    if (err == NULL || err->status != BC_STATUS_OK) return -1;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    /* A message is one line: control bytes that a file put into a name it
     * quotes (a zip entry's name with a newline, found by fuzz_lora) become
     * '?'. */
    for (char *c = err->msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return -1;
}

void bc__err_copy(const bc__err *err, char *buf, size_t n) {
    if (buf == NULL || n == 0) return;
    snprintf(buf, n, "%s", err->msg);
}

const char *bc_status_name(bc_status status) {
    switch (status) {
    case BC_STATUS_OK: return "ok";
    case BC_STATUS_ERROR_IO: return "i/o error";
    case BC_STATUS_ERROR_FORMAT: return "format error";
    case BC_STATUS_ERROR_MODEL: return "model error";
    case BC_STATUS_ERROR_MEMORY: return "out of memory";
    case BC_STATUS_ERROR_ARGUMENT: return "invalid argument";
    case BC_STATUS_ERROR_CONTEXT_FULL: return "context full";
    case BC_STATUS_ERROR_KV_FULL: return "KV pool full";
    }
    return "unknown status";
}

/* ------------------------------------------------------------------------ */
/* Names of public enums                                                    */
/* ------------------------------------------------------------------------ */

/* Block layouts of llama.cpp's ggml types (ggml-common.h), by element type,
 * and of our blocks for the published 4-bit checkpoints (quants_blocks.h). */
static const bc__dtype_traits dtype_traits[BC_DTYPE_COUNT] = {
    [BC_DTYPE_F32] = {"f32", 1, 4, 0, 4},
    [BC_DTYPE_F16] = {"f16", 1, 2, 1, 2},
    [BC_DTYPE_BF16] = {"bf16", 1, 2, 30, 2},
    [BC_DTYPE_Q8_0] = {"q8_0", 32, 34, 8, 2},
    [BC_DTYPE_Q4_0] = {"q4_0", 32, 18, 2, 2},
    [BC_DTYPE_Q4_1] = {"q4_1", 32, 20, 3, 2},
    [BC_DTYPE_Q5_0] = {"q5_0", 32, 22, 6, 2},
    [BC_DTYPE_Q5_1] = {"q5_1", 32, 24, 7, 2},
    [BC_DTYPE_Q4_K] = {"q4_k", 256, 144, 12, 2},
    [BC_DTYPE_Q5_K] = {"q5_k", 256, 176, 13, 2},
    [BC_DTYPE_Q6_K] = {"q6_k", 256, 210, 14, 2},
    /* Ours, with no ggml type (-1). */
    [BC_DTYPE_NF4] = {"nf4", 64, 36, -1, 4},
    [BC_DTYPE_FP4] = {"fp4", 64, 36, -1, 4},
    [BC_DTYPE_Q4_GPTQ] = {"q4_gptq", 32, 20, -1, 2},
};

const bc__dtype_traits *bc__dtype_traits_of(bc_dtype dtype) {
    return (unsigned)dtype < BC_DTYPE_COUNT ? &dtype_traits[dtype] : NULL;
}

const char *bc_dtype_name(bc_dtype dtype) {
    const bc__dtype_traits *t = bc__dtype_traits_of(dtype);
    return t ? t->name : "?";
}

bool bc_dtype_from_name(const char *name, bc_dtype *out) {
    for (int t = 0; t < BC_DTYPE_COUNT; t++)
        if (name != NULL && strcasecmp(name, bc_dtype_name((bc_dtype)t)) == 0) {
            *out = (bc_dtype)t;
            return true;
        }
    return false;
}

int bc__dtype_row_bytes(bc_dtype dtype, uint64_t n, uint64_t *bytes) {
    const bc__dtype_traits *t = bc__dtype_traits_of(dtype);
    if (t == NULL || n % (uint64_t)t->block_elems != 0) return -1;
    return bc__mul_u64(n / (uint64_t)t->block_elems, (uint64_t)t->block_bytes, bytes);
}

const char *bc_pos_encoding_name(bc_pos_encoding pos_encoding) {
    switch (pos_encoding) {
    case BC_POS_ENCODING_AUTO: return "auto";
    case BC_POS_ENCODING_ROPE: return "rope";
    case BC_POS_ENCODING_ALIBI: return "alibi";
    }
    return "?";
}

const char *bc_file_format_name(bc_file_format format) {
    switch (format) {
    case BC_FILE_FORMAT_SAFETENSORS: return "safetensors";
    case BC_FILE_FORMAT_TORCH: return "pytorch";
    case BC_FILE_FORMAT_GGUF: return "gguf";
    }
    return "?";
}

/* ------------------------------------------------------------------------ */
/* Strings and paths                                                        */
/* ------------------------------------------------------------------------ */

char *bc__strndup(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (r == NULL) return NULL;
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

char *bc__strdup(const char *s) { return bc__strndup(s, strlen(s)); }

char *bc__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *r = malloc(a + (size_t)slash + b + 1);
    if (r == NULL) return NULL;
    memcpy(r, dir, a);
    if (slash) r[a] = '/';
    memcpy(r + a + (size_t)slash, name, b + 1);
    return r;
}

int bc__file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int bc__is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ------------------------------------------------------------------------ */
/* IEEE half precision                                                      */
/* ------------------------------------------------------------------------ */

float bc__f16_table[65536];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static float f16_decode(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13); /* inf or nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13); /* 112 = 127 - 15 */
    } else if (mant == 0) {
        bits = sign; /* signed zero */
    } else {
        /* subnormal: normalize the mantissa */
        int e = -1;
        do {
            e++;
            mant <<= 1;
        } while ((mant & 0x400) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    union {
        uint32_t u;
        float f;
    } v = {bits};
    return v.f;
}

static void f16_fill(void) {
    for (uint32_t i = 0; i < 65536; i++) bc__f16_table[i] = f16_decode((uint16_t)i);
}

void bc__f16_init(void) { pthread_once(&f16_once, f16_fill); }

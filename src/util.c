/*
 * util.c - errors, strings, paths and half-precision tables.
 */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    }
    return "unknown status";
}

/* ------------------------------------------------------------------------ */
/* Names of public enums                                                    */
/* ------------------------------------------------------------------------ */

const char *bc_dtype_name(bc_dtype dtype) {
    switch (dtype) {
    case BC_DTYPE_F32: return "f32";
    case BC_DTYPE_F16: return "f16";
    case BC_DTYPE_BF16: return "bf16";
    case BC_DTYPE_COUNT: break;
    }
    return "?";
}

size_t bc__dtype_size(bc_dtype dtype) {
    switch (dtype) {
    case BC_DTYPE_F32: return 4;
    case BC_DTYPE_F16: return 2;
    case BC_DTYPE_BF16: return 2;
    case BC_DTYPE_COUNT: break;
    }
    return 0;
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

/*
 * gguf.c - reader for GGUF v2 and v3 files (see gguf.h for the layout).
 *
 *   cursor        bounds-checked little-endian reads naming the byte offset
 *   values        skipping (and measuring) values, arrays nested or not
 *   bc__gguf_read header, metadata, tensor infos, data section
 *   getters       typed access to metadata values
 *
 * Every count and length read from the file is checked against the bytes
 * that remain before it is used, so a corrupt count fails fast instead of
 * allocating or looping for ever.
 */
#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC    0x46554747u /* "GGUF" read as a little-endian u32 */
#define MAX_KEY_LEN   65535u      /* llama.cpp's keys are short; this is generous */
#define MAX_NAME_LEN  4096u       /* ggml names hold 64 bytes; generous too */
#define MAX_NESTING   8           /* arrays of arrays of ... */
#define MAX_DIMS_GGUF 4           /* GGML_MAX_DIMS */
#define MAX_ALIGNMENT (1u << 30)

/* ------------------------------------------------------------------------ */
/* Cursor                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct cursor {
    const uint8_t *data;
    uint64_t pos, size;
    const char *path;
    bc__err *err;
} cursor;

static int truncated(cursor *c, const char *what) {
    return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT,
                      "%s: truncated at byte %llu while reading %s (file has %llu bytes)", c->path,
                      (unsigned long long)c->pos, what, (unsigned long long)c->size);
}

static int need(cursor *c, uint64_t n, const char *what) { return n > c->size - c->pos ? truncated(c, what) : 0; }

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what) != 0) return -1;
    memcpy(v, c->data + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what) != 0) return -1;
    memcpy(v, c->data + c->pos, 8);
    c->pos += 8;
    return 0;
}

/* A string: u64 length, bytes. *s points into the file. */
static int rd_str(cursor *c, const char **s, uint64_t *len, uint64_t max_len, const char *what) {
    uint64_t at = c->pos;
    if (rd_u64(c, len, what) != 0) return -1;
    if (*len > max_len)
        return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT, "%s: %s at byte %llu has length %llu (limit %llu)", c->path,
                          what, (unsigned long long)at, (unsigned long long)*len, (unsigned long long)max_len);
    if (need(c, *len, what) != 0) return -1;
    *s = (const char *)c->data + c->pos;
    c->pos += *len;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

size_t bc__gguf_type_size(uint32_t type) {
    switch (type) {
    case BC__GGUF_U8:
    case BC__GGUF_I8:
    case BC__GGUF_BOOL: return 1;
    case BC__GGUF_U16:
    case BC__GGUF_I16: return 2;
    case BC__GGUF_U32:
    case BC__GGUF_I32:
    case BC__GGUF_F32: return 4;
    case BC__GGUF_U64:
    case BC__GGUF_I64:
    case BC__GGUF_F64: return 8;
    default: return 0;
    }
}

const char *bc__gguf_type_name(uint32_t type) {
    static const char *const names[BC__GGUF_TYPE_COUNT] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                           "bool", "string", "array", "u64", "i64", "f64"};
    return type < BC__GGUF_TYPE_COUNT ? names[type] : "?";
}

/* Skips one value of `type`, checking it lies in the file; what names the
 * key for messages. */
static int skip_value(cursor *c, uint32_t type, int depth, const char *what) {
    if (type >= BC__GGUF_TYPE_COUNT)
        return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT, "%s: key '%s': unknown value type %u at byte %llu", c->path,
                          what, type, (unsigned long long)c->pos);
    size_t fixed = bc__gguf_type_size(type);
    if (fixed != 0) {
        if (need(c, fixed, what) != 0) return -1;
        if (type == BC__GGUF_BOOL && c->data[c->pos] > 1)
            return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT, "%s: key '%s': bool value %u at byte %llu is not 0 or 1",
                              c->path, what, c->data[c->pos], (unsigned long long)c->pos);
        c->pos += fixed;
        return 0;
    }
    if (type == BC__GGUF_STRING) {
        const char *s;
        uint64_t len;
        return rd_str(c, &s, &len, c->size, what);
    }
    /* An array: element type, count, elements. */
    if (depth >= MAX_NESTING)
        return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT, "%s: key '%s': arrays nested deeper than %d at byte %llu",
                          c->path, what, MAX_NESTING, (unsigned long long)c->pos);
    uint32_t et;
    uint64_t n, at;
    if (rd_u32(c, &et, what) != 0) return -1;
    at = c->pos;
    if (rd_u64(c, &n, what) != 0) return -1;
    if (et >= BC__GGUF_TYPE_COUNT)
        return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT, "%s: key '%s': unknown array element type %u at byte %llu",
                          c->path, what, et, (unsigned long long)(at - 4));
    /* Every element takes at least one byte (a string or array 8 or more):
     * a count the remaining bytes cannot hold is refused before looping. */
    size_t es = bc__gguf_type_size(et);
    uint64_t min_each = es ? es : (et == BC__GGUF_STRING ? 8 : 12), min_total;
    if (bc__mul_u64(n, min_each, &min_total) != 0 || min_total > c->size - c->pos)
        return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT,
                          "%s: key '%s': array of %llu %s elements at byte %llu does not fit in the file (%llu bytes)",
                          c->path, what, (unsigned long long)n, bc__gguf_type_name(et), (unsigned long long)at,
                          (unsigned long long)c->size);
    if (es != 0 && et != BC__GGUF_BOOL) {
        c->pos += min_total;
        return 0;
    }
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, et, depth + 1, what) != 0) return -1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The file                                                                 */
/* ------------------------------------------------------------------------ */

static int dtype_of_ggml(uint32_t ggml_type, bc_dtype *out) {
    for (int d = 0; d < BC_DTYPE_COUNT; d++)
        if (bc__dtype_traits_of((bc_dtype)d)->ggml_type >= 0 &&
            (uint32_t)bc__dtype_traits_of((bc_dtype)d)->ggml_type == ggml_type) {
            *out = (bc_dtype)d;
            return 0;
        }
    return -1;
}

bool bc__gguf_is_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return false;
    unsigned char m[4];
    bool ok = fread(m, 1, 4, f) == 4 && memcmp(m, "GGUF", 4) == 0;
    fclose(f);
    return ok;
}

static int read_kvs(cursor *c, bc__gguf *g, uint64_t n_kv) {
    g->kvs = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kvs);
    if (g->kvs == NULL) return bc__errorf(c->err, BC_STATUS_ERROR_MEMORY, "out of memory");
    for (uint64_t i = 0; i < n_kv; i++) {
        const char *key;
        uint64_t key_len, key_at = c->pos;
        char what[64];
        snprintf(what, sizeof what, "the key of metadata entry %llu", (unsigned long long)i);
        if (rd_str(c, &key, &key_len, MAX_KEY_LEN, what) != 0) return -1;
        bc__gguf_kv *kv = &g->kvs[g->n_kv];
        if ((kv->key = bc__strndup(key, (size_t)key_len)) == NULL)
            return bc__errorf(c->err, BC_STATUS_ERROR_MEMORY, "out of memory");
        g->n_kv++;
        if (strlen(kv->key) != key_len)
            return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT, "%s: metadata key at byte %llu contains a NUL byte",
                              c->path, (unsigned long long)key_at);
        for (size_t j = 0; j + 1 < g->n_kv; j++)
            if (strcmp(g->kvs[j].key, kv->key) == 0)
                return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT, "%s: metadata key '%s' appears twice (byte %llu)",
                                  c->path, kv->key, (unsigned long long)key_at);
        if (rd_u32(c, &kv->type, kv->key) != 0) return -1;
        kv->offset = c->pos;
        if (kv->type == BC__GGUF_ARRAY) {
            uint32_t et;
            if (rd_u32(c, &et, kv->key) != 0 || rd_u64(c, &kv->arr_n, kv->key) != 0) return -1;
            kv->arr_type = et;
            c->pos = kv->offset; /* skip_value reads the array header again */
        }
        if (skip_value(c, kv->type, 0, kv->key) != 0) return -1;
        kv->value = c->data + kv->offset;
        kv->value_size = c->pos - kv->offset;
    }
    return 0;
}

typedef struct tensor_info {
    const char *name;
    uint64_t name_len;
    uint32_t n_dims;
    uint64_t ne[MAX_DIMS_GGUF];
    uint32_t ggml_type;
    uint64_t offset;
    uint64_t info_at; /* file offset of the entry */
} tensor_info;

static int read_tensor_info(cursor *c, uint64_t i, tensor_info *ti) {
    char what[64];
    snprintf(what, sizeof what, "the name of tensor %llu", (unsigned long long)i);
    ti->info_at = c->pos;
    if (rd_str(c, &ti->name, &ti->name_len, MAX_NAME_LEN, what) != 0) return -1;
    char name[MAX_NAME_LEN + 1];
    memcpy(name, ti->name, (size_t)ti->name_len);
    name[ti->name_len] = '\0';
    if (strlen(name) != ti->name_len)
        return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT, "%s: the name of tensor %llu (byte %llu) contains a NUL byte",
                          c->path, (unsigned long long)i, (unsigned long long)ti->info_at);
    uint64_t at = c->pos;
    if (rd_u32(c, &ti->n_dims, name) != 0) return -1;
    if (ti->n_dims < 1 || ti->n_dims > MAX_DIMS_GGUF)
        return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': %u dimensions at byte %llu (1 to %d allowed)", c->path, name, ti->n_dims,
                          (unsigned long long)at, MAX_DIMS_GGUF);
    for (uint32_t d = 0; d < ti->n_dims; d++) {
        at = c->pos;
        if (rd_u64(c, &ti->ne[d], name) != 0) return -1;
        if (ti->ne[d] > (uint64_t)INT64_MAX)
            return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': dimension %u is %llu at byte %llu",
                              c->path, name, d, (unsigned long long)ti->ne[d], (unsigned long long)at);
    }
    at = c->pos;
    if (rd_u32(c, &ti->ggml_type, name) != 0) return -1;
    bc_dtype dt;
    if (dtype_of_ggml(ti->ggml_type, &dt) != 0)
        return bc__errorf(c->err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': ggml type %u at byte %llu is not one this engine reads (f32, f16, bf16, "
                          "q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K)",
                          c->path, name, ti->ggml_type, (unsigned long long)at);
    return rd_u64(c, &ti->offset, name);
}

int bc__gguf_read(bc__tensor_table *t, const char *path, bc__gguf *g, bc__err *err) {
    memset(g, 0, sizeof *g);
    bc__file *f;
    if (bc__file_map(path, &f, err) != 0) return -1;
    if (bc__table_add_file(t, f, err) != 0) return -1; /* the table owns f from here */
    g->file = f;
    g->alignment = BC__GGUF_DEFAULT_ALIGNMENT;
    cursor c = {f->data, 0, f->size, path, err};

    uint32_t magic;
    uint64_t n_tensors, n_kv;
    if (rd_u32(&c, &magic, "the magic number") != 0) return -1;
    if (magic != GGUF_MAGIC)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: not a GGUF file (the first 4 bytes are not \"GGUF\")",
                          path);
    if (rd_u32(&c, &g->version, "the version") != 0) return -1;
    if (g->version != 2 && g->version != 3)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: GGUF version %u at byte 4 is not supported (versions 2 and 3 are; version 1 files "
                          "predate August 2023: convert them again with llama.cpp)",
                          path, g->version);
    if (rd_u64(&c, &n_tensors, "the tensor count") != 0 || rd_u64(&c, &n_kv, "the metadata count") != 0) return -1;
    /* A tensor info takes at least 8+4+8+4+8 bytes, a key-value 8+4+1. */
    if (n_tensors > (c.size - c.pos) / 32)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor count %llu at byte 8 cannot fit in %llu bytes", path,
                          (unsigned long long)n_tensors, (unsigned long long)c.size);
    if (n_kv > (c.size - c.pos) / 13)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: metadata count %llu at byte 16 cannot fit in %llu bytes",
                          path, (unsigned long long)n_kv, (unsigned long long)c.size);
    if (read_kvs(&c, g, n_kv) != 0) return -1;

    const bc__gguf_kv *al = bc__gguf_find(g, "general.alignment");
    if (al != NULL) {
        uint32_t a = 0;
        if (al->type != BC__GGUF_U32)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: general.alignment (byte %llu) is %s, expected u32",
                              path, (unsigned long long)al->offset, bc__gguf_type_name(al->type));
        memcpy(&a, al->value, 4);
        if (a == 0 || (a & (a - 1)) != 0 || a > MAX_ALIGNMENT)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: general.alignment is %u (byte %llu); it must be a power of two", path, a,
                              (unsigned long long)al->offset);
        g->alignment = a;
    }

    tensor_info *infos = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *infos);
    if (infos == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    int rc = -1;
    for (uint64_t i = 0; i < n_tensors; i++)
        if (read_tensor_info(&c, i, &infos[i]) != 0) goto done;
    uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_offset = c.pos + pad;
    if (g->data_offset > c.size && n_tensors > 0) {
        bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                   "%s: the data section would start at byte %llu, past the end of the file (%llu bytes; truncated?)",
                   path, (unsigned long long)g->data_offset, (unsigned long long)c.size);
        goto done;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        tensor_info *ti = &infos[i];
        char name[MAX_NAME_LEN + 1];
        memcpy(name, ti->name, (size_t)ti->name_len);
        name[ti->name_len] = '\0';
        if (ti->offset % g->alignment != 0) {
            bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                       "%s: tensor '%s' (info at byte %llu): data offset %llu is not a multiple of the alignment %llu",
                       path, name, (unsigned long long)ti->info_at, (unsigned long long)ti->offset,
                       (unsigned long long)g->alignment);
            goto done;
        }
        bc_dtype dt = BC_DTYPE_F32;
        dtype_of_ggml(ti->ggml_type, &dt);
        int64_t shape[BC__MAX_DIMS];
        uint64_t n_rows = 1, row_bytes, n_bytes, abs_off;
        for (uint32_t d = 0; d < ti->n_dims; d++) {
            shape[d] = (int64_t)ti->ne[ti->n_dims - 1 - d]; /* outermost first */
            if (d > 0 && bc__mul_u64(n_rows, ti->ne[d], &n_rows) != 0) n_rows = UINT64_MAX;
        }
        if (bc__dtype_row_bytes(dt, ti->ne[0], &row_bytes) != 0) {
            bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                       "%s: tensor '%s' (info at byte %llu): a row of %llu elements is not a whole number of %s "
                       "blocks (%d)",
                       path, name, (unsigned long long)ti->info_at, (unsigned long long)ti->ne[0], bc_dtype_name(dt),
                       bc__dtype_traits_of(dt)->block_elems);
            goto done;
        }
        if (n_rows == UINT64_MAX || bc__mul_u64(n_rows, row_bytes, &n_bytes) != 0 ||
            bc__add_u64(g->data_offset, ti->offset, &abs_off) != 0 || abs_off > c.size || n_bytes > c.size - abs_off) {
            bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                       "%s: tensor '%s' (info at byte %llu): data at offset %llu of the data section (byte %llu) runs "
                       "past the end of the file (%llu bytes; truncated?)",
                       path, name, (unsigned long long)ti->info_at, (unsigned long long)ti->offset,
                       (unsigned long long)(g->data_offset + ti->offset), (unsigned long long)c.size);
            goto done;
        }
        if (bc__table_add(t, name, dt, (int)ti->n_dims, shape, f, abs_off, n_bytes, err) != 0) goto done;
    }
    rc = 0;
done:
    free(infos);
    return rc;
}

void bc__gguf_free(bc__gguf *g) {
    for (size_t i = 0; i < g->n_kv; i++) free(g->kvs[i].key);
    free(g->kvs);
    memset(g, 0, sizeof *g);
}

/* ------------------------------------------------------------------------ */
/* Getters                                                                  */
/* ------------------------------------------------------------------------ */

const bc__gguf_kv *bc__gguf_find(const bc__gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kvs[i].key, key) == 0) return &g->kvs[i];
    return NULL;
}

static int wrong_type(const bc__gguf *g, const bc__gguf_kv *kv, const char *expected, bc__err *err) {
    return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: metadata '%s' (byte %llu) is %s, expected %s", g->file->path,
                      kv->key, (unsigned long long)kv->offset, bc__gguf_type_name(kv->type), expected);
}

int bc__gguf_get_int(const bc__gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *out, bc__err *err) {
    const bc__gguf_kv *kv = bc__gguf_find(g, key);
    if (kv == NULL) return 0;
    const uint8_t *p = kv->value;
    int64_t v;
    switch (kv->type) {
    case BC__GGUF_U8: v = p[0]; break;
    case BC__GGUF_I8: v = (int8_t)p[0]; break;
    case BC__GGUF_U16: {
        uint16_t x;
        memcpy(&x, p, 2);
        v = x;
        break;
    }
    case BC__GGUF_I16: {
        int16_t x;
        memcpy(&x, p, 2);
        v = x;
        break;
    }
    case BC__GGUF_U32: {
        uint32_t x;
        memcpy(&x, p, 4);
        v = x;
        break;
    }
    case BC__GGUF_I32: {
        int32_t x;
        memcpy(&x, p, 4);
        v = x;
        break;
    }
    case BC__GGUF_U64: {
        uint64_t x;
        memcpy(&x, p, 8);
        if (x > (uint64_t)INT64_MAX) x = (uint64_t)INT64_MAX;
        v = (int64_t)x;
        break;
    }
    case BC__GGUF_I64: memcpy(&v, p, 8); break;
    default: return wrong_type(g, kv, "an integer", err);
    }
    if (v < lo || v > hi)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: metadata '%s' is %lld, outside [%lld, %lld]", g->file->path,
                          key, (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return 1;
}

int bc__gguf_get_float(const bc__gguf *g, const char *key, double *out, bc__err *err) {
    const bc__gguf_kv *kv = bc__gguf_find(g, key);
    if (kv == NULL) return 0;
    if (kv->type == BC__GGUF_F32) {
        float x;
        memcpy(&x, kv->value, 4);
        *out = x;
    } else if (kv->type == BC__GGUF_F64) {
        memcpy(out, kv->value, 8);
    } else {
        return wrong_type(g, kv, "f32 or f64", err);
    }
    return 1;
}

int bc__gguf_get_bool(const bc__gguf *g, const char *key, bool *out, bc__err *err) {
    const bc__gguf_kv *kv = bc__gguf_find(g, key);
    if (kv == NULL) return 0;
    if (kv->type != BC__GGUF_BOOL) return wrong_type(g, kv, "bool", err);
    *out = kv->value[0] != 0;
    return 1;
}

int bc__gguf_get_str(const bc__gguf *g, const char *key, const char **s, size_t *len, bc__err *err) {
    const bc__gguf_kv *kv = bc__gguf_find(g, key);
    if (kv == NULL) return 0;
    if (kv->type != BC__GGUF_STRING) return wrong_type(g, kv, "a string", err);
    uint64_t n;
    memcpy(&n, kv->value, 8);
    *s = (const char *)kv->value + 8;
    *len = (size_t)n;
    return 1;
}

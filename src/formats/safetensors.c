/*
 * safetensors.c - reader for the safetensors format.
 *
 * Layout: u64 little-endian N, then N bytes of UTF-8 JSON
 *   {"name": {"dtype": "BF16", "shape": [a, b], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value"}}
 * then the data; offsets are relative to the first byte after the header.
 *
 * As strict as the reference implementation (the Rust `safetensors` crate):
 * every tensor's size matches its shape and dtype, and the byte ranges, sorted
 * by (begin, end), tile the data section exactly: the first begins at 0, each
 * begins where the one before ended, the last ends at the end of the file. An
 * empty tensor occupies no bytes but still sits at such a boundary.
 */
#include "formats/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Header sizes beyond this are not a real checkpoint's (a 13B header is ~40 KB). */
#define SAFETENSORS_MAX_HEADER (100u << 20)

/* The format's dtypes; those the model cannot use map to BC_DTYPE_COUNT. */
typedef struct st_dtype {
    const char *name;
    int bits; /* per element */
    bc_dtype dtype;
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 32, BC_DTYPE_F32},          {"F16", 16, BC_DTYPE_F16},      {"BF16", 16, BC_DTYPE_BF16},
    {"F64", 64, BC_DTYPE_COUNT},        {"C64", 64, BC_DTYPE_COUNT},    {"I64", 64, BC_DTYPE_COUNT},
    {"U64", 64, BC_DTYPE_COUNT},        {"I32", 32, BC_DTYPE_COUNT},    {"U32", 32, BC_DTYPE_COUNT},
    {"I16", 16, BC_DTYPE_COUNT},        {"U16", 16, BC_DTYPE_COUNT},    {"I8", 8, BC_DTYPE_COUNT},
    {"U8", 8, BC_DTYPE_COUNT},          {"BOOL", 8, BC_DTYPE_COUNT},    {"F8_E4M3", 8, BC_DTYPE_COUNT},
    {"F8_E5M2", 8, BC_DTYPE_COUNT},     {"F8_E8M0", 8, BC_DTYPE_COUNT}, {"F8_E4M3FNUZ", 8, BC_DTYPE_COUNT},
    {"F8_E5M2FNUZ", 8, BC_DTYPE_COUNT}, {"F6_E2M3", 6, BC_DTYPE_COUNT}, {"F6_E3M2", 6, BC_DTYPE_COUNT},
    {"F4", 4, BC_DTYPE_COUNT},
};

static const st_dtype *find_dtype(const char *s) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) return &st_dtypes[i];
    return NULL;
}

/* One header entry, checked on its own; tiling is checked across all of them. */
typedef struct st_entry {
    const char *name; /* owned by the JSON header */
    const st_dtype *dtype;
    int n_dims;
    int64_t shape[BC__MAX_DIMS];
    uint64_t begin, end; /* data_offsets */
} st_entry;

static int read_u64_pair(json_t *arr, uint64_t out[2]) {
    if (!json_is_array(arr) || json_array_size(arr) != 2) return -1;
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
        out[i] = (uint64_t)json_integer_value(v);
    }
    return 0;
}

static int parse_entry(const char *path, const char *name, json_t *info, st_entry *e, bc__err *err) {
    e->name = name;
    if (!json_is_object(info))
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: header entry for tensor '%s' is not an object", path, name);
    json_t *jdtype = json_object_get(info, "dtype");
    json_t *jshape = json_object_get(info, "shape");
    json_t *joffsets = json_object_get(info, "data_offsets");
    if (!json_is_string(jdtype))
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    e->dtype = find_dtype(json_string_value(jdtype));
    if (e->dtype == NULL)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': unknown dtype \"%s\" (not a safetensors dtype; the model reads F32, F16, "
                          "BF16)",
                          path, name, json_string_value(jdtype));
    if (!json_is_array(jshape))
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    size_t n_dims = json_array_size(jshape);
    if (n_dims > BC__MAX_DIMS)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d supported)", path,
                          name, n_dims, BC__MAX_DIMS);
    e->n_dims = (int)n_dims;
    uint64_t n_elems = 1;
    bool overflow = false;
    for (size_t i = 0; i < n_dims; i++) {
        json_t *d = json_array_get(jshape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: tensor '%s': shape entry %zu is not a non-negative integer", path, name, i);
        e->shape[i] = (int64_t)json_integer_value(d);
        overflow |= bc__mul_u64(n_elems, (uint64_t)e->shape[i], &n_elems) != 0;
    }
    uint64_t off[2];
    if (read_u64_pair(joffsets, off) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': \"data_offsets\" must be two non-negative integers", path, name);
    if (off[1] < off[0])
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, name,
                          (unsigned long long)off[0], (unsigned long long)off[1]);
    e->begin = off[0];
    e->end = off[1];
    /* Sizes in bits, as the reference does: sub-byte dtypes must fill whole bytes. */
    uint64_t n_bits;
    if (overflow || bc__mul_u64(n_elems, (uint64_t)e->dtype->bits, &n_bits) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': element count overflows", path, name);
    if (n_bits % 8 != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': %llu elements of %s (%d bits) are not a whole number of bytes", path, name,
                          (unsigned long long)n_elems, e->dtype->name, e->dtype->bits);
    if (n_bits / 8 != e->end - e->begin)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': shape and dtype %s need %llu bytes but the file gives %llu", path, name,
                          e->dtype->name, (unsigned long long)(n_bits / 8), (unsigned long long)(e->end - e->begin));
    return 0;
}

static int by_range(const void *pa, const void *pb) {
    const st_entry *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return 0;
}

/* e[0..n) sorted by range must tile [0, data_len). */
static int check_tiling(const char *path, const st_entry *e, size_t n, uint64_t data_len, bc__err *err) {
    if (n == 0) {
        if (data_len == 0) return 0;
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: the header lists no tensors but %llu bytes of data follow it", path,
                          (unsigned long long)data_len);
    }
    if (e[0].begin != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: data bytes [0, %llu) belong to no tensor: the first, '%s', has data_offsets [%llu, "
                          "%llu]",
                          path, (unsigned long long)e[0].begin, e[0].name, (unsigned long long)e[0].begin,
                          (unsigned long long)e[0].end);
    for (size_t i = 1; i < n; i++) {
        const st_entry *a = &e[i - 1], *b = &e[i];
        if (b->begin < a->end)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: tensors '%s' (data_offsets [%llu, %llu]) and '%s' (data_offsets [%llu, %llu]) "
                              "overlap",
                              path, a->name, (unsigned long long)a->begin, (unsigned long long)a->end, b->name,
                              (unsigned long long)b->begin, (unsigned long long)b->end);
        if (b->begin > a->end)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: data bytes [%llu, %llu) belong to no tensor: a hole between '%s' (data_offsets "
                              "[%llu, %llu]) and '%s' (data_offsets [%llu, %llu])",
                              path, (unsigned long long)a->end, (unsigned long long)b->begin, a->name,
                              (unsigned long long)a->begin, (unsigned long long)a->end, b->name,
                              (unsigned long long)b->begin, (unsigned long long)b->end);
    }
    const st_entry *last = &e[n - 1];
    if (last->end > data_len)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data (%llu bytes; "
                          "truncated?)",
                          path, last->name, (unsigned long long)last->begin, (unsigned long long)last->end,
                          (unsigned long long)data_len);
    if (last->end < data_len)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: data bytes [%llu, %llu) after the last tensor, '%s' (data_offsets [%llu, %llu]), "
                          "belong to no tensor",
                          path, (unsigned long long)last->end, (unsigned long long)data_len, last->name,
                          (unsigned long long)last->begin, (unsigned long long)last->end);
    return 0;
}

int bc__safetensors_read(bc__tensor_table *t, const char *path, bc__err *err) {
    bc__file *f;
    if (bc__file_map(path, &f, err) != 0) return -1;
    if (bc__table_add_file(t, f, err) != 0) return -1; /* the table owns f from here */

    if (f->size < 8)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: %llu bytes is too short for a safetensors file (truncated?)", path,
                          (unsigned long long)f->size);
    uint64_t header_size;
    memcpy(&header_size, f->data, 8);
    if (header_size > SAFETENSORS_MAX_HEADER)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: header size %llu is implausible (limit %u; not a safetensors file?)", path,
                          (unsigned long long)header_size, SAFETENSORS_MAX_HEADER);
    if (header_size > f->size - 8)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: header of %llu bytes runs past the end of the file (%llu bytes; truncated?)", path,
                          (unsigned long long)header_size, (unsigned long long)f->size);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->data + 8, (size_t)header_size, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: header is not valid JSON: %s (at byte %d of the header)",
                          path, jerr.text, jerr.position);
    int rc = -1;
    st_entry *entries = NULL;
    size_t n = 0;
    if (!json_is_object(root)) {
        bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: header is not a JSON object", path);
        goto cleanup;
    }
    entries = malloc((json_object_size(root) + 1) * sizeof *entries);
    if (entries == NULL) {
        bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
        goto cleanup;
    }
    const char *name;
    json_t *info;
    json_object_foreach(root, name, info) {
        if (strcmp(name, "__metadata__") == 0) continue;
        if (parse_entry(path, name, info, &entries[n], err) != 0) goto cleanup;
        n++;
    }
    qsort(entries, n, sizeof *entries, by_range);
    uint64_t data_start = 8 + header_size;
    if (check_tiling(path, entries, n, f->size - data_start, err) != 0) goto cleanup;
    for (size_t i = 0; i < n; i++) {
        const st_entry *e = &entries[i];
        if (e->dtype->dtype == BC_DTYPE_COUNT) {
            if (bc__table_add_foreign(t, e->name, e->dtype->name, e->n_dims, e->shape, f, data_start + e->begin,
                                      e->end - e->begin, err) != 0)
                goto cleanup;
        } else if (bc__table_add(t, e->name, e->dtype->dtype, e->n_dims, e->shape, f, data_start + e->begin,
                                 e->end - e->begin, err) != 0) {
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    free(entries);
    json_decref(root);
    return rc;
}

/*
 * safetensors.c - reader for the safetensors format.
 *
 * Layout: u64 little-endian N, then N bytes of UTF-8 JSON
 *   {"name": {"dtype": "BF16", "shape": [a, b], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value"}}
 * then the data; offsets are relative to the first byte after the header.
 */
#include "internal.h"

#include <jansson.h>
#include <string.h>

/* Header sizes beyond this are not a real checkpoint's (a 13B header is ~40 KB). */
#define SAFETENSORS_MAX_HEADER (100u << 20)

static int parse_dtype(const char *s, bc_dtype *out) {
    if (strcmp(s, "F32") == 0)
        *out = BC_DTYPE_F32;
    else if (strcmp(s, "F16") == 0)
        *out = BC_DTYPE_F16;
    else if (strcmp(s, "BF16") == 0)
        *out = BC_DTYPE_BF16;
    else
        return -1;
    return 0;
}

static int read_u64_pair(json_t *arr, uint64_t out[2]) {
    if (!json_is_array(arr) || json_array_size(arr) != 2) return -1;
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
        out[i] = (uint64_t)json_integer_value(v);
    }
    return 0;
}

static int add_tensor(bc__tensor_table *t, const bc__file *f, uint64_t data_start, const char *name, json_t *info,
                      bc__err *err) {
    const char *path = f->path;
    if (!json_is_object(info))
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: header entry for tensor '%s' is not an object", path, name);
    json_t *jdtype = json_object_get(info, "dtype");
    json_t *jshape = json_object_get(info, "shape");
    json_t *joffsets = json_object_get(info, "data_offsets");
    if (!json_is_string(jdtype))
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    bc_dtype dtype;
    if (parse_dtype(json_string_value(jdtype), &dtype) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': unsupported dtype \"%s\" (supported: F32, F16, BF16)", path, name,
                          json_string_value(jdtype));
    if (!json_is_array(jshape))
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    size_t n_dims = json_array_size(jshape);
    if (n_dims > BC__MAX_DIMS)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d supported)", path,
                          name, n_dims, BC__MAX_DIMS);
    int64_t shape[BC__MAX_DIMS] = {0};
    for (size_t i = 0; i < n_dims; i++) {
        json_t *d = json_array_get(jshape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: tensor '%s': shape entry %zu is not a non-negative integer", path, name, i);
        shape[i] = (int64_t)json_integer_value(d);
    }
    uint64_t off[2];
    if (read_u64_pair(joffsets, off) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': \"data_offsets\" must be two non-negative integers", path, name);
    if (off[1] < off[0])
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, name,
                          (unsigned long long)off[0], (unsigned long long)off[1]);
    uint64_t abs_begin;
    if (bc__add_u64(data_start, off[0], &abs_begin) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': data offset overflows", path, name);
    return bc__table_add(t, name, dtype, (int)n_dims, shape, f, abs_begin, off[1] - off[0], err);
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
    int rc = 0;
    if (!json_is_object(root)) {
        rc = bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: header is not a JSON object", path);
        goto cleanup;
    }
    uint64_t data_start = 8 + header_size;
    const char *name;
    json_t *info;
    json_object_foreach(root, name, info) {
        if (strcmp(name, "__metadata__") == 0) continue;
        if (add_tensor(t, f, data_start, name, info, err) != 0) {
            rc = -1;
            goto cleanup;
        }
    }
cleanup:
    json_decref(root);
    return rc;
}

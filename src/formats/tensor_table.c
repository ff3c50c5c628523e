/*
 * tensor_table.c - the list of named tensors the checkpoint readers produce.
 *
 * A table owns the mappings its tensors point into. The model builder looks
 * tensors up by name; a checkpoint holds a few hundred, so a linear search is
 * all the index it needs.
 */
#include "formats/tensor_table.h"

#include <stdlib.h>
#include <string.h>

static int grow(void **items, size_t *cap, size_t n, size_t item_size) {
    if (n < *cap) return 0;
    size_t new_cap = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, new_cap * item_size);
    if (p == NULL) return -1;
    *items = p;
    *cap = new_cap;
    return 0;
}

int bc__table_add_file(bc__tensor_table *t, bc__file *file, bc__err *err) {
    if (grow((void **)&t->files, &t->cap_files, t->n_files, sizeof *t->files) != 0) {
        bc__file_unmap(file);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    }
    t->files[t->n_files++] = file;
    return 0;
}

const bc__tensor *bc__table_find(const bc__tensor_table *t, const char *name) {
    for (size_t i = 0; i < t->n_tensors; i++)
        if (strcmp(t->tensors[i].name, name) == 0) return &t->tensors[i];
    return NULL;
}

/* The bytes lie inside the file, the name is new, and there is room for one more. */
static int check_place(bc__tensor_table *t, const char *name, const bc__file *file, uint64_t offset, uint64_t n_bytes,
                       bc__err *err) {
    const char *path = file->path;
    uint64_t end;
    if (bc__add_u64(offset, n_bytes, &end) != 0 || end > file->size)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': bytes [%llu, %llu) lie past the end of the file (%llu bytes; "
                          "truncated?)",
                          path, name, (unsigned long long)offset, (unsigned long long)(offset + n_bytes),
                          (unsigned long long)file->size);
    if (bc__table_find(t, name) != NULL)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s' appears twice in the checkpoint", path, name);
    if (grow((void **)&t->tensors, &t->cap_tensors, t->n_tensors, sizeof *t->tensors) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    return 0;
}

int bc__table_add(bc__tensor_table *t, const char *name, bc_dtype dtype, int n_dims, const int64_t *shape,
                  const bc__file *file, uint64_t offset, uint64_t n_bytes, bc__err *err) {
    const char *path = file->path;
    if (n_dims < 0 || n_dims > BC__MAX_DIMS)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d supported)", path,
                          name, n_dims, BC__MAX_DIMS);
    /* Rows of the innermost dimension, each a whole number of blocks. */
    uint64_t n_rows = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s' has negative dimension %lld", path, name,
                              (long long)shape[i]);
        if (i + 1 < n_dims && bc__mul_u64(n_rows, (uint64_t)shape[i], &n_rows) != 0)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': element count overflows", path, name);
    }
    uint64_t row_len = n_dims > 0 ? (uint64_t)shape[n_dims - 1] : 1, row_bytes, expect;
    if (bc__dtype_row_bytes(dtype, row_len, &row_bytes) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': a row of %llu elements is not a whole number of %s blocks (%d)", path, name,
                          (unsigned long long)row_len, bc_dtype_name(dtype),
                          bc__dtype_traits_of(dtype) ? bc__dtype_traits_of(dtype)->block_elems : 0);
    if (bc__mul_u64(n_rows, row_bytes, &expect) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s': byte size overflows", path, name);
    if (expect != n_bytes)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s': shape and dtype %s need %llu bytes but the file gives %llu", path, name,
                          bc_dtype_name(dtype), (unsigned long long)expect, (unsigned long long)n_bytes);
    if (check_place(t, name, file, offset, n_bytes, err) != 0) return -1;

    const void *data = file->data + offset;
    if (((uintptr_t)data % (uintptr_t)bc__dtype_traits_of(dtype)->align) != 0 && n_bytes > 0) {
        /* Unaligned bytes cannot be read as their type in place. */
        if (grow((void **)&t->copies, &t->cap_copies, t->n_copies, sizeof *t->copies) != 0)
            return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
        void *copy = malloc(n_bytes);
        if (copy == NULL)
            return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: tensor '%s': out of memory copying %llu bytes", path,
                              name, (unsigned long long)n_bytes);
        memcpy(copy, data, n_bytes);
        t->copies[t->n_copies++] = copy;
        data = copy;
    }
    char *owned_name = bc__strdup(name);
    if (owned_name == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");

    bc__tensor *x = &t->tensors[t->n_tensors++];
    memset(x, 0, sizeof *x);
    x->name = owned_name;
    x->dtype = dtype;
    x->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) x->shape[i] = shape[i];
    x->data = data;
    x->n_bytes = n_bytes;
    x->file = file;
    x->file_offset = offset;
    return 0;
}

int bc__table_add_foreign(bc__tensor_table *t, const char *name, const char *foreign_dtype, int n_dims,
                          const int64_t *shape, const bc__file *file, uint64_t offset, uint64_t n_bytes, bc__err *err) {
    if (n_dims < 0 || n_dims > BC__MAX_DIMS)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d supported)",
                          file->path, name, n_dims, BC__MAX_DIMS);
    if (check_place(t, name, file, offset, n_bytes, err) != 0) return -1;
    char *owned_name = bc__strdup(name);
    if (owned_name == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    bc__tensor *x = &t->tensors[t->n_tensors++];
    memset(x, 0, sizeof *x);
    x->name = owned_name;
    x->dtype = BC_DTYPE_COUNT;
    x->foreign_dtype = foreign_dtype;
    x->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) x->shape[i] = shape[i];
    x->data = file->data + offset;
    x->n_bytes = n_bytes;
    x->file = file;
    x->file_offset = offset;
    return 0;
}

uint64_t bc__tensor_release(const bc__tensor *x) {
    const uintptr_t p = (uintptr_t)x->data, file = (uintptr_t)x->file->data;
    if (p < file || p - file > x->file->size || x->n_bytes > x->file->size - (p - file)) return 0;
    return bc__release_pages(x->data, x->n_bytes);
}

int bc__table_add_bnb(bc__tensor_table *t, const bc__bnb_state *state, bc__err *err) {
    if (bc__table_find_bnb(t, state->weight) != NULL)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: '%s.quant_state' appears twice in the checkpoint",
                          state->file->path, state->weight);
    if (grow((void **)&t->bnb, &t->cap_bnb, t->n_bnb, sizeof *t->bnb) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    char *weight = bc__strdup(state->weight);
    if (weight == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    t->bnb[t->n_bnb] = *state;
    t->bnb[t->n_bnb++].weight = weight;
    return 0;
}

const bc__bnb_state *bc__table_find_bnb(const bc__tensor_table *t, const char *weight) {
    for (size_t i = 0; i < t->n_bnb; i++)
        if (strcmp(t->bnb[i].weight, weight) == 0) return &t->bnb[i];
    return NULL;
}

void bc__table_free(bc__tensor_table *t) {
    for (size_t i = 0; i < t->n_bnb; i++) free(t->bnb[i].weight);
    free(t->bnb);
    for (size_t i = 0; i < t->n_tensors; i++) free(t->tensors[i].name);
    for (size_t i = 0; i < t->n_files; i++) bc__file_unmap(t->files[i]);
    for (size_t i = 0; i < t->n_copies; i++) free(t->copies[i]);
    free(t->tensors);
    free(t->files);
    free(t->copies);
    memset(t, 0, sizeof *t);
}

/*
 * checkpoint.c - find a directory's weight files and read them into a table.
 *
 * Preference order (the first that exists wins):
 *   model.safetensors.index.json   shards listed in "weight_map"
 *   model.safetensors
 *   pytorch_model.bin.index.json   shards listed in "weight_map"
 *   pytorch_model.bin
 * With an index, every tensor it names must be found in the shard it names.
 */
#include "formats/checkpoint.h"

#include "formats/json_file.h"
#include "formats/safetensors.h"
#include "formats/torch.h"

#include <stdlib.h>
#include <string.h>

typedef int (*reader_fn)(bc__tensor_table *, const char *, bc__err *);

typedef struct checkpoint_kind {
    const char *index_name;
    const char *single_name;
    bc_file_format format;
    reader_fn read;
} checkpoint_kind;

static const checkpoint_kind kinds[] = {
    {"model.safetensors.index.json", "model.safetensors", BC_FILE_FORMAT_SAFETENSORS, bc__safetensors_read},
    {"pytorch_model.bin.index.json", "pytorch_model.bin", BC_FILE_FORMAT_TORCH, bc__torch_read},
};

/* A shard name from an index must be a plain file name inside the directory. */
static int shard_name_ok(const char *name) {
    return name[0] != '\0' && strchr(name, '/') == NULL && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int read_indexed(bc__tensor_table *t, const char *dir, const char *index_path, reader_fn read, int *n_files,
                        bc__err *err) {
    json_t *root;
    if (bc__json_file_load(index_path, &root, err) != 0) return -1;
    int rc = -1;
    const char **shards = NULL;
    size_t n_shards = 0;
    char *shard_path = NULL;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: missing or empty \"weight_map\" object", index_path);
        goto cleanup;
    }
    shards = calloc(json_object_size(map), sizeof *shards);
    if (shards == NULL) {
        bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
        goto cleanup;
    }
    /* Distinct shard names, in order of first mention. */
    const char *name;
    json_t *v;
    json_object_foreach(map, name, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                       "%s: weight_map[\"%s\"] must be the file name of a shard in the same directory", index_path,
                       name);
            goto cleanup;
        }
        const char *s = json_string_value(v);
        size_t i = 0;
        while (i < n_shards && strcmp(shards[i], s) != 0) i++;
        if (i == n_shards) shards[n_shards++] = s;
    }
    for (size_t i = 0; i < n_shards; i++) {
        free(shard_path);
        shard_path = bc__path_join(dir, shards[i]);
        if (shard_path == NULL) {
            bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
            goto cleanup;
        }
        if (!bc__file_exists(shard_path)) {
            bc__errorf(err, BC_STATUS_ERROR_IO, "%s: names shard '%s', which does not exist (%s)", index_path,
                       shards[i], shard_path);
            goto cleanup;
        }
        if (read(t, shard_path, err) != 0) goto cleanup;
    }
    /* Every tensor the index names must be in the shard it names. */
    json_object_foreach(map, name, v) {
        const bc__tensor *x = bc__table_find(t, name);
        const char *want = json_string_value(v);
        if (x == NULL) {
            bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s' is listed in shard '%s' but not found there",
                       index_path, name, want);
            goto cleanup;
        }
        const char *base = strrchr(x->file->path, '/');
        base = base ? base + 1 : x->file->path;
        if (strcmp(base, want) != 0) {
            bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%s' is listed in shard '%s' but found in '%s'",
                       index_path, name, want, base);
            goto cleanup;
        }
    }
    *n_files = (int)n_shards;
    rc = 0;
cleanup:
    free(shard_path);
    free(shards);
    json_decref(root);
    return rc;
}

int bc__checkpoint_read(bc__tensor_table *t, const char *dir, bc_file_format *format, int *n_files, bc__err *err) {
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        char *index = bc__path_join(dir, kinds[k].index_name);
        char *single = bc__path_join(dir, kinds[k].single_name);
        int rc = 1; /* 1: not this kind */
        if (index == NULL || single == NULL) {
            rc = bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
        } else if (bc__file_exists(index)) {
            rc = read_indexed(t, dir, index, kinds[k].read, n_files, err);
        } else if (bc__file_exists(single)) {
            rc = kinds[k].read(t, single, err);
            *n_files = 1;
        }
        free(index);
        free(single);
        if (rc <= 0) {
            *format = kinds[k].format;
            return rc;
        }
    }
    return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                      "%s: no weights found (expected model.safetensors, pytorch_model.bin, or their "
                      ".index.json for shards)",
                      dir);
}

/*
 * json_file.h - the JSON files of a model directory (config.json, the
 * generation and tokenizer configs, a shard index): loading one with its
 * size checked, and typed field getters whose messages name the file, the
 * field, and what was found.
 */
#ifndef BC_JSON_FILE_H
#define BC_JSON_FILE_H

#include "base/base.h"

#include <jansson.h>
#include <stdbool.h>

/* The largest JSON file of a model directory read (config.json, the shard
 * index, ...): the real ones hold kilobytes; a larger file is refused before
 * it is parsed. */
#define BC__JSON_FILE_MAX ((long long)16 << 20)

/* Parses the JSON file at path (duplicate keys refused) into *out, which the
 * caller frees with json_decref. Refuses a file over BC__JSON_FILE_MAX bytes;
 * every error names the file (and the line and column of a syntax error). */
BC__HIDDEN int bc__json_file_load(const char *path, json_t **out, bc__err *err);

/* A JSON object being read, for messages that name it: a file's top level,
 * or an object inside one with path saying where ("config.json:
 * quantization_config"). */
typedef struct bc__json_doc {
    const char *path;
    json_t *root;
} bc__json_doc;

/* Loads the file at path into doc (doc->path = path); its top level must be
 * an object. The caller frees doc->root with json_decref. */
BC__HIDDEN int bc__json_doc_load(bc__json_doc *doc, const char *path, bc__err *err);

/* The kind of a JSON value with its article, for messages: "an object". */
BC__HIDDEN const char *bc__json_kind(const json_t *v);

/* The field getters. A field that is absent or null takes its default;
 * anything else of the wrong type or outside its range is an error
 * (BC_STATUS_ERROR_MODEL) naming doc->path and the field. */

/* Integer field in [lo, hi]. Absent: *out = def, or an error if required. */
BC__HIDDEN int bc__json_get_int(const bc__json_doc *doc, const char *key, int required, long long def, long long lo,
                                long long hi, int *out, bc__err *err);
/* Number field (integer or real) in [lo, hi]; absent: def. */
BC__HIDDEN int bc__json_get_float(const bc__json_doc *doc, const char *key, double def, double lo, double hi,
                                  float *out, bc__err *err);
/* Boolean field; absent: def. *present (when not NULL) tells whether it was there. */
BC__HIDDEN int bc__json_get_bool(const bc__json_doc *doc, const char *key, bool def, bool *out, bool *present,
                                 bc__err *err);
/* String field; absent: NULL. */
BC__HIDDEN int bc__json_get_string(const bc__json_doc *doc, const char *key, const char **out, bc__err *err);

#endif /* BC_JSON_FILE_H */

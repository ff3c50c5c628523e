/*
 * json_file.c - a model directory's JSON files: loading one (size checked,
 * duplicate keys refused) and the typed field getters with their messages.
 */
#include "formats/json_file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int bc__json_file_load(const char *path, json_t **out, bc__err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: not a regular file", path);
    }
    if ((long long)st.st_size > BC__JSON_FILE_MAX) {
        fclose(f);
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: %lld bytes is more than a JSON file may hold (%lld MiB)",
                          path, (long long)st.st_size, BC__JSON_FILE_MAX >> 20);
    }
    json_error_t jerr;
    *out = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (*out == NULL)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", path, jerr.line,
                          jerr.column, jerr.text);
    return 0;
}

int bc__json_doc_load(bc__json_doc *doc, const char *path, bc__err *err) {
    doc->path = path;
    if (bc__json_file_load(path, &doc->root, err) != 0) return -1;
    if (!json_is_object(doc->root)) {
        json_decref(doc->root);
        doc->root = NULL;
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: top level is not a JSON object", path);
    }
    return 0;
}

const char *bc__json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Integer field in [lo, hi]. Absent: *out = def, or an error if required. */
int bc__json_get_int(const bc__json_doc *doc, const char *key, int required, long long def, long long lo, long long hi,
                     int *out, bc__err *err) {
    json_t *v = json_object_get(doc->root, key);
    if (v == NULL || json_is_null(v)) {
        if (required) return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: missing field \"%s\"", doc->path, key);
        *out = (int)def;
        return 0;
    }
    if (!json_is_integer(v))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: field \"%s\" must be an integer, found %s", doc->path, key,
                          bc__json_kind(v));
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: field \"%s\" is %lld, outside [%lld, %lld]", doc->path, key,
                          x, lo, hi);
    *out = (int)x;
    return 0;
}

/* Number field (integer or real) in [lo, hi]; absent: def. */
int bc__json_get_float(const bc__json_doc *doc, const char *key, double def, double lo, double hi, float *out,
                       bc__err *err) {
    json_t *v = json_object_get(doc->root, key);
    if (v == NULL || json_is_null(v)) {
        *out = (float)def;
        return 0;
    }
    if (!json_is_number(v))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: field \"%s\" must be a number, found %s", doc->path, key,
                          bc__json_kind(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: field \"%s\" is %g, outside [%g, %g]", doc->path, key, x, lo,
                          hi);
    *out = (float)x;
    return 0;
}

/* Boolean field; absent: def. *present tells whether it was there. */
int bc__json_get_bool(const bc__json_doc *doc, const char *key, bool def, bool *out, bool *present, bc__err *err) {
    json_t *v = json_object_get(doc->root, key);
    if (present) *present = false;
    if (v == NULL || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: field \"%s\" must be true or false, found %s", doc->path,
                          key, bc__json_kind(v));
    *out = json_is_true(v);
    if (present) *present = true;
    return 0;
}

/* String field; absent: NULL. */
int bc__json_get_string(const bc__json_doc *doc, const char *key, const char **out, bc__err *err) {
    json_t *v = json_object_get(doc->root, key);
    *out = NULL;
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_string(v))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: field \"%s\" must be a string, found %s", doc->path, key,
                          bc__json_kind(v));
    *out = json_string_value(v);
    return 0;
}

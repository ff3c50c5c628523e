/*
 * tenants.c - the tenants file, key lookup in constant time, and the
 * per-tenant limits (requests per minute, tokens per UTC day).
 *
 *   {"tenants": [{"name": "...", "keys": ["..."], "requests_per_minute": N, "tokens_per_day": N}]}
 *
 * The limits are optional (absent or 0: unlimited). Keys are never logged.
 */
#include "server.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A tenants file holds a few bytes per key; a larger one is refused unread. */
#define MAX_FILE_BYTES ((long long)16 << 20)

static int fail(char *err, size_t err_size, const char *path, const char *field, const char *what) {
    snprintf(err, err_size, "%s: %s: %s", path, field, what);
    return -1;
}

/* A non-negative integer field (absent: 0). */
static int read_limit(json_t *obj, const char *key, long long max, long long *out, const char *path, size_t i,
                      char *err, size_t err_size) {
    char field[96];
    snprintf(field, sizeof field, "tenants[%zu].%s", i, key);
    json_t *v = json_object_get(obj, key);
    *out = 0;
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return fail(err, err_size, path, field, "must be an integer >= 0 (0 = unlimited)");
    *out = json_integer_value(v);
    return 0;
}

int srv_tenants_load(srv_tenants *t, const char *path, char *err, size_t err_size) {
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (long long)st.st_size > MAX_FILE_BYTES) {
        fclose(f);
        snprintf(err, err_size, "%s: not a regular file of at most %lld MiB", path, MAX_FILE_BYTES >> 20);
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (root == NULL) {
        snprintf(err, err_size, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
        return -1;
    }
    int rc = -1;
    json_t *list = json_object_get(root, "tenants");
    if (!json_is_object(root) || !json_is_array(list)) {
        fail(err, err_size, path, "tenants", "missing: expected {\"tenants\": [...]}");
        goto cleanup;
    }
    if (json_array_size(list) == 0) {
        fail(err, err_size, path, "tenants", "empty: at least one tenant is needed");
        goto cleanup;
    }
    t->tenants = calloc(json_array_size(list), sizeof *t->tenants);
    if (t->tenants == NULL) {
        fail(err, err_size, path, "tenants", "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *o = json_array_get(list, i), *name = json_object_get(o, "name"), *keys = json_object_get(o, "keys");
        char field[96];
        srv_tenant *tn = &t->tenants[t->n++];
        snprintf(field, sizeof field, "tenants[%zu]", i);
        if (!json_is_object(o)) {
            fail(err, err_size, path, field, "must be an object");
            goto cleanup;
        }
        snprintf(field, sizeof field, "tenants[%zu].name", i);
        if (!json_is_string(name) || json_string_length(name) == 0) {
            fail(err, err_size, path, field, "must be a non-empty string");
            goto cleanup;
        }
        for (size_t j = 0; j + 1 < t->n; j++)
            if (strcmp(t->tenants[j].name, json_string_value(name)) == 0) {
                fail(err, err_size, path, field, "duplicate tenant name");
                goto cleanup;
            }
        tn->name = strdup(json_string_value(name));
        snprintf(field, sizeof field, "tenants[%zu].keys", i);
        if (!json_is_array(keys) || json_array_size(keys) == 0) {
            fail(err, err_size, path, field, "must be a non-empty array of strings");
            goto cleanup;
        }
        tn->keys = calloc(json_array_size(keys), sizeof *tn->keys);
        if (tn->name == NULL || tn->keys == NULL) {
            fail(err, err_size, path, field, "out of memory");
            goto cleanup;
        }
        for (size_t k = 0; k < json_array_size(keys); k++) {
            json_t *key = json_array_get(keys, k);
            snprintf(field, sizeof field, "tenants[%zu].keys[%zu]", i, k);
            if (!json_is_string(key) || json_string_length(key) < 8) {
                fail(err, err_size, path, field, "must be a string of at least 8 characters");
                goto cleanup;
            }
            for (size_t a = 0; a < t->n; a++)
                for (size_t b = 0; b < t->tenants[a].n_keys; b++)
                    if (strcmp(t->tenants[a].keys[b], json_string_value(key)) == 0) {
                        fail(err, err_size, path, field, "this key is already used");
                        goto cleanup;
                    }
            if ((tn->keys[tn->n_keys++] = strdup(json_string_value(key))) == NULL) {
                fail(err, err_size, path, field, "out of memory");
                goto cleanup;
            }
        }
        long long rpm;
        if (read_limit(o, "requests_per_minute", 1000000, &rpm, path, i, err, err_size) != 0) goto cleanup;
        if (read_limit(o, "tokens_per_day", (long long)1 << 50, &tn->tokens_per_day, path, i, err, err_size) != 0)
            goto cleanup;
        tn->requests_per_minute = (long)rpm;
        if (rpm > 0 && (tn->recent = calloc((size_t)rpm, sizeof *tn->recent)) == NULL) {
            fail(err, err_size, path, "requests_per_minute", "out of memory");
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    json_decref(root);
    if (rc != 0) srv_tenants_free(t);
    return rc;
}

void srv_tenants_free(srv_tenants *t) {
    for (size_t i = 0; i < t->n; i++) {
        for (size_t k = 0; k < t->tenants[i].n_keys; k++) free(t->tenants[i].keys[k]);
        free(t->tenants[i].keys);
        free(t->tenants[i].name);
        free(t->tenants[i].recent);
    }
    free(t->tenants);
    pthread_mutex_destroy(&t->mu);
    memset(t, 0, sizeof *t);
}

/* Equal strings, in time that depends only on the length of the key given
 * (not on where the first difference is, nor on the stored key). */
static bool equal_ct(const char *given, size_t n_given, const char *stored) {
    size_t n_stored = strlen(stored);
    volatile unsigned char diff = (unsigned char)(n_given != n_stored);
    for (size_t i = 0; i < n_given; i++) diff |= (unsigned char)(given[i] ^ stored[n_stored ? i % n_stored : 0]);
    return diff == 0;
}

srv_tenant *srv_tenants_find(srv_tenants *t, const char *key) {
    srv_tenant *found = NULL;
    size_t n = strlen(key);
    /* Every key is compared, so the time does not tell which one matched. */
    for (size_t i = 0; i < t->n; i++)
        for (size_t k = 0; k < t->tenants[i].n_keys; k++)
            if (equal_ct(key, n, t->tenants[i].keys[k])) found = &t->tenants[i];
    return found;
}

static long long day_of(double wall) { return (long long)floor(wall / 86400.0); }

long srv_tenants_admit(srv_tenants *t, srv_tenant *tn, const char **which) {
    double now = srv_now(), wall = srv_wall();
    long wait = 0;
    pthread_mutex_lock(&t->mu);
    if (tn->day != day_of(wall)) {
        tn->day = day_of(wall);
        tn->tokens_today = 0;
    }
    if (tn->tokens_per_day > 0 && tn->tokens_today >= tn->tokens_per_day) {
        *which = "tokens_per_day";
        wait = (long)ceil((double)(tn->day + 1) * 86400.0 - wall);
        if (wait < 1) wait = 1;
        goto done;
    }
    if (tn->requests_per_minute > 0) {
        if (tn->n_recent == tn->requests_per_minute) {
            double oldest = tn->recent[tn->recent_head];
            if (now - oldest < 60.0) {
                *which = "requests_per_minute";
                wait = (long)ceil(60.0 - (now - oldest));
                if (wait < 1) wait = 1;
                goto done;
            }
            tn->recent[tn->recent_head] = now;
            tn->recent_head = (tn->recent_head + 1) % tn->requests_per_minute;
        } else {
            tn->recent[(tn->recent_head + tn->n_recent) % tn->requests_per_minute] = now;
            tn->n_recent++;
        }
    }
done:
    pthread_mutex_unlock(&t->mu);
    return wait;
}

void srv_tenants_charge(srv_tenants *t, srv_tenant *tn, long long tokens) {
    double wall = srv_wall();
    pthread_mutex_lock(&t->mu);
    if (tn->day != day_of(wall)) {
        tn->day = day_of(wall);
        tn->tokens_today = 0;
    }
    tn->tokens_today += tokens;
    pthread_mutex_unlock(&t->mu);
}

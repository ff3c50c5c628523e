/*
 * tenants.c - the tenant store in a JSON file: key lookup by digest in
 * constant time, and the per-tenant limits (requests per minute, tokens per
 * UTC day) counted in this process.
 *
 *   {"tenants": [{"name": "...", "keys": ["...", "sha256:<64 hex>"], "requests_per_minute": N,
 *                 "tokens_per_day": N, "admin": false, "revoked_keys": ["sha256:..."],
 *                 "adapters": ["name", ...]}]}
 *
 * A key is either the key itself (at least 8 characters) or "sha256:" and
 * the lowercase hex SHA-256 of the key; either way only the digest is kept
 * in memory. The limits are optional (absent or 0: unlimited). Keys are
 * never logged. "adapters" names the LoRA adapters the tenant may use ("*"
 * for all; absent or empty: the base model only).
 *
 * The limiter is a sliding log: a request is admitted when fewer than
 * requests_per_minute were admitted in the last 60 s. With several
 * replicas each counts alone (use the PostgreSQL store to share counts).
 *
 * Map: the server's side (load, find, admit, charge), then the store
 * interface (store.h) over it, then the administrator's side (baichuan
 * tenants), which edits the file's JSON and writes it back atomically.
 */
#include "tenants.h"

#include "adapters.h"
#include "digest.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A tenant's "adapters" (absent: none) as the comma-separated list of
 * srv_tenant.adapters in *out (malloc'd). */
static int read_adapters(json_t *obj, char **out, const char *path, size_t i, char *err, size_t err_size) {
    char field[96];
    snprintf(field, sizeof field, "tenants[%zu].adapters", i);
    json_t *v = json_object_get(obj, "adapters");
    srv_buf list = {0};
    *out = NULL;
    if (v != NULL && !json_is_array(v))
        return fail(err, err_size, path, field, "must be an array of adapter names (\"*\" for all)");
    for (size_t k = 0; k < json_array_size(v); k++) {
        const char *name = json_string_value(json_array_get(v, k));
        if (name == NULL || (strcmp(name, "*") != 0 && !srv_adapter_name_valid(name))) {
            srv_buf_free(&list);
            snprintf(field, sizeof field, "tenants[%zu].adapters[%zu]", i, k);
            return fail(err, err_size, path, field, "must be an adapter name (1 to 64 of A-Z a-z 0-9 . _ -) or \"*\"");
        }
        srv_buf_printf(&list, "%s%s", k ? "," : "", name);
    }
    *out = list.data ? list.data : strdup("");
    return *out != NULL ? 0 : fail(err, err_size, path, field, "out of memory");
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
        if (!json_is_array(keys)) {
            fail(err, err_size, path, field, "must be an array of strings");
            goto cleanup;
        }
        tn->digests = calloc(json_array_size(keys) + 1, sizeof *tn->digests);
        if (tn->name == NULL || tn->digests == NULL) {
            fail(err, err_size, path, field, "out of memory");
            goto cleanup;
        }
        for (size_t k = 0; k < json_array_size(keys); k++) {
            json_t *key = json_array_get(keys, k);
            snprintf(field, sizeof field, "tenants[%zu].keys[%zu]", i, k);
            char *digest = tn->digests[tn->n_keys];
            if (!json_is_string(key) ||
                srv_tenants_key_digest(json_string_value(key), json_string_length(key), digest) != 0) {
                fail(err, err_size, path, field,
                     "must be a key of at least 8 characters, or \"sha256:\" and 64 hex digits");
                goto cleanup;
            }
            for (size_t a = 0; a < t->n; a++)
                for (size_t b = 0; b < t->tenants[a].n_keys; b++)
                    if (strcmp(t->tenants[a].digests[b], digest) == 0) {
                        fail(err, err_size, path, field, "this key is already used");
                        goto cleanup;
                    }
            tn->n_keys++;
        }
        json_t *admin = json_object_get(o, "admin");
        snprintf(field, sizeof field, "tenants[%zu].admin", i);
        if (admin != NULL && !json_is_boolean(admin)) {
            fail(err, err_size, path, field, "must be true or false");
            goto cleanup;
        }
        tn->admin = json_is_true(admin);
        long long rpm;
        if (read_limit(o, "requests_per_minute", 1000000, &rpm, path, i, err, err_size) != 0) goto cleanup;
        if (read_limit(o, "tokens_per_day", (long long)1 << 50, &tn->tokens_per_day, path, i, err, err_size) != 0)
            goto cleanup;
        tn->requests_per_minute = (long)rpm;
        if (read_adapters(o, &tn->adapters, path, i, err, err_size) != 0) goto cleanup;
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
        free(t->tenants[i].digests);
        free(t->tenants[i].name);
        free(t->tenants[i].recent);
        free(t->tenants[i].adapters);
    }
    free(t->tenants);
    pthread_mutex_destroy(&t->mu);
    memset(t, 0, sizeof *t);
}

int srv_tenants_key_digest(const char *entry, size_t len, char out[65]) {
    if (len == 71 && strncmp(entry, "sha256:", 7) == 0) {
        for (size_t i = 0; i < 64; i++) {
            char c = entry[7 + i];
            if (!isxdigit((unsigned char)c)) return -1;
            out[i] = (char)tolower((unsigned char)c);
        }
        out[64] = '\0';
        return 0;
    }
    if (len < 8 || strlen(entry) != len) return -1;
    return srv_sha256_hex(entry, len, out);
}

/* Equal digests (64 hex), in a time that does not depend on where they differ. */
static bool digest_equal(const char *a, const char *b) {
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < 64; i++) diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

srv_tenant *srv_tenants_find(srv_tenants *t, const char *key) {
    char digest[65];
    if (srv_sha256_hex(key, strlen(key), digest) != 0) return NULL;
    srv_tenant *found = NULL;
    /* Every digest is compared, so the time does not tell which one matched. */
    for (size_t i = 0; i < t->n; i++)
        for (size_t k = 0; k < t->tenants[i].n_keys; k++)
            if (digest_equal(digest, t->tenants[i].digests[k])) found = &t->tenants[i];
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

/* ------------------------------------------------------------------------ */
/* The JSON file as a tenant store (store.h)                                */
/* ------------------------------------------------------------------------ */

typedef struct json_store {
    srv_tenant_store base;
    char *path;
    srv_tenants t; /* for the server */
    bool loaded;
    json_t *doc; /* for the administrator: the file's JSON */
} json_store;

static srv_auth_status json_authenticate(srv_tenant_store *s, const char *key, bool admit, srv_tenant **tenant,
                                         const char **which, long *wait, char *err, size_t err_size) {
    json_store *js = (json_store *)s;
    (void)err;
    (void)err_size;
    *tenant = srv_tenants_find(&js->t, key);
    if (*tenant == NULL) return SRV_AUTH_UNKNOWN_KEY;
    if (admit && (*wait = srv_tenants_admit(&js->t, *tenant, which)) > 0) return SRV_AUTH_LIMITED;
    return SRV_AUTH_OK;
}

static void json_charge(srv_tenant_store *s, srv_tenant *tenant, long long tokens) {
    srv_tenants_charge(&((json_store *)s)->t, tenant, tokens);
}

static void json_seed(srv_tenant_store *s, long long (*tokens_today)(void *ctx, const char *tenant), void *ctx) {
    json_store *js = (json_store *)s;
    for (size_t i = 0; i < js->t.n; i++)
        srv_tenants_charge(&js->t, &js->t.tenants[i], tokens_today(ctx, js->t.tenants[i].name));
}

/* The administrator's side works on js->doc and writes it back. */

static json_t *find_tenant(json_t *doc, const char *name) {
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(doc, "tenants"), i, o) {
        json_t *n = json_object_get(o, "name");
        if (json_is_string(n) && strcmp(json_string_value(n), name) == 0) return o;
    }
    return NULL;
}

/* Writes the document to PATH.tmp, fsyncs it and renames it over PATH. */
static int save(json_store *js, char *err, size_t err_size) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", js->path);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        snprintf(err, err_size, "%s: cannot write: %s", tmp, strerror(errno));
        return -1;
    }
    int bad =
        json_dumpf(js->doc, f, JSON_INDENT(2)) != 0 || fputc('\n', f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, js->path) != 0) {
        snprintf(err, err_size, "%s: cannot write: %s", js->path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int json_add(srv_tenant_store *s, const char *name, long rpm, long long tpd, bool admin, char *err,
                    size_t err_size) {
    json_store *js = (json_store *)s;
    if (find_tenant(js->doc, name) != NULL) {
        snprintf(err, err_size, "%s: tenant '%s' already exists", js->path, name);
        return -1;
    }
    json_t *o = json_pack("{s:s, s:[], s:I, s:I, s:b}", "name", name, "keys", "requests_per_minute", (json_int_t)rpm,
                          "tokens_per_day", (json_int_t)tpd, "admin", admin);
    if (o == NULL || json_array_append_new(json_object_get(js->doc, "tenants"), o) != 0) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    return save(js, err, err_size);
}

/* adapters (names separated by commas) as a JSON array of names. */
static json_t *adapter_array(const char *adapters) {
    json_t *arr = json_array();
    for (const char *p = adapters; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) json_array_append_new(arr, json_stringn(p, len));
        p = end ? end + 1 : p + len;
    }
    return arr;
}

static int json_set_adapters(srv_tenant_store *s, const char *name, const char *adapters, char *err, size_t err_size) {
    json_store *js = (json_store *)s;
    json_t *o = find_tenant(js->doc, name);
    if (o == NULL) {
        snprintf(err, err_size, "%s: no tenant named '%s'", js->path, name);
        return -1;
    }
    json_object_set_new(o, "adapters", adapter_array(adapters));
    return save(js, err, err_size);
}

static int json_key_add(srv_tenant_store *s, const char *name, const char *digest, char *err, size_t err_size) {
    json_store *js = (json_store *)s;
    json_t *o = find_tenant(js->doc, name);
    if (o == NULL) {
        snprintf(err, err_size, "%s: no tenant named '%s'", js->path, name);
        return -1;
    }
    json_t *keys = json_object_get(o, "keys");
    if (!json_is_array(keys)) json_object_set_new(o, "keys", keys = json_array());
    char entry[72];
    snprintf(entry, sizeof entry, "sha256:%s", digest);
    json_array_append_new(keys, json_string(entry));
    return save(js, err, err_size);
}

static int json_key_revoke(srv_tenant_store *s, const char *digest, char *err, size_t err_size) {
    json_store *js = (json_store *)s;
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(js->doc, "tenants"), i, o) {
        json_t *keys = json_object_get(o, "keys");
        for (size_t k = 0; json_is_array(keys) && k < json_array_size(keys); k++) {
            json_t *key = json_array_get(keys, k);
            char d[65];
            if (!json_is_string(key) ||
                srv_tenants_key_digest(json_string_value(key), json_string_length(key), d) != 0 ||
                strcmp(d, digest) != 0)
                continue;
            json_t *revoked = json_object_get(o, "revoked_keys");
            if (!json_is_array(revoked)) json_object_set_new(o, "revoked_keys", revoked = json_array());
            char entry[72];
            snprintf(entry, sizeof entry, "sha256:%s", digest);
            json_array_append_new(revoked, json_string(entry));
            json_array_remove(keys, k);
            return save(js, err, err_size);
        }
    }
    snprintf(err, err_size, "%s: no tenant has this key", js->path);
    return -1;
}

static int json_list(srv_tenant_store *s, json_t **out, char *err, size_t err_size) {
    json_store *js = (json_store *)s;
    json_t *list = json_array();
    size_t i;
    json_t *o;
    (void)err;
    (void)err_size;
    json_array_foreach(json_object_get(js->doc, "tenants"), i, o) {
        json_t *name = json_object_get(o, "name");
        srv_buf adapters = {0};
        size_t k;
        json_t *a;
        json_array_foreach(json_object_get(o, "adapters"), k, a) {
            srv_buf_printf(&adapters, "%s%s", k ? "," : "", json_is_string(a) ? json_string_value(a) : "?");
        }
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:I, s:I, s:b, s:I, s:I}", "adapters", adapters.data ? adapters.data : "",
                            "name", json_is_string(name) ? json_string_value(name) : "", "requests_per_minute",
                            json_integer_value(json_object_get(o, "requests_per_minute")), "tokens_per_day",
                            json_integer_value(json_object_get(o, "tokens_per_day")), "admin",
                            json_is_true(json_object_get(o, "admin")), "keys",
                            (json_int_t)json_array_size(json_object_get(o, "keys")), "revoked_keys",
                            (json_int_t)json_array_size(json_object_get(o, "revoked_keys"))));
        srv_buf_free(&adapters);
    }
    *out = list;
    return 0;
}

static void json_close(srv_tenant_store *s) {
    json_store *js = (json_store *)s;
    if (js == NULL) return;
    if (js->loaded) srv_tenants_free(&js->t);
    json_decref(js->doc);
    free(js->path);
    free(js);
}

static const srv_tenant_store_ops json_ops = {
    .name = "json",
    .authenticate = json_authenticate,
    .charge = json_charge,
    .seed = json_seed,
    .add = json_add,
    .set_adapters = json_set_adapters,
    .key_add = json_key_add,
    .key_revoke = json_key_revoke,
    .list = json_list,
    .close = json_close,
};

int srv_tenant_store_json_open(srv_tenant_store **out, const char *path, bool for_server, char *err, size_t err_size) {
    *out = NULL;
    json_store *js = calloc(1, sizeof *js);
    if (js == NULL || (js->path = strdup(path)) == NULL) {
        free(js);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    js->base.ops = &json_ops;
    if (for_server) {
        if (srv_tenants_load(&js->t, path, err, err_size) != 0) goto fail;
        js->loaded = true;
    } else {
        /* The administrator's view: the file as JSON, validated by a load
         * when it exists (an absent file is an empty store). */
        if (access(path, F_OK) != 0) {
            js->doc = json_pack("{s:[]}", "tenants");
        } else {
            json_error_t je;
            js->doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
            if (js->doc == NULL) {
                snprintf(err, err_size, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
                goto fail;
            }
            if (!json_is_array(json_object_get(js->doc, "tenants"))) {
                fail(err, err_size, path, "tenants", "missing: expected {\"tenants\": [...]}");
                goto fail;
            }
        }
    }
    *out = &js->base;
    return 0;
fail:
    json_close(&js->base);
    return -1;
}

/*
 * cmd_tenants.c - `baichuan tenants`: add tenants, create and revoke keys,
 * and list them, in a tenants JSON file or a PostgreSQL tenant store (the
 * tenant store interface of server/store.h). A new key is printed once, on
 * stdout; only its SHA-256 digest is stored.
 */
#include "cli.h"

#include "../server/adapters.h"
#include "../server/digest.h"
#include "../server/store.h"
#include "../server/store_open.h"
#include "../server/tenants.h"

#include <jansson.h>
#include <stdbool.h>

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "usage: baichuan tenants --store STORE COMMAND [args]\n"
                           "\n"
                           "Manages the tenants of `baichuan serve --tenants STORE`: STORE is a tenants JSON\n"
                           "file (created if absent) or a postgresql:// URL (its tables are created if absent).\n"
                           "Keys are stored only as SHA-256 digests and are never listed.\n"
                           "\n"
                           "commands:\n"
                           "  add NAME [--rpm N] [--tokens-per-day N] [--admin] [--adapters A,B]\n"
                           "                      a new tenant; limits default to 0 (unlimited)\n"
                           "                      --admin: its keys may read GET /admin/usage and load and\n"
                           "                      unload LoRA adapters\n"
                           "                      --adapters: the LoRA adapters (serve --lora NAME=...) its\n"
                           "                      requests may name as \"model\"; '*' for all; default none\n"
                           "  set NAME --adapters A,B\n"
                           "                      replaces the tenant's adapters ('' for none); a running\n"
                           "                      server sees it at once with a postgresql:// STORE, after a\n"
                           "                      restart with a JSON file\n"
                           "  key-create NAME     a new random key for tenant NAME, printed once on stdout\n"
                           "  key-revoke KEY      revokes KEY (found by its digest) on every server using STORE;\n"
                           "                      KEY '-' reads it from stdin (keeps it out of the process list)\n"
                           "  list [--json]       tenants, their limits and how many keys they have\n"
                           "\n"
                           "options:\n"
                           "      --store STORE   the tenants JSON file or postgresql:// URL\n";

static int parse_ll(const char *s, long long hi, const char *opt, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > hi)
        return cli_error("%s: '%s' is not an integer from 0 to %lld", opt, s, hi);
    *out = v;
    return 0;
}

/* A new key: "sk-" and 48 hex digits (192 random bits from OpenSSL). */
static int new_key(char out[52]) {
    unsigned char bytes[24];
    if (RAND_bytes(bytes, sizeof bytes) != 1) return -1;
    memcpy(out, "sk-", 3);
    for (size_t i = 0; i < sizeof bytes; i++) snprintf(out + 3 + 2 * i, 3, "%02x", bytes[i]);
    return 0;
}

/* A tenant name: 1 to 128 printable ASCII characters, no quote or backslash. */
static bool valid_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 128) return false;
    for (size_t i = 0; i < n; i++)
        if (name[i] < 0x21 || name[i] > 0x7e || name[i] == '"' || name[i] == '\\') return false;
    return true;
}

/* An --adapters list: adapter names or "*" separated by commas, or "". */
static bool valid_adapters(const char *list) {
    char name[80];
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || len >= sizeof name) return false;
        memcpy(name, p, len);
        name[len] = '\0';
        if (strcmp(name, "*") != 0 && !srv_adapter_name_valid(name)) return false;
        p += len + (end != NULL);
        if (end != NULL && *p == '\0') return false; /* a trailing comma */
    }
    return true;
}

/* KEY, or a line of stdin for "-" (in buf). */
static const char *key_arg(const char *arg, char *buf, size_t cap) {
    if (strcmp(arg, "-") != 0) return arg;
    if (fgets(buf, (int)cap, stdin) == NULL) return NULL;
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf;
}

static void print_list(json_t *list, bool as_json) {
    if (as_json) {
        json_t *doc = json_pack("{s:O}", "tenants", list);
        char *s = json_dumps(doc, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(doc);
        return;
    }
    printf("%-24s %10s %14s %6s %6s %8s  %s\n", "tenant", "rpm", "tokens/day", "admin", "keys", "revoked", "adapters");
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) {
        printf("%-24s %10lld %14lld %6s %6lld %8lld  %s\n", json_string_value(json_object_get(t, "name")),
               (long long)json_integer_value(json_object_get(t, "requests_per_minute")),
               (long long)json_integer_value(json_object_get(t, "tokens_per_day")),
               json_is_true(json_object_get(t, "admin")) ? "yes" : "no",
               (long long)json_integer_value(json_object_get(t, "keys")),
               (long long)json_integer_value(json_object_get(t, "revoked_keys")),
               json_string_value(json_object_get(t, "adapters")));
    }
}

int cmd_tenants(int argc, char **argv) {
    const char *store = NULL, *command = NULL, *arg = NULL, *adapters = NULL;
    long long rpm = 0, tpd = 0;
    bool admin = false, as_json = false, limits_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(help, stdout);
            return 0;
        } else if (strcmp(a, "--store") == 0) {
            if ((store = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--rpm") == 0) {
            const char *v = cli_value(argc, argv, &i);
            if (v == NULL || parse_ll(v, 1000000, "--rpm", &rpm) != 0) return 1;
            limits_given = true;
        } else if (strcmp(a, "--tokens-per-day") == 0) {
            const char *v = cli_value(argc, argv, &i);
            if (v == NULL || parse_ll(v, (long long)1 << 50, "--tokens-per-day", &tpd) != 0) return 1;
            limits_given = true;
        } else if (strcmp(a, "--admin") == 0) {
            admin = limits_given = true;
        } else if (strcmp(a, "--adapters") == 0) {
            if ((adapters = cli_value(argc, argv, &i)) == NULL) return 1;
            if (!valid_adapters(adapters))
                return cli_error("--adapters: '%.200s' is not a list of adapter names separated by commas (1 to 64 "
                                 "of A-Z a-z 0-9 . _ - each), '*' for all or '' for none",
                                 adapters);
        } else if (strcmp(a, "--json") == 0) {
            as_json = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_error("tenants: unknown option '%s' (see 'baichuan tenants --help')", a);
        } else if (command == NULL) {
            command = a;
        } else if (arg == NULL) {
            arg = a;
        } else {
            return cli_error("tenants: unexpected argument '%s' (see 'baichuan tenants --help')", a);
        }
    }
    if (store == NULL) return cli_error("tenants: --store STORE is required (see 'baichuan tenants --help')");
    if (command == NULL) return cli_error("tenants: a command is required: add, key-create, key-revoke or list");
    bool is_list = strcmp(command, "list") == 0;
    if (!is_list && strcmp(command, "add") != 0 && strcmp(command, "set") != 0 && strcmp(command, "key-create") != 0 &&
        strcmp(command, "key-revoke") != 0)
        return cli_error("tenants: unknown command '%s' (add, set, key-create, key-revoke, list)", command);
    if (adapters != NULL && strcmp(command, "add") != 0 && strcmp(command, "set") != 0)
        return cli_error("tenants: --adapters goes with add or set, not %s", command);
    if (strcmp(command, "set") == 0 && adapters == NULL)
        return cli_error("tenants: set NAME needs --adapters A,B (what to set)");
    if (is_list && arg != NULL) return cli_error("tenants: list takes no argument ('%s')", arg);
    if (!is_list && (arg == NULL || arg[0] == '\0'))
        return cli_error("tenants: %s needs %s", command, strcmp(command, "key-revoke") == 0 ? "KEY" : "NAME");
    if (limits_given && strcmp(command, "add") != 0)
        return cli_error("tenants: --rpm, --tokens-per-day and --admin go with add, not %s", command);
    if (as_json && !is_list) return cli_error("tenants: --json goes with list, not %s", command);
    if (strcmp(command, "add") == 0 && !valid_name(arg))
        return cli_error("tenants: '%.200s' is not a tenant name (1 to 128 printable ASCII characters, no quotes)",
                         arg);

    char err[1024];
    srv_tenant_store *s = NULL;
    if (srv_tenant_store_open(&s, store, false, err, sizeof err) != 0) return cli_error("%s", err);
    int rc = 1;
    if (strcmp(command, "add") == 0) {
        if (s->ops->add(s, arg, (long)rpm, tpd, admin, err, sizeof err) != 0) goto fail;
        if (adapters != NULL && adapters[0] != '\0' && s->ops->set_adapters(s, arg, adapters, err, sizeof err) != 0)
            goto fail;
        fprintf(stderr, "tenant '%s' added\n", arg);
    } else if (strcmp(command, "set") == 0) {
        if (s->ops->set_adapters(s, arg, adapters, err, sizeof err) != 0) goto fail;
        fprintf(stderr, "tenant '%s': adapters '%s'\n", arg, adapters);
    } else if (strcmp(command, "key-create") == 0) {
        char key[52], digest[65];
        if (new_key(key) != 0 || srv_sha256_hex(key, strlen(key), digest) != 0) {
            snprintf(err, sizeof err, "cannot make a random key (OpenSSL)");
            goto fail;
        }
        if (s->ops->key_add(s, arg, digest, err, sizeof err) != 0) goto fail;
        printf("%s\n", key); /* the only time the key is shown */
        fflush(stdout);
    } else if (strcmp(command, "key-revoke") == 0) {
        char digest[65], line[1024];
        const char *key = key_arg(arg, line, sizeof line);
        if (key == NULL || srv_tenants_key_digest(key, strlen(key), digest) != 0) {
            snprintf(err, sizeof err, "key-revoke: not a key (at least 8 characters, or sha256:<64 hex>)");
            goto fail;
        }
        if (s->ops->key_revoke(s, digest, err, sizeof err) != 0) goto fail;
        fprintf(stderr, "key revoked\n");
    } else {
        json_t *list = NULL;
        if (s->ops->list(s, &list, err, sizeof err) != 0) goto fail;
        print_list(list, as_json);
        json_decref(list);
    }
    rc = 0;
fail:
    if (rc != 0) cli_error("%s", err);
    s->ops->close(s);
    return rc;
}

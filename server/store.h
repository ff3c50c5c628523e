/*
 * store.h - the server's shared state behind two interfaces, each a struct
 * of function pointers (as SQLite's VFS): the usage ledger and the tenant
 * store. The server calls these interfaces, never a back-end; a back-end is
 * chosen once, when it is opened (store_open.h).
 *
 *   ledger:  SQLite file (ledger_sqlite.c) or PostgreSQL (ledger_pg.c)
 *   tenants: JSON file (tenants.c)          or PostgreSQL (tenants_pg.c)
 *
 * Keys: a back-end keeps only SHA-256 digests of keys (the JSON file may
 * also hold plain keys, digested when it is read). Nothing here prints a
 * key or a password: URLs in messages have their password masked.
 *
 * This header holds types only: each back-end declares its opening in its
 * own header.
 */
#ifndef BC_STORE_H
#define BC_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* A tenant as a tenant store hands it out, valid while the store is open:
 * its name, limits and admin flag. The JSON store (tenants.c) also keeps
 * the tenant's key digests and its limiter here. */
typedef struct srv_tenant {
    char *name;
    long requests_per_minute; /* 0 = unlimited */
    long long tokens_per_day; /* 0 = unlimited */
    bool admin;
    /* The LoRA adapters the tenant may use: names separated by commas, "*"
     * for every adapter; NULL or "" for none (the base model only). */
    char *adapters;
    /* The JSON store's: the keys, and the limiter under the tenants' lock. */
    char (*digests)[65]; /* (n_keys) lowercase hex SHA-256 of each key: keys are not kept */
    size_t n_keys;
    double *recent; /* (requests_per_minute) start times of the latest requests, a ring */
    long n_recent, recent_head;
    long long day;          /* days since the epoch of tokens_today */
    long long tokens_today; /* prompt + completion tokens counted today (UTC) */
} srv_tenant;

/* One finished (or refused) generation request, as the ledger records it.
 * A row with a request_id is written at most once (a write retried after an
 * unknown outcome skips the rows already there, and charges nothing for
 * them). */
typedef struct srv_ledger_row {
    double time;            /* wall-clock seconds when the request ended */
    const char *request_id; /* the response's "id" (NULL for requests refused before one was made) */
    const char *tenant;
    const char *endpoint;
    const char *model;
    const char *adapter; /* the LoRA adapter's name; NULL for the base model */
    long prompt_tokens, completion_tokens;
    const char *finish_reason;
    int status;
    double latency; /* seconds from arrival to the end */
} srv_ledger_row;

/* ------------------------------------------------------------------------ */
/* Ledger back-ends                                                         */
/* ------------------------------------------------------------------------ */

typedef struct srv_ledger_backend srv_ledger_backend;

typedef struct srv_ledger_backend_ops {
    const char *name; /* "sqlite", "postgresql" */
    /* Writes rows[0..n) in one transaction: 0 once committed; -1 with a
     * message in err (nothing of the batch is kept). */
    int (*write)(srv_ledger_backend *b, const srv_ledger_row *rows, size_t n, char *err, size_t err_size);
    /* Tokens of tenant since the start of today (UTC); 0 when unknown. */
    long long (*tokens_today)(srv_ledger_backend *b, const char *tenant);
    /* Per-tenant and per-adapter totals of requests ending at or after
     * since ("" = all), as a JSON array of {tenant, adapter ("" for the base
     * model), requests, succeeded, prompt_tokens, completion_tokens} in
     * tenant, then adapter order. 0, or -1 with err. */
    int (*totals)(srv_ledger_backend *b, const char *since, json_t **out, char *err, size_t err_size);
    /* Requests ending in [from, to) (UTC, YYYY-MM-DDTHH:MM:SS) grouped by
     * tenant, by hour (hourly) or day and by adapter, as a JSON array of
     * {tenant ("" for none), adapter ("" for the base model), bucket
     * ("YYYY-MM-DD" or "YYYY-MM-DDTHH:00"), requests, succeeded,
     * prompt_tokens, completion_tokens} ordered by tenant, bucket, adapter;
     * empty buckets are absent. 0, or -1 with err. */
    int (*usage)(srv_ledger_backend *b, const char *from, const char *to, bool hourly, json_t **out, char *err,
                 size_t err_size);
    /* Whether a write could start now, within the back-end's bound: 0, or
     * -1 with err (the readiness probe's). */
    int (*ping)(srv_ledger_backend *b, char *err, size_t err_size);
    void (*close)(srv_ledger_backend *b);
} srv_ledger_backend_ops;

/* Every back-end's handle starts with this. */
struct srv_ledger_backend {
    const srv_ledger_backend_ops *ops;
    /* write() also adds each new row's tokens to its tenant's day counter
     * (the PostgreSQL tenant store's quota_counters) in the same
     * transaction: set when the tenant store is the same database. */
    bool charge_quotas;
};

/* ------------------------------------------------------------------------ */
/* Tenant stores                                                            */
/* ------------------------------------------------------------------------ */

typedef enum srv_auth_status {
    SRV_AUTH_OK = 0,          /* the key's tenant in *tenant (and admitted, if asked) */
    SRV_AUTH_UNKNOWN_KEY = 1, /* no tenant owns the key, or it was revoked */
    SRV_AUTH_LIMITED = 2,     /* over a limit: *which names it, *wait the seconds to wait */
    SRV_AUTH_UNAVAILABLE = 3, /* the store cannot answer now (err says why) */
} srv_auth_status;

typedef struct srv_tenant_store srv_tenant_store;

typedef struct srv_tenant_store_ops {
    const char *name; /* "json", "postgresql" */

    /* The server's side (a store opened for_server). authenticate and
     * charge are called from any thread (the HTTP workers, the ledger's). */

    /* The tenant owning key; with admit, also counts one request against
     * its limits. The tenant stays valid while the store is open. */
    srv_auth_status (*authenticate)(srv_tenant_store *s, const char *key, bool admit, srv_tenant **tenant,
                                    const char **which, long *wait, char *err, size_t err_size);
    /* Counts tokens against tenant's daily quota (may be queued; a queued
     * charge is retried until the store answers). */
    void (*charge)(srv_tenant_store *s, srv_tenant *tenant, long long tokens);
    /* Whether the store answers now, within its bound: 0, or -1 with err
     * (the readiness probe's; NULL: always). */
    int (*ping)(srv_tenant_store *s, char *err, size_t err_size);
    /* Seeds the daily counts at start from tokens_today(ctx, tenant), the
     * ledger's (NULL: the store keeps its own counts). */
    void (*seed)(srv_tenant_store *s, long long (*tokens_today)(void *ctx, const char *tenant), void *ctx);

    /* The administrator's side (baichuan tenants; a store not opened
     * for_server). Each call is one change, written before it returns. */

    int (*add)(srv_tenant_store *s, const char *name, long rpm, long long tokens_per_day, bool admin, char *err,
               size_t err_size);
    /* Sets the adapters tenant name may use (adapters.h's list form: names
     * separated by commas, "*" for all, "" for none). */
    int (*set_adapters)(srv_tenant_store *s, const char *name, const char *adapters, char *err, size_t err_size);
    /* Adds a key, by its digest (64 hex), to tenant name. */
    int (*key_add)(srv_tenant_store *s, const char *name, const char *digest, char *err, size_t err_size);
    /* Revokes the key with this digest: 0, or -1 (not found, or err). */
    int (*key_revoke)(srv_tenant_store *s, const char *digest, char *err, size_t err_size);
    /* A JSON array of {name, requests_per_minute, tokens_per_day, admin,
     * adapters (the list's text), keys (live), revoked_keys}, in the file's order or by name; never a
     * key. */
    int (*list)(srv_tenant_store *s, json_t **out, char *err, size_t err_size);

    void (*close)(srv_tenant_store *s);
} srv_tenant_store_ops;

struct srv_tenant_store {
    const srv_tenant_store_ops *ops;
};

#endif /* BC_STORE_H */

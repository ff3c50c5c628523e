/*
 * tenants_pg.c - the tenant store in a PostgreSQL database, shared by every
 * replica that names it: tenants, their keys (SHA-256 digests only, with a
 * revoked flag) and the quota counters.
 *
 * Quotas: fixed windows counted in the database. Each tenant has one
 * counter row per kind: 'minute' (requests admitted in the current UTC
 * minute, epoch seconds / 60) and 'day' (tokens charged in the current UTC
 * day). Admission is one statement, one round trip: it looks the key's
 * digest up (revoked keys do not match), reads the day's tokens and, when
 * they are under the limit, increments the minute counter (an upsert that
 * starts the count again in a new minute) and returns it; the request is
 * admitted when the count is at most requests_per_minute. The row lock of
 * the upsert makes concurrent admissions on any number of replicas count
 * exactly: at most requests_per_minute per tenant per calendar minute. A
 * client can still get up to twice that within 60 s that straddle a
 * minute boundary (the end of one window and the start of the next).
 * Refused requests count too, which changes nothing: the window is full.
 *
 * Charges: with the ledger in the same database, the ledger's own commit
 * charges a request's tokens (ledger_pg.c, charge_quotas), so the day
 * counter always equals the ledger's sum. Otherwise (charge) a completion's
 * tokens go to the day counter with one more statement, sent by a thread of
 * the store's own (not the engine's), so a slow database never stalls
 * generation; a charge that fails stays queued and is sent again once the
 * database answers (at most MAX_CHARGES wait; past that a charge is dropped
 * and reported). tokens_per_day is checked before
 * a request starts: the request that crosses the limit completes, the next
 * ones are refused until 00:00 UTC.
 *
 * Admission runs on the HTTP workers, several at once: each takes a
 * connection of a small pool (POOL), made on first use.
 *
 * Revocation takes effect on every replica at the next request: the
 * admission statement reads the key's row (a bound of 0 s, nothing is
 * cached).
 *
 * The clock is the database's (clock_timestamp()), one for all replicas.
 */
#include "tenants_pg.h"

#include "digest.h"
#include "pg.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char schema[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(724320002);"
    "CREATE TABLE IF NOT EXISTS tenants ("
    " name TEXT PRIMARY KEY CHECK (name <> ''),"
    " requests_per_minute BIGINT NOT NULL DEFAULT 0 CHECK (requests_per_minute >= 0)," /* 0: unlimited */
    " tokens_per_day BIGINT NOT NULL DEFAULT 0 CHECK (tokens_per_day >= 0),"           /* 0: unlimited */
    " admin BOOLEAN NOT NULL DEFAULT false,"
    " created TIMESTAMPTZ NOT NULL DEFAULT now(),"
    " adapters TEXT NOT NULL DEFAULT '');" /* LoRA adapters it may use: names, commas between, '*' all */
    /* a table made before adapters gets the column (its tenants: the base model only) */
    "ALTER TABLE tenants ADD COLUMN IF NOT EXISTS adapters TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE IF NOT EXISTS keys ("
    " digest TEXT PRIMARY KEY CHECK (digest ~ '^[0-9a-f]{64}$')," /* hex SHA-256 of the key */
    " tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,"
    " revoked BOOLEAN NOT NULL DEFAULT false,"
    " created TIMESTAMPTZ NOT NULL DEFAULT now());"
    "CREATE TABLE IF NOT EXISTS quota_counters ("
    " tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,"
    " kind TEXT NOT NULL CHECK (kind IN ('minute', 'day')),"
    " window_start BIGINT NOT NULL," /* epoch minutes or epoch days (UTC) */
    " count BIGINT NOT NULL,"        /* requests in the minute, or tokens in the day */
    " PRIMARY KEY (tenant, kind));"
    "COMMIT;";

/* $1 the key's digest, $2 whether to admit. One row when the key is live:
 * name, rpm, tokens_per_day, epoch seconds now, tokens used today, the
 * minute's count after this request (NULL when not counted), admin, and the
 * adapters it may use. */
static const char admit_sql[] =
    "WITH k AS (SELECT t.name, t.requests_per_minute AS rpm, t.tokens_per_day AS tpd, t.admin, t.adapters,"
    "                  floor(extract(epoch FROM clock_timestamp()))::bigint AS now"
    "           FROM keys JOIN tenants t ON t.name = keys.tenant"
    "           WHERE keys.digest = $1 AND NOT keys.revoked),"
    " d AS (SELECT COALESCE((SELECT q.count FROM quota_counters q, k"
    "                        WHERE q.tenant = k.name AND q.kind = 'day' AND q.window_start = k.now / 86400), 0) AS "
    "used),"
    " m AS (INSERT INTO quota_counters AS q (tenant, kind, window_start, count)"
    "       SELECT k.name, 'minute', k.now / 60, 1 FROM k, d"
    "       WHERE $2::boolean AND k.rpm > 0 AND (k.tpd = 0 OR d.used < k.tpd)"
    "       ON CONFLICT (tenant, kind) DO UPDATE"
    "       SET count = CASE WHEN q.window_start >= EXCLUDED.window_start THEN q.count + 1 ELSE 1 END,"
    "           window_start = GREATEST(q.window_start, EXCLUDED.window_start)"
    "       RETURNING q.count)"
    " SELECT k.name, k.rpm, k.tpd, k.now, d.used, (SELECT count FROM m), k.admin, k.adapters FROM k, d";

static const char charge_sql[] =
    "INSERT INTO quota_counters AS q (tenant, kind, window_start, count)"
    " VALUES ($1, 'day', floor(extract(epoch FROM clock_timestamp()) / 86400)::bigint, $2::bigint)"
    " ON CONFLICT (tenant, kind) DO UPDATE"
    " SET count = CASE WHEN q.window_start >= EXCLUDED.window_start THEN q.count + EXCLUDED.count"
    "                  ELSE EXCLUDED.count END,"
    "     window_start = GREATEST(q.window_start, EXCLUDED.window_start)";

typedef struct known {
    struct known *next;
    srv_tenant tenant; /* name and limits; lives as long as the store */
} known;

typedef struct charge {
    struct charge *next;
    const char *tenant; /* a known tenant's name */
    long long tokens;
} charge;

#define POOL        16     /* admission connections, at most (the HTTP workers are fewer) */
#define MAX_CHARGES 100000 /* charges waiting for the database, at most */

typedef struct pg_store {
    srv_tenant_store base;
    srv_pg auth;       /* the administrator's; for the server, the first of the pool */
    srv_pg pool[POOL]; /* admission connections: pool[0] is auth's, moved there at open */
    bool busy[POOL];   /* under mu */
    int n_pool;        /* connections made (or tried), under mu */
    pthread_cond_t pool_cv;
    srv_pg probe;   /* the readiness probe's (health.c's thread), made on first use */
    long n_charges; /* charges queued, under mu */
    known *tenants;
    pthread_mutex_t mu; /* tenants, the charge queue */
    /* The charge thread, with a connection of its own (server only). */
    bool charging;
    srv_pg charge_pg;
    pthread_t thread;
    pthread_cond_t cv;
    charge *head, *tail;
    bool stopping;
} pg_store;

/* The tenant object for name (made on first sight), with its limits, admin
 * flag and adapters as the database has them now. The adapters' text is
 * replaced only when it changed: the HTTP thread, which calls this, is the
 * one that reads it. */
static srv_tenant *known_tenant(pg_store *s, const char *name, long rpm, long long tpd, bool admin,
                                const char *adapters) {
    pthread_mutex_lock(&s->mu);
    known *k = s->tenants;
    while (k != NULL && strcmp(k->tenant.name, name) != 0) k = k->next;
    if (k == NULL && (k = calloc(1, sizeof *k)) != NULL) {
        if ((k->tenant.name = strdup(name)) == NULL) {
            free(k);
            k = NULL;
        } else {
            k->next = s->tenants;
            s->tenants = k;
        }
    }
    if (k != NULL) {
        k->tenant.requests_per_minute = rpm;
        k->tenant.tokens_per_day = tpd;
        k->tenant.admin = admin;
        if (k->tenant.adapters == NULL || strcmp(k->tenant.adapters, adapters) != 0) {
            char *copy = strdup(adapters);
            if (copy != NULL) {
                free(k->tenant.adapters);
                k->tenant.adapters = copy;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return k ? &k->tenant : NULL;
}

/* A free admission connection (its URL set; it connects on first use),
 * waiting for one while all POOL are taken; NULL out of memory. */
static srv_pg *take_connection(pg_store *s) {
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (int i = 0; i < s->n_pool; i++)
            if (!s->busy[i]) {
                s->busy[i] = true;
                pthread_mutex_unlock(&s->mu);
                return &s->pool[i];
            }
        if (s->n_pool < POOL) {
            srv_pg *p = &s->pool[s->n_pool];
            /* Not connected yet: srv_pg_exec connects on demand. */
            memset(p, 0, sizeof *p);
            srv_pg_mask(s->auth.url, p->masked, sizeof p->masked);
            if ((p->url = strdup(s->auth.url)) == NULL) {
                pthread_mutex_unlock(&s->mu);
                return NULL;
            }
            s->busy[s->n_pool++] = true;
            pthread_mutex_unlock(&s->mu);
            return p;
        }
        pthread_cond_wait(&s->pool_cv, &s->mu);
    }
}

static void give_connection(pg_store *s, srv_pg *p) {
    if (p == NULL) return;
    pthread_mutex_lock(&s->mu);
    s->busy[p - s->pool] = false;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->mu);
}

static srv_auth_status pg_authenticate(srv_tenant_store *base, const char *key, bool admit, srv_tenant **tenant,
                                       const char **which, long *wait, char *err, size_t err_size) {
    pg_store *s = (pg_store *)base;
    char digest[65];
    *tenant = NULL;
    if (srv_sha256_hex(key, strlen(key), digest) != 0) {
        snprintf(err, err_size, "cannot compute a SHA-256 digest");
        return SRV_AUTH_UNAVAILABLE;
    }
    const char *params[] = {digest, admit ? "true" : "false"};
    srv_pg *pg = take_connection(s);
    PGresult *r = pg != NULL ? srv_pg_exec(pg, admit_sql, 2, params, err, err_size) : NULL;
    if (pg == NULL) snprintf(err, err_size, "%s: no admission connection free", s->auth.masked);
    give_connection(s, pg);
    if (r == NULL) return SRV_AUTH_UNAVAILABLE;
    srv_auth_status st = SRV_AUTH_UNKNOWN_KEY;
    if (PQntuples(r) == 1) {
        long rpm = strtol(PQgetvalue(r, 0, 1), NULL, 10);
        long long tpd = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        long long now = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
        long long used = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
        bool counted = !PQgetisnull(r, 0, 5);
        long long count = counted ? strtoll(PQgetvalue(r, 0, 5), NULL, 10) : 0;
        st = SRV_AUTH_OK;
        if ((*tenant = known_tenant(s, PQgetvalue(r, 0, 0), rpm, tpd, PQgetvalue(r, 0, 6)[0] == 't',
                                    PQgetvalue(r, 0, 7))) == NULL) {
            snprintf(err, err_size, "out of memory");
            st = SRV_AUTH_UNAVAILABLE;
        } else if (admit && tpd > 0 && used >= tpd) {
            *which = "tokens_per_day";
            *wait = (long)(86400 - now % 86400);
            st = SRV_AUTH_LIMITED;
        } else if (admit && rpm > 0 && count > rpm) {
            *which = "requests_per_minute";
            *wait = (long)(60 - now % 60);
            st = SRV_AUTH_LIMITED;
        }
    }
    PQclear(r);
    return st;
}

static void *charge_main(void *arg) {
    pg_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->head == NULL && !s->stopping) pthread_cond_wait(&s->cv, &s->mu);
        if (s->head == NULL) break;
        charge *c = s->head;
        pthread_mutex_unlock(&s->mu);
        char tokens[32], err[512];
        snprintf(tokens, sizeof tokens, "%lld", c->tokens);
        const char *params[] = {c->tenant, tokens};
        PGresult *r = srv_pg_exec(&s->charge_pg, charge_sql, 2, params, err, sizeof err);
        PQclear(r);
        pthread_mutex_lock(&s->mu);
        if (r == NULL) {
            /* Kept at the head and sent again: a charge is not lost to an
             * outage (a stopping server gives up after this try). */
            if (s->stopping) {
                fprintf(stderr, "baichuan serve: tenants: %ld charges not counted at shutdown: %s\n", s->n_charges,
                        err);
                while (s->head != NULL) {
                    charge *next = s->head->next;
                    free(s->head);
                    s->head = next;
                }
                s->tail = NULL;
                break;
            }
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&s->cv, &s->mu, &until);
            continue;
        }
        if ((s->head = c->next) == NULL) s->tail = NULL;
        s->n_charges--;
        free(c);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void pg_charge(srv_tenant_store *base, srv_tenant *tenant, long long tokens) {
    pg_store *s = (pg_store *)base;
    charge *c;
    if (!s->charging || tokens <= 0 || (c = calloc(1, sizeof *c)) == NULL) return;
    c->tenant = tenant->name;
    c->tokens = tokens;
    pthread_mutex_lock(&s->mu);
    if (s->n_charges >= MAX_CHARGES) {
        pthread_mutex_unlock(&s->mu);
        fprintf(stderr, "baichuan serve: tenants: %d charges wait for the database: %lld tokens of '%s' not counted\n",
                MAX_CHARGES, tokens, tenant->name);
        free(c);
        return;
    }
    s->n_charges++;
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int pg_ping(srv_tenant_store *base, char *err, size_t err_size) {
    pg_store *s = (pg_store *)base;
    if (s->probe.url == NULL) {
        srv_pg_mask(s->auth.url, s->probe.masked, sizeof s->probe.masked);
        if ((s->probe.url = strdup(s->auth.url)) == NULL) {
            snprintf(err, err_size, "out of memory");
            return -1;
        }
    }
    return srv_pg_run(&s->probe, "SELECT 1", err, err_size);
}

/* The administrator's side. */

static int pg_add(srv_tenant_store *base, const char *name, long rpm, long long tpd, bool admin, char *err,
                  size_t err_size) {
    pg_store *s = (pg_store *)base;
    char rpm_s[32], tpd_s[32];
    snprintf(rpm_s, sizeof rpm_s, "%ld", rpm);
    snprintf(tpd_s, sizeof tpd_s, "%lld", tpd);
    const char *params[] = {name, rpm_s, tpd_s, admin ? "true" : "false"};
    PGresult *r = srv_pg_exec(&s->auth,
                              "INSERT INTO tenants (name, requests_per_minute, tokens_per_day, admin)"
                              " VALUES ($1, $2::bigint, $3::bigint, $4::boolean) ON CONFLICT (name) DO NOTHING",
                              4, params, err, err_size);
    if (r == NULL) return -1;
    int rc = atoi(PQcmdTuples(r)) == 1 ? 0 : -1;
    PQclear(r);
    if (rc != 0) snprintf(err, err_size, "%s: tenant '%s' already exists", s->auth.masked, name);
    return rc;
}

static int pg_set_adapters(srv_tenant_store *base, const char *name, const char *adapters, char *err, size_t err_size) {
    pg_store *s = (pg_store *)base;
    const char *params[] = {name, adapters};
    PGresult *r = srv_pg_exec(&s->auth, "UPDATE tenants SET adapters = $2 WHERE name = $1", 2, params, err, err_size);
    if (r == NULL) return -1;
    int rc = atoi(PQcmdTuples(r)) == 1 ? 0 : -1;
    PQclear(r);
    if (rc != 0) snprintf(err, err_size, "%s: no tenant named '%s'", s->auth.masked, name);
    return rc;
}

static int pg_key_add(srv_tenant_store *base, const char *name, const char *digest, char *err, size_t err_size) {
    pg_store *s = (pg_store *)base;
    const char *params[] = {digest, name};
    PGresult *r =
        srv_pg_exec(&s->auth, "INSERT INTO keys (digest, tenant) SELECT $1, name FROM tenants WHERE name = $2", 2,
                    params, err, err_size);
    if (r == NULL) return -1;
    int rc = atoi(PQcmdTuples(r)) == 1 ? 0 : -1;
    PQclear(r);
    if (rc != 0) snprintf(err, err_size, "%s: no tenant named '%s'", s->auth.masked, name);
    return rc;
}

static int pg_key_revoke(srv_tenant_store *base, const char *digest, char *err, size_t err_size) {
    pg_store *s = (pg_store *)base;
    const char *params[] = {digest};
    PGresult *r = srv_pg_exec(&s->auth, "UPDATE keys SET revoked = true WHERE digest = $1 AND NOT revoked", 1, params,
                              err, err_size);
    if (r == NULL) return -1;
    int rc = atoi(PQcmdTuples(r)) == 1 ? 0 : -1;
    PQclear(r);
    if (rc != 0) snprintf(err, err_size, "%s: no tenant has this key (or it is already revoked)", s->auth.masked);
    return rc;
}

static int pg_list(srv_tenant_store *base, json_t **out, char *err, size_t err_size) {
    pg_store *s = (pg_store *)base;
    *out = NULL;
    PGresult *r = srv_pg_exec(&s->auth,
                              "SELECT t.name, t.requests_per_minute, t.tokens_per_day, t.admin,"
                              " COUNT(k.digest) FILTER (WHERE NOT k.revoked), COUNT(k.digest) FILTER (WHERE k.revoked),"
                              " t.adapters"
                              " FROM tenants t LEFT JOIN keys k ON k.tenant = t.name GROUP BY t.name ORDER BY t.name",
                              0, NULL, err, err_size);
    if (r == NULL) return -1;
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:I, s:b, s:I, s:I}", "adapters", PQgetvalue(r, i, 6),
                                              "name", PQgetvalue(r, i, 0), "requests_per_minute",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10), "tokens_per_day",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10), "admin",
                                              PQgetvalue(r, i, 3)[0] == 't', "keys",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 4), NULL, 10), "revoked_keys",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 5), NULL, 10)));
    PQclear(r);
    *out = list;
    return 0;
}

static void pg_close(srv_tenant_store *base) {
    pg_store *s = (pg_store *)base;
    if (s == NULL) return;
    if (s->charging) { /* the queued charges go out first */
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        srv_pg_close(&s->charge_pg);
        pthread_cond_destroy(&s->cv);
    }
    for (int i = 1; i < s->n_pool; i++) srv_pg_close(&s->pool[i]);
    if (s->n_pool > 0) s->auth = s->pool[0]; /* moved there at open */
    srv_pg_close(&s->auth);
    srv_pg_close(&s->probe);
    pthread_cond_destroy(&s->pool_cv);
    while (s->tenants != NULL) {
        known *next = s->tenants->next;
        free(s->tenants->tenant.name);
        free(s->tenants->tenant.adapters);
        free(s->tenants);
        s->tenants = next;
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const srv_tenant_store_ops pg_ops = {
    .name = "postgresql",
    .authenticate = pg_authenticate,
    .charge = pg_charge,
    .ping = pg_ping,
    .seed = NULL,
    .add = pg_add,
    .set_adapters = pg_set_adapters,
    .key_add = pg_key_add,
    .key_revoke = pg_key_revoke,
    .list = pg_list,
    .close = pg_close,
};

int srv_tenant_store_pg_open(srv_tenant_store **out, const char *url, bool for_server, char *err, size_t err_size) {
    *out = NULL;
    pg_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    s->base.ops = &pg_ops;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    if (srv_pg_open(&s->auth, url, err, err_size) != 0) {
        pthread_cond_destroy(&s->pool_cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return -1;
    }
    char why[400];
    if (srv_pg_run(&s->auth, schema, why, sizeof why) != 0) {
        snprintf(err, err_size, "cannot create the tenant tables: %s", why);
        goto fail;
    }
    if (for_server) {
        if (srv_pg_open(&s->charge_pg, url, err, err_size) != 0) goto fail;
        pthread_cond_init(&s->cv, NULL);
        if (pthread_create(&s->thread, NULL, charge_main, s) != 0) {
            snprintf(err, err_size, "cannot start the quota thread");
            srv_pg_close(&s->charge_pg);
            pthread_cond_destroy(&s->cv);
            goto fail;
        }
        s->charging = true;
        /* The open connection is the pool's first; auth keeps its URL and
         * masked form for the others (the server never uses auth itself). */
        s->pool[0] = s->auth;
        s->n_pool = 1;
    }
    *out = &s->base;
    return 0;
fail:
    pg_close(&s->base);
    return -1;
}

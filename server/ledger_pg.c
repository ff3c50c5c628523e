/*
 * ledger_pg.c - the ledger in a PostgreSQL database: the same `requests`
 * rows as the SQLite ledger, shared by every replica that names the same
 * database.
 *
 * A batch is one INSERT of all its rows (one statement is one transaction,
 * one round trip); a batch of more than CHUNK rows is several INSERTs
 * between BEGIN and COMMIT. A commit is durable when it returns (the
 * server's synchronous_commit, on by default).
 */
#include "ledger_pg.h"

#include "pg.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK     1000 /* rows per INSERT (11 parameters each; libpq's limit is 65535) */
#define N_COLUMNS 11   /* parameters per row */

typedef struct pg_ledger {
    srv_ledger_backend base;
    srv_pg pg;
    /* The column holding a request's adapter: "adapter", or "NULL" in a
     * ledger older than adapters opened read-only (not migrated). */
    const char *adapter_col;
} pg_ledger;

/* Creates the table once, whichever replica comes first (the advisory lock
 * keeps concurrent CREATEs from racing). */
static const char schema[] = "BEGIN;"
                             "SELECT pg_advisory_xact_lock(724320001);"
                             "CREATE TABLE IF NOT EXISTS requests ("
                             " id BIGSERIAL PRIMARY KEY,"
                             " time TIMESTAMPTZ NOT NULL," /* when the request ended */
                             " request_id TEXT,"           /* the response's id, e.g. chatcmpl-... */
                             " tenant TEXT,"
                             " endpoint TEXT NOT NULL,"
                             " model TEXT NOT NULL,"
                             " prompt_tokens BIGINT NOT NULL,"
                             " completion_tokens BIGINT NOT NULL,"
                             " finish_reason TEXT,"
                             " status INTEGER NOT NULL,"
                             " latency_ms DOUBLE PRECISION NOT NULL,"
                             " adapter TEXT);" /* the LoRA adapter's name; NULL for the base model */
                             /* a table made before adapters gets the column */
                             "ALTER TABLE requests ADD COLUMN IF NOT EXISTS adapter TEXT;"
                             "CREATE INDEX IF NOT EXISTS requests_time ON requests(time);"
                             /* a batch retried after an unknown outcome skips its rows already there */
                             "CREATE UNIQUE INDEX IF NOT EXISTS requests_request_id ON requests(request_id);"
                             "COMMIT;";

/* With charge_quotas: the rows just inserted (not those skipped as already
 * there) add their tokens to their tenants' day counters, in the INSERT's
 * own statement and so its transaction. A tenant's counter holds one day
 * (the newest): rows of an older day in the batch (a batch across
 * midnight) do not count toward it. */
static const char charge_tail[] =
    " ON CONFLICT DO NOTHING RETURNING tenant, floor(extract(epoch FROM time) / 86400)::bigint AS day,"
    " prompt_tokens + completion_tokens AS tokens),"
    " newest AS (SELECT tenant, max(day) AS day FROM ins WHERE tenant IS NOT NULL GROUP BY tenant),"
    " sums AS (SELECT n.tenant, n.day, sum(i.tokens) AS tokens FROM newest n"
    "          JOIN ins i ON i.tenant = n.tenant AND i.day = n.day GROUP BY n.tenant, n.day)"
    " INSERT INTO quota_counters AS q (tenant, kind, window_start, count)"
    " SELECT s.tenant, 'day', s.day, s.tokens FROM sums s JOIN tenants t ON t.name = s.tenant WHERE s.tokens > 0"
    " ON CONFLICT (tenant, kind) DO UPDATE"
    " SET count = CASE WHEN q.window_start = EXCLUDED.window_start THEN q.count + EXCLUDED.count"
    "                  WHEN q.window_start < EXCLUDED.window_start THEN EXCLUDED.count ELSE q.count END,"
    "     window_start = GREATEST(q.window_start, EXCLUDED.window_start)";

static int insert_chunk(pg_ledger *l, const srv_ledger_row *rows, size_t n, char *err, size_t err_size) {
    srv_buf sql = {0};
    const char **params = calloc(n * N_COLUMNS, sizeof *params);
    char(*text)[5][40] = calloc(n, sizeof *text); /* time, tokens x2, status, latency */
    int rc = -1;
    if (params == NULL || text == NULL) {
        snprintf(err, err_size, "out of memory");
        goto cleanup;
    }
    if (l->base.charge_quotas) srv_buf_puts(&sql, "WITH ins AS (");
    srv_buf_puts(&sql, "INSERT INTO requests (time, tenant, endpoint, model, prompt_tokens, completion_tokens,"
                       " finish_reason, status, latency_ms, request_id, adapter) VALUES ");
    for (size_t i = 0; i < n; i++) {
        const srv_ledger_row *r = &rows[i];
        const char **p = &params[i * N_COLUMNS];
        srv_iso_time(r->time, text[i][0], sizeof text[i][0]);
        snprintf(text[i][1], sizeof text[i][1], "%ld", r->prompt_tokens);
        snprintf(text[i][2], sizeof text[i][2], "%ld", r->completion_tokens);
        snprintf(text[i][3], sizeof text[i][3], "%d", r->status);
        snprintf(text[i][4], sizeof text[i][4], "%.3f", r->latency * 1000.0);
        p[0] = text[i][0];
        p[1] = r->tenant;
        p[2] = r->endpoint;
        p[3] = r->model;
        p[4] = text[i][1];
        p[5] = text[i][2];
        p[6] = r->finish_reason;
        p[7] = text[i][3];
        p[8] = text[i][4];
        p[9] = r->request_id;
        p[10] = r->adapter;
        size_t b = i * N_COLUMNS;
        srv_buf_printf(&sql,
                       "%s($%zu::timestamptz, $%zu, $%zu, $%zu, $%zu::bigint, $%zu::bigint, $%zu, $%zu::int,"
                       " $%zu::float8, $%zu, $%zu)",
                       i ? ", " : "", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, b + 11);
    }
    srv_buf_puts(&sql, l->base.charge_quotas ? charge_tail : " ON CONFLICT DO NOTHING");
    if (sql.data == NULL) {
        snprintf(err, err_size, "out of memory");
        goto cleanup;
    }
    PGresult *res = srv_pg_exec(&l->pg, sql.data, (int)(n * N_COLUMNS), params, err, err_size);
    if (res != NULL) {
        PQclear(res);
        rc = 0;
    }
cleanup:
    srv_buf_free(&sql);
    free(params);
    free(text);
    return rc;
}

static int pg_write(srv_ledger_backend *b, const srv_ledger_row *rows, size_t n, char *err, size_t err_size) {
    pg_ledger *l = (pg_ledger *)b;
    if (n <= CHUNK) return insert_chunk(l, rows, n, err, err_size);
    if (srv_pg_run(&l->pg, "BEGIN", err, err_size) != 0) return -1;
    l->pg.in_transaction = true; /* a lost connection must not resend a statement alone */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += CHUNK)
        rc = insert_chunk(l, rows + i, n - i < CHUNK ? n - i : CHUNK, err, err_size);
    if (rc == 0) rc = srv_pg_run(&l->pg, "COMMIT", err, err_size);
    l->pg.in_transaction = false;
    if (rc != 0) {
        char ignored[256];
        srv_pg_run(&l->pg, "ROLLBACK", ignored, sizeof ignored);
    }
    return rc;
}

static long long pg_tokens_today(srv_ledger_backend *b, const char *tenant) {
    pg_ledger *l = (pg_ledger *)b;
    char err[256];
    const char *params[] = {tenant};
    PGresult *r = srv_pg_exec(&l->pg,
                              "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM requests"
                              " WHERE tenant = $1 AND time >= date_trunc('day', now() AT TIME ZONE 'UTC')"
                              " AT TIME ZONE 'UTC'",
                              1, params, err, sizeof err);
    long long total = 0;
    if (r != NULL && PQntuples(r) == 1) total = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return total;
}

static int pg_totals(srv_ledger_backend *b, const char *since, json_t **out, char *err, size_t err_size) {
    pg_ledger *l = (pg_ledger *)b;
    const char *params[] = {since && since[0] ? since : NULL};
    *out = NULL;
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT COALESCE(tenant, ''), COALESCE(%s, ''), COUNT(*), COUNT(*) FILTER (WHERE status = 200),"
             " COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)"
             " FROM requests WHERE $1::timestamp IS NULL OR time >= ($1::timestamp AT TIME ZONE 'UTC')"
             " GROUP BY 1, 2 ORDER BY 1, 2",
             l->adapter_col);
    PGresult *r = srv_pg_exec(&l->pg, sql, 1, params, err, err_size);
    if (r == NULL) return -1;
    json_t *rows = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(rows, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "tenant", PQgetvalue(r, i, 0),
                                              "adapter", PQgetvalue(r, i, 1), "requests",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10), "succeeded",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 3), NULL, 10), "prompt_tokens",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 4), NULL, 10), "completion_tokens",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 5), NULL, 10)));
    PQclear(r);
    *out = rows;
    return 0;
}

static int pg_usage(srv_ledger_backend *b, const char *from, const char *to, bool hourly, json_t **out, char *err,
                    size_t err_size) {
    pg_ledger *l = (pg_ledger *)b;
    const char *params[] = {from, to, hourly ? "YYYY-MM-DD\"T\"HH24:00" : "YYYY-MM-DD"};
    *out = NULL;
    char sql[600];
    snprintf(sql, sizeof sql,
             "SELECT COALESCE(tenant, ''), to_char(time AT TIME ZONE 'UTC', $3), COUNT(*),"
             " COUNT(*) FILTER (WHERE status = 200), COALESCE(SUM(prompt_tokens), 0),"
             " COALESCE(SUM(completion_tokens), 0), COALESCE(%s, '') FROM requests"
             " WHERE time >= ($1::timestamp AT TIME ZONE 'UTC')"
             " AND time < ($2::timestamp AT TIME ZONE 'UTC')"
             " GROUP BY 1, 2, 7 ORDER BY 1, 2, 7",
             l->adapter_col);
    PGresult *r = srv_pg_exec(&l->pg, sql, 3, params, err, err_size);
    if (r == NULL) return -1;
    json_t *rows = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "tenant", PQgetvalue(r, i, 0),
                                              "adapter", PQgetvalue(r, i, 6), "bucket", PQgetvalue(r, i, 1), "requests",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10), "succeeded",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 3), NULL, 10), "prompt_tokens",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 4), NULL, 10), "completion_tokens",
                                              (json_int_t)strtoll(PQgetvalue(r, i, 5), NULL, 10)));
    PQclear(r);
    *out = rows;
    return 0;
}

static int pg_ping(srv_ledger_backend *b, char *err, size_t err_size) {
    return srv_pg_run(&((pg_ledger *)b)->pg, "SELECT 1", err, err_size);
}

static void pg_close(srv_ledger_backend *b) {
    pg_ledger *l = (pg_ledger *)b;
    if (l == NULL) return;
    srv_pg_close(&l->pg);
    free(l);
}

static const srv_ledger_backend_ops pg_ops = {
    .name = "postgresql",
    .write = pg_write,
    .tokens_today = pg_tokens_today,
    .totals = pg_totals,
    .usage = pg_usage,
    .ping = pg_ping,
    .close = pg_close,
};

int srv_ledger_pg_open(srv_ledger_backend **out, const char *url, bool create, char *err, size_t err_size) {
    *out = NULL;
    pg_ledger *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    l->base.ops = &pg_ops;
    if (srv_pg_open(&l->pg, url, err, err_size) != 0) {
        free(l);
        return -1;
    }
    char why[400];
    if (create && srv_pg_run(&l->pg, schema, why, sizeof why) != 0) {
        snprintf(err, err_size, "cannot create the ledger table: %s", why);
        pg_close(&l->base);
        return -1;
    }
    l->adapter_col = "adapter";
    if (!create) { /* a reader of a ledger that no server of this version has opened yet */
        PGresult *r = srv_pg_exec(&l->pg,
                                  "SELECT 1 FROM information_schema.columns WHERE table_name = 'requests'"
                                  " AND column_name = 'adapter' AND table_schema = ANY (current_schemas(false))",
                                  0, NULL, why, sizeof why);
        if (r != NULL && PQntuples(r) == 0) l->adapter_col = "NULL";
        PQclear(r);
    }
    *out = &l->base;
    return 0;
}

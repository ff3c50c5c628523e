/*
 * ledger_sqlite.c - the ledger in a SQLite file.
 *
 * Durability: the database is in WAL mode with synchronous=FULL, so a
 * transaction is on disk (the WAL fsync'd) when COMMIT returns; a crash of
 * the process (SIGKILL included) or of the machine loses no committed row.
 * (NORMAL would also survive a killed process, since a committed WAL frame
 * is in the kernel's page cache, but could lose the latest rows on power
 * loss.)
 */
#include "ledger_sqlite.h"

#include "util.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every statement is bounded: a lock held by another process is waited
 * for BUSY_MS at most (busy_timeout), and a query runs QUERY_SECONDS at
 * most (the progress handler interrupts it). */
#define BUSY_MS       5000
#define QUERY_SECONDS 5.0

typedef struct sqlite_ledger {
    srv_ledger_backend base;
    sqlite3 *db;
    double deadline;      /* srv_now() past which the running statement is interrupted */
    sqlite3_stmt *insert; /* NULL when opened read-only */
    char *path;
    /* The column holding a request's adapter: "adapter", or "NULL" in a
     * ledger older than adapters opened read-only (not migrated). */
    const char *adapter_col;
} sqlite_ledger;

static const char schema[] = "CREATE TABLE IF NOT EXISTS requests ("
                             " id INTEGER PRIMARY KEY,"
                             " time TEXT NOT NULL," /* ISO 8601 UTC, when the request ended */
                             " request_id TEXT,"    /* the response's id, e.g. chatcmpl-... */
                             " tenant TEXT,"
                             " endpoint TEXT NOT NULL,"
                             " model TEXT NOT NULL,"
                             " prompt_tokens INTEGER NOT NULL,"
                             " completion_tokens INTEGER NOT NULL,"
                             " finish_reason TEXT,"
                             " status INTEGER NOT NULL,"
                             " latency_ms REAL NOT NULL,"
                             " adapter TEXT);" /* the LoRA adapter's name; NULL for the base model */
                             "CREATE INDEX IF NOT EXISTS requests_time ON requests(time);"
                             /* a row is written once, whatever retries */
                             "CREATE UNIQUE INDEX IF NOT EXISTS requests_request_id ON requests(request_id);";

/* True when the ledger's table has an adapter column. */
static bool has_adapter_column(sqlite3 *db) {
    sqlite3_stmt *st = NULL;
    bool ok = sqlite3_prepare_v2(db, "SELECT adapter FROM requests LIMIT 0", -1, &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    return ok;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v) {
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static int sqlite_write(srv_ledger_backend *b, const srv_ledger_row *rows, size_t n, char *err, size_t err_size) {
    sqlite_ledger *l = (sqlite_ledger *)b;
    l->deadline = srv_now() + QUERY_SECONDS;
    if (sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: begin failed: %s", l->path, sqlite3_errmsg(l->db));
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const srv_ledger_row *row = &rows[i];
        char t[40];
        srv_iso_time(row->time, t, sizeof t);
        sqlite3_stmt *s = l->insert;
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, t, -1, SQLITE_TRANSIENT);
        bind_text_or_null(s, 2, row->tenant);
        sqlite3_bind_text(s, 3, row->endpoint, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, row->model, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, row->prompt_tokens);
        sqlite3_bind_int64(s, 6, row->completion_tokens);
        bind_text_or_null(s, 7, row->finish_reason);
        sqlite3_bind_int(s, 8, row->status);
        sqlite3_bind_double(s, 9, row->latency * 1000.0);
        bind_text_or_null(s, 10, row->request_id);
        bind_text_or_null(s, 11, row->adapter);
        if (sqlite3_step(s) != SQLITE_DONE) {
            snprintf(err, err_size, "%s: insert failed: %s", l->path, sqlite3_errmsg(l->db));
            sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    if (sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: commit failed: %s", l->path, sqlite3_errmsg(l->db));
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

static long long sqlite_tokens_today(srv_ledger_backend *b, const char *tenant) {
    sqlite_ledger *l = (sqlite_ledger *)b;
    l->deadline = srv_now() + QUERY_SECONDS;
    char since[40];
    srv_iso_time((double)((long long)(srv_wall() / 86400.0) * 86400), since, sizeof since);
    sqlite3_stmt *s = NULL;
    long long total = 0;
    if (sqlite3_prepare_v2(l->db,
                           "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM requests"
                           " WHERE tenant = ? AND time >= ?",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, since, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW) total = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return total;
}

static int sqlite_totals(srv_ledger_backend *b, const char *since, json_t **out, char *err, size_t err_size) {
    sqlite_ledger *l = (sqlite_ledger *)b;
    l->deadline = srv_now() + QUERY_SECONDS;
    sqlite3_stmt *st = NULL;
    *out = NULL;
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT COALESCE(tenant, ''), COALESCE(%s, ''), COUNT(*), SUM(status = 200), SUM(prompt_tokens),"
             " SUM(completion_tokens) FROM requests WHERE time >= ? GROUP BY 1, 2 ORDER BY 1, 2",
             l->adapter_col);
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: not a ledger (table 'requests'): %s", l->path, sqlite3_errmsg(l->db));
        return -1;
    }
    sqlite3_bind_text(st, 1, since, -1, SQLITE_STATIC);
    json_t *rows = json_array();
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        json_array_append_new(rows, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "tenant",
                                              (const char *)sqlite3_column_text(st, 0), "adapter",
                                              (const char *)sqlite3_column_text(st, 1), "requests",
                                              (json_int_t)sqlite3_column_int64(st, 2), "succeeded",
                                              (json_int_t)sqlite3_column_int64(st, 3), "prompt_tokens",
                                              (json_int_t)sqlite3_column_int64(st, 4), "completion_tokens",
                                              (json_int_t)sqlite3_column_int64(st, 5)));
    }
    if (step != SQLITE_DONE) {
        snprintf(err, err_size, "%s: reading the ledger failed: %s", l->path, sqlite3_errmsg(l->db));
        json_decref(rows);
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    *out = rows;
    return 0;
}

static int sqlite_usage(srv_ledger_backend *b, const char *from, const char *to, bool hourly, json_t **out, char *err,
                        size_t err_size) {
    sqlite_ledger *l = (sqlite_ledger *)b;
    l->deadline = srv_now() + QUERY_SECONDS;
    sqlite3_stmt *st = NULL;
    *out = NULL;
    /* time is ISO 8601 text (YYYY-MM-DDTHH:MM:SS.mmmZ): its prefix is the bucket. */
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT COALESCE(tenant, ''), substr(time, 1, %d)%s, COUNT(*), SUM(status = 200),"
             " SUM(prompt_tokens), SUM(completion_tokens), COALESCE(%s, '') FROM requests"
             " WHERE time >= ? AND time < ? GROUP BY 1, 2, 7 ORDER BY 1, 2, 7",
             hourly ? 13 : 10, hourly ? " || ':00'" : "", l->adapter_col);
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: not a ledger (table 'requests'): %s", l->path, sqlite3_errmsg(l->db));
        return -1;
    }
    sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, to, -1, SQLITE_STATIC);
    json_t *rows = json_array();
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "tenant",
                                              (const char *)sqlite3_column_text(st, 0), "adapter",
                                              (const char *)sqlite3_column_text(st, 6), "bucket",
                                              (const char *)sqlite3_column_text(st, 1), "requests",
                                              (json_int_t)sqlite3_column_int64(st, 2), "succeeded",
                                              (json_int_t)sqlite3_column_int64(st, 3), "prompt_tokens",
                                              (json_int_t)sqlite3_column_int64(st, 4), "completion_tokens",
                                              (json_int_t)sqlite3_column_int64(st, 5)));
    }
    if (step != SQLITE_DONE) {
        snprintf(err, err_size, "%s: reading the ledger failed: %s", l->path, sqlite3_errmsg(l->db));
        json_decref(rows);
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    *out = rows;
    return 0;
}

/* The progress handler: non-zero interrupts the statement. */
static int past_deadline(void *arg) {
    const sqlite_ledger *l = arg;
    return srv_now() > l->deadline;
}

static int sqlite_ping(srv_ledger_backend *b, char *err, size_t err_size) {
    sqlite_ledger *l = (sqlite_ledger *)b;
    l->deadline = srv_now() + QUERY_SECONDS;
    /* What a write needs: the write lock, taken and given back. */
    int rc = sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", l->path, sqlite3_errmsg(l->db));
        return -1;
    }
    sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
    return 0;
}

static void sqlite_close(srv_ledger_backend *b) {
    sqlite_ledger *l = (sqlite_ledger *)b;
    if (l == NULL) return;
    sqlite3_finalize(l->insert);
    sqlite3_close(l->db);
    free(l->path);
    free(l);
}

static const srv_ledger_backend_ops sqlite_ops = {
    .name = "sqlite",
    .write = sqlite_write,
    .tokens_today = sqlite_tokens_today,
    .totals = sqlite_totals,
    .usage = sqlite_usage,
    .ping = sqlite_ping,
    .close = sqlite_close,
};

int srv_ledger_sqlite_open(srv_ledger_backend **out, const char *path, bool create, char *err, size_t err_size) {
    *out = NULL;
    sqlite_ledger *l = calloc(1, sizeof *l);
    if (l == NULL || (l->path = strdup(path)) == NULL) {
        free(l);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    l->base.ops = &sqlite_ops;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &l->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: cannot open the ledger: %s", path,
                 l->db ? sqlite3_errmsg(l->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(l->db, BUSY_MS);
    l->deadline = 1e300;
    sqlite3_progress_handler(l->db, 10000, past_deadline, l);
    if (create) {
        char *msg = NULL;
        if (sqlite3_exec(l->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(l->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, err_size, "%s: not a usable ledger database: %s", path, msg ? msg : sqlite3_errmsg(l->db));
            sqlite3_free(msg);
            goto fail;
        }
        /* A ledger written before adapters gets the column (rows before it
         * ran on the base model: NULL). */
        if (!has_adapter_column(l->db) &&
            sqlite3_exec(l->db, "ALTER TABLE requests ADD COLUMN adapter TEXT", NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, err_size, "%s: cannot add the adapter column to the ledger: %s", path,
                     msg ? msg : sqlite3_errmsg(l->db));
            sqlite3_free(msg);
            goto fail;
        }
        if (sqlite3_prepare_v2(l->db,
                               "INSERT OR IGNORE INTO requests (time, tenant, endpoint, model, prompt_tokens,"
                               " completion_tokens,"
                               " finish_reason, status, latency_ms, request_id, adapter)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               -1, &l->insert, NULL) != SQLITE_OK) {
            snprintf(err, err_size, "%s: ledger table 'requests' has an unexpected shape: %s", path,
                     sqlite3_errmsg(l->db));
            goto fail;
        }
    }
    l->adapter_col = has_adapter_column(l->db) ? "adapter" : "NULL";
    *out = &l->base;
    return 0;
fail:
    sqlite_close(&l->base);
    return -1;
}

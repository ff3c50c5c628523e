/*
 * ledger.c - the usage ledger: one SQLite row per finished generation
 * request, written by a thread of its own.
 *
 * Durability: the database is in WAL mode with synchronous=FULL, so a
 * transaction is on disk (the WAL fsync'd) when COMMIT returns; a crash of
 * the process (SIGKILL included) or of the machine loses no committed row.
 * (NORMAL would also survive a killed process, since a committed WAL frame
 * is in the kernel's page cache, but could lose the latest rows on power
 * loss.) Rows queued together share one transaction, so the fsync is paid
 * once per batch, not once per request. A request's last bytes (the final
 * SSE events or the whole JSON body) are released to its client only after
 * its row is committed: a client that saw a request complete finds its row.
 */
#include "server.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct item {
    struct item *next;
    double time;
    char *request_id, *tenant, *endpoint, *model, *finish;
    long prompt, completion;
    int status;
    double latency;
    srv_request *req; /* publish tail to it after the commit; may be NULL */
    char *tail;
    size_t tail_len;
} item;

struct srv_ledger {
    sqlite3 *db;
    sqlite3_stmt *insert;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
    bool stopping;
};

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
                             " latency_ms REAL NOT NULL);"
                             "CREATE INDEX IF NOT EXISTS requests_time ON requests(time);";

static void iso_time(double t, char *out, size_t cap) {
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", base, (int)((t - (double)s) * 1000.0));
}

static void free_item(item *it) {
    free(it->request_id);
    free(it->tenant);
    free(it->endpoint);
    free(it->model);
    free(it->finish);
    free(it->tail);
    free(it);
}

/* Writes a batch in one transaction; returns 0 when committed. */
static int write_batch(srv_ledger *l, item *list) {
    if (sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return -1;
    for (item *it = list; it != NULL; it = it->next) {
        char t[40];
        iso_time(it->time, t, sizeof t);
        sqlite3_stmt *s = l->insert;
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, t, -1, SQLITE_TRANSIENT);
        if (it->tenant)
            sqlite3_bind_text(s, 2, it->tenant, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 2);
        sqlite3_bind_text(s, 3, it->endpoint, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, it->model, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, it->prompt);
        sqlite3_bind_int64(s, 6, it->completion);
        if (it->finish)
            sqlite3_bind_text(s, 7, it->finish, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 7);
        sqlite3_bind_int(s, 8, it->status);
        sqlite3_bind_double(s, 9, it->latency * 1000.0);
        if (it->request_id)
            sqlite3_bind_text(s, 10, it->request_id, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 10);
        if (sqlite3_step(s) != SQLITE_DONE) {
            fprintf(stderr, "baichuan serve: ledger: insert failed: %s\n", sqlite3_errmsg(l->db));
            sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    if (sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "baichuan serve: ledger: commit failed: %s\n", sqlite3_errmsg(l->db));
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

static void *ledger_main(void *arg) {
    srv_ledger *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (l->head == NULL && !l->stopping) pthread_cond_wait(&l->cv, &l->mu);
        if (l->head == NULL && l->stopping) break;
        item *list = l->head;
        l->head = l->tail = NULL;
        pthread_mutex_unlock(&l->mu);
        /* A failed write is reported and retried once; the client gets its
         * reply either way (the ledger must not hold a response hostage). */
        if (write_batch(l, list) != 0) write_batch(l, list);
        while (list != NULL) {
            item *next = list->next;
            if (list->req != NULL) {
                srv_request_publish(list->req, list->tail, list->tail_len, true);
                srv_request_unref(list->req);
            }
            free_item(list);
            list = next;
        }
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static int open_db(const char *path, int flags, sqlite3 **db, char *err, size_t err_size) {
    if (sqlite3_open_v2(path, db, flags, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: cannot open the ledger: %s", path, *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*db, 5000);
    return 0;
}

int srv_ledger_open(srv_ledger **out, const char *path, char *err, size_t err_size) {
    *out = NULL;
    srv_ledger *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, &l->db, err, err_size) != 0)
        goto fail;
    char *msg = NULL;
    if (sqlite3_exec(l->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(l->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_size, "%s: not a usable ledger database: %s", path, msg ? msg : sqlite3_errmsg(l->db));
        sqlite3_free(msg);
        goto fail;
    }
    if (sqlite3_prepare_v2(l->db,
                           "INSERT INTO requests (time, tenant, endpoint, model, prompt_tokens, completion_tokens,"
                           " finish_reason, status, latency_ms, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &l->insert, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: ledger table 'requests' has an unexpected shape: %s", path, sqlite3_errmsg(l->db));
        goto fail;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, ledger_main, l) != 0) {
        snprintf(err, err_size, "cannot start the ledger thread");
        goto fail;
    }
    *out = l;
    return 0;
fail:
    sqlite3_finalize(l->insert);
    sqlite3_close(l->db);
    free(l);
    return -1;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

void srv_ledger_submit(srv_ledger *l, const srv_ledger_row *row, srv_request *r, const char *tail, size_t tail_len) {
    item *it = calloc(1, sizeof *it);
    if (it != NULL) {
        it->time = row->time;
        it->request_id = dup_or_null(row->request_id);
        it->tenant = dup_or_null(row->tenant);
        it->endpoint = dup_or_null(row->endpoint ? row->endpoint : "");
        it->model = dup_or_null(row->model ? row->model : "");
        it->finish = dup_or_null(row->finish_reason);
        it->prompt = row->prompt_tokens;
        it->completion = row->completion_tokens;
        it->status = row->status;
        it->latency = row->latency;
        it->req = r;
        if (tail_len > 0 && (it->tail = malloc(tail_len)) != NULL) memcpy(it->tail, tail, tail_len);
        it->tail_len = it->tail ? tail_len : 0;
    }
    if (it == NULL || it->endpoint == NULL || it->model == NULL || (tail_len > 0 && it->tail == NULL)) {
        /* Out of memory: the row is lost, the client still gets its bytes. */
        fprintf(stderr, "baichuan serve: ledger: out of memory, a row was not recorded\n");
        if (r != NULL) {
            srv_request_publish(r, tail, tail_len, true);
            srv_request_unref(r);
        }
        if (it) free_item(it);
        return;
    }
    pthread_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

long long srv_ledger_tokens_today(srv_ledger *l, const char *tenant) {
    char since[40];
    double now = srv_wall();
    iso_time((double)((long long)(now / 86400.0) * 86400), since, sizeof since);
    sqlite3_stmt *s = NULL;
    long long total = 0;
    /* Called before the thread writes anything, so the connection is free. */
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

void srv_ledger_close(srv_ledger *l) {
    if (l == NULL) return;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    sqlite3_finalize(l->insert);
    sqlite3_close(l->db);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

/*
 * ledger.c - the usage ledger: one row per finished generation request,
 * written by a thread of its own into a back-end (store.h): a SQLite file
 * (ledger_sqlite.c) or a PostgreSQL database (ledger_pg.c).
 *
 * Rows queued together share one transaction, so the commit (an fsync) is
 * paid once per batch, not once per request. A request's last bytes (the
 * final SSE events or the whole JSON body) are released to its client only
 * after its row is committed: a client that saw a request complete finds
 * its row. A batch that fails is rolled back whole (no half-written rows),
 * reported (once), and tried again every half second until opt.wait seconds
 * (--ledger-wait) after its first try (a database back within that keeps every reply);
 * after that its requests' replies are withheld: each client gets a 503 (a
 * non-streamed request) or an error event ending its stream, so no client
 * sees a completion the ledger lacks.
 *
 * Charges: a request's tokens count against its tenant's daily quota only
 * once its row is committed, so only for replies the client receives.
 * With the PostgreSQL tenant store in the ledger's own database the
 * back-end adds them in the commit's transaction (charge_quotas, store.h):
 * the day counters equal the ledger's sums whatever fails. Otherwise the
 * ledger hands them to the on_commit hook after the commit.
 *
 * Bounded: at most max_rows rows wait; a row past that is dropped (counted,
 * reported) and its reply withheld (503), and srv_ledger_full tells the
 * HTTP side to shed new requests before that happens.
 */
#include "ledger.h"

#include "store_open.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct item {
    struct item *next;
    srv_ledger_row row; /* its strings are owned by the item */
    srv_request *req;   /* publish tail to it after the commit, and charge its tenant; may be NULL */
    char *tail;
    size_t tail_len;
} item;

struct srv_ledger {
    srv_ledger_backend *backend; /* the ledger thread's */
    char *path;
    /* A second connection for the HTTP thread's reads (/admin/usage), opened
     * on first use, so that a read never waits on the writer's connection. */
    srv_ledger_backend *reader;
    pthread_mutex_t reader_mu;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
    bool stopping;
    srv_ledger_options opt;
    long n_queued;        /* rows in head..tail, under mu */
    long long n_dropped;  /* rows refused past max_rows, under mu */
    long long n_withheld; /* replies withheld: their rows could not be committed, under mu */
    bool failing;         /* the latest write failed, under mu */
    /* The readiness probe's own connection (health.c's thread), opened on
     * first use. */
    srv_ledger_backend *probe;
};

static void free_item(item *it) {
    free((char *)it->row.request_id);
    free((char *)it->row.tenant);
    free((char *)it->row.endpoint);
    free((char *)it->row.model);
    free((char *)it->row.adapter);
    free((char *)it->row.finish_reason);
    free(it->tail);
    free(it);
}

/* The batch as an array of rows, written in one transaction. */
static int write_batch(srv_ledger *l, item *list, bool report) {
    size_t n = 0;
    for (item *it = list; it != NULL; it = it->next) n++;
    srv_ledger_row *rows = calloc(n, sizeof *rows);
    char err[512] = "";
    int rc = -1;
    if (rows == NULL) {
        snprintf(err, sizeof err, "out of memory");
    } else {
        n = 0;
        for (item *it = list; it != NULL; it = it->next) rows[n++] = it->row;
        rc = l->backend->ops->write(l->backend, rows, n, err, sizeof err);
    }
    if (rc != 0 && report) fprintf(stderr, "baichuan serve: ledger: %zu rows not written (retrying): %s\n", n, err);
    free(rows);
    return rc;
}

/* The reply of a request whose row could not be committed: an error in
 * place of its final bytes (a 503 when nothing was sent yet). */
static void publish_unrecorded(srv_request *r) {
    json_t *e = srv_error_json("The usage ledger could not record this request, so its result is withheld; retry "
                               "shortly.",
                               "server_error", NULL, "ledger_unavailable");
    char *text = e ? srv_json_dump(e) : NULL;
    srv_buf b = {0};
    if (r->stream) {
        srv_buf_printf(&b, "data: %s\n\n", text ? text : "{}");
    } else {
        srv_buf_puts(&b, text ? text : "{}");
        pthread_mutex_lock(&r->mu); /* read by the HTTP thread once the reply is done */
        r->http_status = 503;
        pthread_mutex_unlock(&r->mu);
    }
    srv_request_publish(r, b.data ? b.data : "", b.len, true);
    srv_buf_free(&b);
    free(text);
    json_decref(e);
}

/* Writes the batch, retrying every half second until opt.wait seconds have
 * passed (or the ledger is closing and has tried for that long): 0 once
 * committed, else -1. */
static int write_until_committed(srv_ledger *l, item *list) {
    double deadline = srv_now() + l->opt.wait;
    for (int attempt = 0;; attempt++) {
        int rc = write_batch(l, list, attempt == 0);
        pthread_mutex_lock(&l->mu);
        l->failing = rc != 0;
        pthread_mutex_unlock(&l->mu);
        if (rc == 0) {
            if (attempt > 0) fprintf(stderr, "baichuan serve: ledger: written after %d retries\n", attempt);
            return 0;
        }
        if (srv_now() + 0.5 > deadline) {
            fprintf(stderr, "baichuan serve: ledger: not written within --ledger-wait %.0f s: replies withheld\n",
                    l->opt.wait);
            return -1;
        }
        usleep(500 * 1000);
    }
}

static void *ledger_main(void *arg) {
    srv_ledger *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (l->head == NULL && !l->stopping) pthread_cond_wait(&l->cv, &l->mu);
        if (l->head == NULL && l->stopping) break;
        item *list = l->head;
        l->head = l->tail = NULL;
        long n = l->n_queued;
        l->n_queued = 0;
        pthread_mutex_unlock(&l->mu);
        /* A batch not committed within the wait has its replies withheld. */
        bool committed = write_until_committed(l, list) == 0;
        if (!committed) {
            pthread_mutex_lock(&l->mu);
            l->n_withheld += n;
            pthread_mutex_unlock(&l->mu);
        }
        while (list != NULL) {
            item *next = list->next;
            if (list->req != NULL) {
                srv_request *r = list->req;
                if (committed && l->opt.on_commit != NULL && r->tenant != NULL && !l->backend->charge_quotas)
                    l->opt.on_commit(l->opt.ctx, r->tenant, list->row.prompt_tokens + list->row.completion_tokens);
                if (committed)
                    srv_request_publish(r, list->tail, list->tail_len, true);
                else
                    publish_unrecorded(r);
                srv_request_unref(r);
            }
            free_item(list);
            list = next;
        }
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int srv_ledger_open(srv_ledger **out, const char *path, const srv_ledger_options *opt, char *err, size_t err_size) {
    *out = NULL;
    srv_ledger *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if ((l->path = strdup(path)) == NULL) {
        snprintf(err, err_size, "out of memory");
        free(l);
        return -1;
    }
    if (srv_ledger_backend_open(&l->backend, path, true, err, err_size) != 0) {
        free(l->path);
        free(l);
        return -1;
    }
    l->opt = *opt;
    l->backend->charge_quotas = opt->charge_quotas;
    pthread_mutex_init(&l->reader_mu, NULL);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, ledger_main, l) != 0) {
        snprintf(err, err_size, "cannot start the ledger thread");
        l->backend->ops->close(l->backend);
        pthread_mutex_destroy(&l->mu);
        pthread_mutex_destroy(&l->reader_mu);
        pthread_cond_destroy(&l->cv);
        free(l->path);
        free(l);
        return -1;
    }
    *out = l;
    return 0;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

void srv_ledger_submit(srv_ledger *l, const srv_ledger_row *row, srv_request *r, const char *tail, size_t tail_len) {
    item *it = calloc(1, sizeof *it);
    if (it != NULL) {
        it->row = *row;
        it->row.request_id = dup_or_null(row->request_id);
        it->row.tenant = dup_or_null(row->tenant);
        it->row.endpoint = dup_or_null(row->endpoint ? row->endpoint : "");
        it->row.model = dup_or_null(row->model ? row->model : "");
        it->row.adapter = dup_or_null(row->adapter);
        it->row.finish_reason = dup_or_null(row->finish_reason);
        it->req = r;
        if (tail_len > 0 && (it->tail = malloc(tail_len)) != NULL) memcpy(it->tail, tail, tail_len);
        it->tail_len = it->tail ? tail_len : 0;
    }
    if (it == NULL || it->row.endpoint == NULL || it->row.model == NULL || (tail_len > 0 && it->tail == NULL)) {
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
    if (l->n_queued >= l->opt.max_rows) {
        l->n_dropped++;
        pthread_mutex_unlock(&l->mu);
        static _Atomic double last_logged; /* one line a second at most */
        double now = srv_now(), last = atomic_load(&last_logged);
        if (now - last >= 1.0 && atomic_compare_exchange_strong(&last_logged, &last, now))
            fprintf(stderr, "baichuan serve: ledger: %ld rows wait already (--max-ledger-queue): a row was refused\n",
                    l->opt.max_rows);
        if (r != NULL) {
            publish_unrecorded(r);
            srv_request_unref(r);
        }
        free_item(it);
        return;
    }
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->n_queued++;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

bool srv_ledger_full(srv_ledger *l) {
    pthread_mutex_lock(&l->mu);
    /* Shed new requests before the queue itself refuses rows: a tenth of
     * the room is kept for the requests already running. */
    bool full = l->n_queued >= l->opt.max_rows - l->opt.max_rows / 10;
    pthread_mutex_unlock(&l->mu);
    return full;
}

void srv_ledger_stats(srv_ledger *l, srv_ledger_stats_t *out) {
    pthread_mutex_lock(&l->mu);
    *out = (srv_ledger_stats_t){.queued = l->n_queued,
                                .dropped = l->n_dropped,
                                .withheld = l->n_withheld,
                                .failing = l->failing,
                                .max_rows = l->opt.max_rows};
    pthread_mutex_unlock(&l->mu);
}

int srv_ledger_ping(srv_ledger *l, char *err, size_t err_size) {
    if (l->probe == NULL && srv_ledger_backend_open(&l->probe, l->path, false, err, err_size) != 0) return -1;
    return l->probe->ops->ping(l->probe, err, err_size);
}

long long srv_ledger_tokens_today(srv_ledger *l, const char *tenant) {
    /* Called before the thread writes anything, so the connection is free. */
    return l->backend->ops->tokens_today(l->backend, tenant);
}

int srv_ledger_usage(srv_ledger *l, const char *from, const char *to, bool hourly, json_t **out, char *err,
                     size_t err_size) {
    *out = NULL;
    pthread_mutex_lock(&l->reader_mu);
    int rc = -1;
    if (l->reader != NULL || srv_ledger_backend_open(&l->reader, l->path, false, err, err_size) == 0)
        rc = l->reader->ops->usage(l->reader, from, to, hourly, out, err, err_size);
    pthread_mutex_unlock(&l->reader_mu);
    return rc;
}

void srv_ledger_close(srv_ledger *l) {
    if (l == NULL) return;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->backend->ops->close(l->backend);
    if (l->reader != NULL) l->reader->ops->close(l->reader);
    if (l->probe != NULL) l->probe->ops->close(l->probe);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->reader_mu);
    pthread_cond_destroy(&l->cv);
    free(l->path);
    free(l);
}

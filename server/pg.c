/*
 * pg.c - libpq connections with timeouts and reconnection, and URLs with
 * their passwords masked. No message here carries a password.
 */
#include "pg.h"

#include "util.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_pg_mask(const char *url, char *out, size_t cap) {
    srv_buf b = {0};
    const char *scheme = strstr(url, "://");
    const char *auth = scheme ? scheme + 3 : url;
    const char *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    if (at != NULL && (slash == NULL || at < slash)) { /* user[:password]@ */
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon != NULL) {
            srv_buf_append(&b, url, (size_t)(colon + 1 - url));
            srv_buf_puts(&b, "***");
            url = at;
        }
    }
    /* ...?password=secret&... in the query string */
    const char *q = strchr(url, '?');
    if (q != NULL) {
        srv_buf_append(&b, url, (size_t)(q - url));
        url = q;
        while (*url != '\0') {
            const char *end = strchr(url + 1, '&');
            size_t n = end ? (size_t)(end - url) : strlen(url);
            if (strncmp(url + 1, "password=", 9) == 0) {
                srv_buf_append(&b, url, 10);
                srv_buf_puts(&b, "***");
            } else {
                srv_buf_append(&b, url, n);
            }
            url += n;
        }
    } else {
        srv_buf_puts(&b, url);
    }
    snprintf(out, cap, "%s", b.data ? b.data : "");
    srv_buf_free(&b);
}

/* The first line of libpq's message. */
static void first_line(const char *msg, char *out, size_t cap) {
    size_t n = strcspn(msg, "\n");
    snprintf(out, cap, "%.*s", (int)n, msg);
}

static int connect_now(srv_pg *p, char *err, size_t err_size) {
    static const char *const keys[] = {"dbname",           "connect_timeout",  "options",
                                       "tcp_user_timeout", "application_name", NULL};
    const char *const values[] = {p->url, "3",        "-c statement_timeout=5000 -c client_min_messages=warning",
                                  "5000", "baichuan", NULL};
    if (p->conn != NULL) PQfinish(p->conn);
    p->conn = PQconnectdbParams(keys, values, 1);
    if (p->conn != NULL && PQstatus(p->conn) == CONNECTION_OK) return 0;
    char why[256];
    first_line(p->conn ? PQerrorMessage(p->conn) : "out of memory", why, sizeof why);
    snprintf(err, err_size, "%s: cannot connect: %s", p->masked, why);
    PQfinish(p->conn);
    p->conn = NULL;
    return -1;
}

int srv_pg_open(srv_pg *p, const char *url, char *err, size_t err_size) {
    memset(p, 0, sizeof *p);
    srv_pg_mask(url, p->masked, sizeof p->masked);
    if ((p->url = strdup(url)) == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (connect_now(p, err, err_size) != 0) {
        srv_pg_close(p);
        return -1;
    }
    return 0;
}

void srv_pg_close(srv_pg *p) {
    if (p->conn != NULL) PQfinish(p->conn);
    free(p->url);
    memset(p, 0, sizeof *p);
}

/* Whether a result is a success. */
static bool result_ok(const PGresult *r) {
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

/* Waits until a result can be read without blocking: 0; -1 on a broken
 * connection; -2 past the deadline. */
static int wait_readable(PGconn *conn, double deadline) {
    while (PQisBusy(conn)) {
        double left = deadline - srv_now();
        if (left <= 0) return -2;
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
        int n = poll(&pfd, 1, (int)(left * 1000.0) + 1);
        if (n < 0 && errno != EINTR) return -1;
        if (n > 0 && !PQconsumeInput(conn)) return -1;
    }
    return 0;
}

/* Sends sql and collects its results before a deadline, so a database that
 * accepts bytes but never answers (frozen, or a half-open connection) cannot
 * hold the caller: the first failed result, else the last one; NULL when the
 * statement could not be sent or the connection broke, with *timed_out when
 * no answer came in time. */
static PGresult *exec_bounded(srv_pg *p, const char *sql, int n_params, const char *const *params, bool *timed_out) {
    *timed_out = false;
    /* Without parameters, the simple protocol (several statements may share
     * one round trip). */
    int sent = n_params == 0 ? PQsendQuery(p->conn, sql)
                             : PQsendQueryParams(p->conn, sql, n_params, NULL, params, NULL, NULL, 0);
    if (!sent) return NULL;
    double deadline = srv_now() + SRV_PG_ANSWER_SECONDS;
    PGresult *keep = NULL;
    for (;;) {
        int w = wait_readable(p->conn, deadline);
        if (w != 0) {
            *timed_out = w == -2;
            PQclear(keep);
            return NULL;
        }
        PGresult *r = PQgetResult(p->conn);
        if (r == NULL) break;
        if (keep == NULL || result_ok(keep)) {
            PQclear(keep);
            keep = r;
        } else {
            PQclear(r);
        }
    }
    return keep;
}

PGresult *srv_pg_exec(srv_pg *p, const char *sql, int n_params, const char *const *params, char *err, size_t err_size) {
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = false, timed_out;
        if (p->conn == NULL || PQstatus(p->conn) != CONNECTION_OK) {
            if (p->in_transaction) {
                snprintf(err, err_size, "%s: the connection was lost in a transaction", p->masked);
                return NULL;
            }
            if (connect_now(p, err, err_size) != 0) return NULL;
            fresh = true;
        }
        PGresult *res = exec_bounded(p, sql, n_params, params, &timed_out);
        if (timed_out) { /* drop the connection: its state is unknown */
            snprintf(err, err_size, "%s: no answer within %.0f s", p->masked, SRV_PG_ANSWER_SECONDS);
            PQfinish(p->conn);
            p->conn = NULL;
            return NULL;
        }
        if (res != NULL && result_ok(res)) return res;
        char why[256];
        first_line(res ? PQresultErrorMessage(res) : PQerrorMessage(p->conn), why, sizeof why);
        snprintf(err, err_size, "%s: %s", p->masked, why[0] ? why : "the statement failed");
        PQclear(res);
        /* An idle connection the server dropped (a restart): once more. */
        if (PQstatus(p->conn) == CONNECTION_OK || fresh || p->in_transaction) return NULL;
    }
    return NULL;
}

int srv_pg_run(srv_pg *p, const char *sql, char *err, size_t err_size) {
    PGresult *r = srv_pg_exec(p, sql, 0, NULL, err, err_size);
    if (r == NULL) return -1;
    PQclear(r);
    return 0;
}

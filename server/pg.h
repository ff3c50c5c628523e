/*
 * pg.h - one libpq connection of a PostgreSQL back-end (pg.c): connected
 * with bounded timeouts, reconnected by itself after the database returns.
 *
 * Bounds: connect_timeout 3 s (the whole handshake), statement_timeout 5 s
 * (the server cancels), and the client waits SRV_PG_ANSWER_SECONDS at most
 * for a statement's answer, then drops the connection (a frozen server or a
 * half-open connection cannot hold a caller); tcp_user_timeout 5 s. A call
 * that finds its connection failed or dropped connects again at once (on
 * demand, within connect_timeout), so the first call after the database
 * returns succeeds. A call waits at most connect_timeout +
 * SRV_PG_ANSWER_SECONDS. A connection belongs to one thread at a time.
 */
#ifndef BC_PG_H
#define BC_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define SRV_PG_ANSWER_SECONDS 6.0 /* statement_timeout (5 s) and a second for the reply */

typedef struct srv_pg {
    char *url;
    char masked[512]; /* the URL with its password as *** (for messages) */
    PGconn *conn;
    bool in_transaction; /* between BEGIN and COMMIT: a failed statement is not resent */
} srv_pg;

/* Connects to url: 0, or -1 with "URL(masked): reason" in err. */
int srv_pg_open(srv_pg *p, const char *url, char *err, size_t err_size);
void srv_pg_close(srv_pg *p);

/* Runs sql with text parameters; the result when its status is
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK, else NULL with a one-line reason in
 * err (the connection is re-established on a later call). A statement
 * that failed because an idle connection had been lost is sent once more
 * on a fresh connection. */
PGresult *srv_pg_exec(srv_pg *p, const char *sql, int n_params, const char *const *params, char *err, size_t err_size);
/* Runs a statement whose result is not needed: 0, or -1 with err. */
int srv_pg_run(srv_pg *p, const char *sql, char *err, size_t err_size);

/* url with its password replaced by *** (in out). */
void srv_pg_mask(const char *url, char *out, size_t cap);

#endif /* BC_PG_H */

/*
 * ledger.h - the usage ledger (ledger.c): one row per finished generation
 * request, committed by a thread of its own through a back-end of store.h,
 * and the request's last bytes released only once its row is committed.
 */
#ifndef BC_LEDGER_H
#define BC_LEDGER_H

#include "request.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct srv_ledger srv_ledger;

/* How the ledger is run (serve's options). */
typedef struct srv_ledger_options {
    long max_rows; /* rows waiting for a commit, at most (--max-ledger-queue) */
    double wait;   /* seconds a failing batch is retried before its replies are withheld (--ledger-wait) */
    /* The back-end charges each row's tokens to its tenant's day counter in
     * the commit's transaction (the PostgreSQL tenant store in the same
     * database); on_commit is then not called. */
    bool charge_quotas;
    /* Otherwise called after each commit, on the ledger's thread, for each
     * committed request of a tenant: its prompt + completion tokens. */
    void (*on_commit)(void *ctx, srv_tenant *tenant, long long tokens);
    void *ctx;
} srv_ledger_options;

/* What /metrics and /readyz show of the ledger. */
typedef struct srv_ledger_stats_t {
    long queued, max_rows;
    long long dropped, withheld;
    bool failing; /* the latest write failed */
} srv_ledger_stats_t;

/* Opens (creating if needed) the ledger at path (a SQLite file or a
 * postgresql:// URL, see store_open.h) and starts its thread. */
int srv_ledger_open(srv_ledger **out, const char *path, const srv_ledger_options *opt, char *err, size_t err_size);
/* Whether new requests should be shed: the queue is near max_rows. */
bool srv_ledger_full(srv_ledger *l);
void srv_ledger_stats(srv_ledger *l, srv_ledger_stats_t *out);
/* The back-end's ping on a connection of the probe's own (one thread). */
int srv_ledger_ping(srv_ledger *l, char *err, size_t err_size);
/* Records a row. With r, the ledger publishes tail (final bytes, copied) to r
 * once the row is committed, and drops the reference it takes over on r. */
void srv_ledger_submit(srv_ledger *l, const srv_ledger_row *row, srv_request *r, const char *tail, size_t tail_len);
/* Tokens per tenant since the start of today (UTC), to seed the quotas.
 * Before the first submit only (it uses the writer's connection). */
long long srv_ledger_tokens_today(srv_ledger *l, const char *tenant);
/* The back-end's usage() (store.h) over [from, to), on a second connection
 * of the ledger's own (the HTTP thread's; serialized by a lock). */
int srv_ledger_usage(srv_ledger *l, const char *from, const char *to, bool hourly, json_t **out, char *err,
                     size_t err_size);
/* Commits what is queued, stops the thread, closes the database. NULL is
 * ignored. */
void srv_ledger_close(srv_ledger *l);

#endif /* BC_LEDGER_H */

/*
 * http.h - the HTTP side (http.c): libmicrohttpd on its own poll thread,
 * routing, authentication, limits, the cheap endpoints, and the hand-off of
 * generation requests to the scheduler.
 */
#ifndef BC_HTTP_H
#define BC_HTTP_H

#include "ledger.h"
#include "openai.h"
#include "scheduler.h"
#include "store.h"
#include "util.h"

#include <stdbool.h>
#include <stddef.h>

/* What the HTTP side needs of the server's settings. */
typedef struct srv_http_config {
    const char *host; /* IPv4 address to listen on */
    int port;         /* 0: any free port (srv_http_port tells which) */
    size_t max_body;  /* bytes */
    /* Bounds (serve's options; past each the server answers 503 with
     * Retry-After, or closes a connection whose body has no length). */
    int max_connections;        /* open connections (libmicrohttpd refuses more) */
    long long max_bodies_bytes; /* request bodies buffered at once, over every connection */
    int n_workers;              /* threads for authentication, parsing and store queries */
    int max_waiting;            /* requests waiting for one of them */
    double max_wait;            /* seconds a request may wait for a worker */
    const char *metrics_token;  /* a bearer token opening /metrics without a tenant (NULL: none) */
    /* /readyz's verdict, without waiting: true when ready; *detail (a JSON
     * object, owned by the caller) says what is not. NULL: always ready. */
    bool (*ready)(void *ctx, json_t **detail);
    /* More /metrics lines (the server's stores). May be NULL. */
    void (*extra_metrics)(void *ctx, srv_buf *out);
    void *ready_ctx;
} srv_http_config;

typedef struct srv_http srv_http;

/* Starts listening. cfg, mi, sched, tenants (NULL: no authentication) and
 * ledger (NULL: none) must outlive the srv_http. */
int srv_http_start(srv_http **out, const srv_http_config *cfg, const srv_model_info *mi, srv_scheduler *sched,
                   srv_tenant_store *tenants, srv_ledger *ledger, char *err, size_t err_size);
/* Stops accepting new connections. */
void srv_http_quiesce(srv_http *h);
/* The port listened on (useful with port 0). */
int srv_http_port(srv_http *h);
/* Generation requests whose reply has not been sent (or abandoned) yet:
 * what shutdown waits for. Idle keep-alive and slow clients do not count. */
int srv_http_pending(srv_http *h);
/* Lets the workers finish what they hold and stops them (before the
 * scheduler stops, since a worker submits to it). NULL is ignored. */
void srv_http_stop_workers(srv_http *h);
/* Stops the workers and the thread and closes every connection. NULL is
 * ignored. */
void srv_http_stop(srv_http *h);

#endif /* BC_HTTP_H */

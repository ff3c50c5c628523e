/*
 * health.h - readiness probes (health.c): a thread per store (the tenant
 * store, the ledger) pings it every SRV_HEALTH_INTERVAL, each ping within
 * the store's bound, and keeps the verdict, so that /readyz answers from
 * memory and never waits on a store.
 *
 * A store is ready when its latest ping succeeded and the ping under way (if
 * any) has not taken longer than SRV_HEALTH_BOUND: a frozen database is
 * reported within that bound, not after the store's own timeouts.
 */
#ifndef BC_HEALTH_H
#define BC_HEALTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SRV_HEALTH_BOUND    1.0  /* seconds a ping may take before the store counts as not ready */
#define SRV_HEALTH_INTERVAL 0.25 /* seconds between the end of a ping and the next */

/* One store to ping: 0 when it answered, else -1 with a reason in err. */
typedef struct srv_probe {
    const char *name; /* "store", "ledger" */
    int (*ping)(void *ctx, char *err, size_t err_size);
    void *ctx;
} srv_probe;

typedef struct srv_health srv_health;

/* Starts pinging probes[0..n) (copied). 0, or -1 with err. */
int srv_health_start(srv_health **out, const srv_probe *probes, int n, char *err, size_t err_size);
/* Whether every probe is ready; each one that is not gets an entry in
 * not_ready (a JSON object: name -> reason). Never waits on a store. */
bool srv_health_ready(srv_health *h, json_t *not_ready);
/* Stops the threads (waiting for the pings under way). NULL is ignored. */
void srv_health_stop(srv_health *h);

#endif /* BC_HEALTH_H */

/*
 * scheduler.h - continuous batching on one engine thread (scheduler.c):
 * requests' choices queue for the context's sequences (slots), one batched
 * forward pass per step, output into the requests' buffers.
 *
 * The scheduler knows nothing of tenants, metrics of requests or the
 * ledger: what happens to a request that ends is the caller's, given as
 * hooks at start.
 */
#ifndef BC_SCHEDULER_H
#define BC_SCHEDULER_H

#include "baichuan.h"
#include "metrics.h"
#include "request.h"
#include "store.h"

#include <stddef.h>

typedef struct srv_scheduler srv_scheduler;

/* What the layer above does with a request that ended (called on the
 * engine thread, without the scheduler's lock). */
typedef struct srv_scheduler_hooks {
    void *ctx; /* passed to each hook */
    /* Counts the request, ended with an HTTP status (200, 499 gone, 500
     * failed), in the metrics and its tenant's quota. NULL: not counted. */
    void (*account)(void *ctx, const srv_request *r, int status);
    /* Records row and publishes tail (the final bytes; copied) to r once
     * the row is kept, then drops the reference on r it takes over. NULL:
     * no record; tail goes to r at once. */
    void (*record)(void *ctx, const srv_ledger_row *row, srv_request *r, const char *tail, size_t tail_len);
} srv_scheduler_hooks;

/* Starts the engine thread on ctx (its sequences are the slots). At most
 * max_queue choices wait for a slot. Each step carries at most step_tokens
 * entries, the running streams' next tokens included (see
 * srv_scheduler_step_tokens). */
int srv_scheduler_start(srv_scheduler **out, bc_context *ctx, int max_queue, int step_tokens,
                        const srv_scheduler_hooks *hooks, char *err, size_t err_size);
/* The budget a step of ctx gets for step_tokens asked: at most the
 * context's n_batch (0 or less: n_batch), and at least its sequences, so
 * every running stream's next token fits and a prompt always advances. */
int srv_scheduler_step_tokens(const bc_context *ctx, int step_tokens);
/* Queues a request's choices (takes a reference). -1: the queue is full
 * (max_queue choices waiting), or the scheduler is stopping. */
int srv_scheduler_submit(srv_scheduler *s, srv_request *r);
/* Choices waiting in the queue, and slots running one. */
void srv_scheduler_counts(srv_scheduler *s, int *queued, int *active);
/* The engine's gauges and counters for /metrics. */
void srv_scheduler_stats(srv_scheduler *s, srv_engine_stats *out);
/* Cancels everything still queued or running (forced shutdown). */
void srv_scheduler_cancel_all(srv_scheduler *s);
/* Stops the engine thread once no request is queued or active, and frees
 * the scheduler. NULL is ignored. */
void srv_scheduler_stop(srv_scheduler *s);

#endif /* BC_SCHEDULER_H */

/*
 * metrics.h - counters and histograms for GET /metrics (metrics.c), in the
 * Prometheus text format. Every call is thread-safe (one lock, a leaf).
 */
#ifndef BC_METRICS_H
#define BC_METRICS_H

#include "baichuan.h"

/* The engine's state for /metrics: a snapshot the scheduler refreshes after
 * every step (srv_scheduler_stats). */
typedef struct srv_engine_stats {
    int queued, active, n_slots;
    bc_kv_stats kv;
    long long prefix_hit_tokens;  /* prompt tokens found in the prefix cache (first admissions) */
    long long prefix_miss_tokens; /* prompt tokens computed (first admissions) */
    long long preemptions;        /* choices preempted to free KV blocks */
    long long forked_tokens;      /* prompt positions a choice took from a sibling's sequence (n > 1) */
    double last_step;             /* srv_now() when the engine thread last finished a step (/livez) */
} srv_engine_stats;

void srv_metrics_init(void);
void srv_metrics_free(void);
/* One finished HTTP request with its status, of tenant (NULL: none). */
void srv_metrics_request(const char *tenant, const char *endpoint, int status);
void srv_metrics_tokens(const char *tenant, long prompt, long completion);
/* A request's first token sent, seconds after it arrived. */
void srv_metrics_ttft(double seconds);
/* A stream's step after its first, seconds after its previous step. */
void srv_metrics_token_latency(double seconds);
/* A stream's token after its first, seconds after its previous token. */
void srv_metrics_inter_token(double seconds);
/* The Prometheus text exposition (malloc'd), with the engine's gauges. */
char *srv_metrics_render(const srv_engine_stats *engine);

#endif /* BC_METRICS_H */

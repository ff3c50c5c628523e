/*
 * metrics.c - counters and histograms for GET /metrics, in the Prometheus
 * text exposition format (HELP/TYPE lines; histograms as cumulative
 * _bucket{le=...} series with _sum and _count).
 */
#include "metrics.h"

#include "grammars.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 256

typedef struct series {
    char tenant[64];
    char endpoint[32];
    int status;
    unsigned long long count;
} series;

typedef struct token_series {
    char tenant[64];
    unsigned long long prompt, completion;
} token_series;

/* Bucket upper bounds in seconds, for serving on CPUs: a first token
 * comes in milliseconds after a short prompt and in a minute or more after
 * a long one on two cores; a token follows the last in milliseconds alone
 * and in seconds when a step also computes a prompt chunk. */
static const double ttft_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60};
static const double itl_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
static const double token_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
#define N_TTFT  (sizeof ttft_bounds / sizeof ttft_bounds[0])
#define N_ITL   (sizeof itl_bounds / sizeof itl_bounds[0])
#define N_TOKEN (sizeof token_bounds / sizeof token_bounds[0])

#define MAX_BUCKETS 16
_Static_assert(N_TTFT < MAX_BUCKETS && N_ITL < MAX_BUCKETS && N_TOKEN < MAX_BUCKETS, "a histogram's bounds and +Inf");

typedef struct histogram {
    unsigned long long buckets[MAX_BUCKETS]; /* non-cumulative counts per bound, then +Inf */
    unsigned long long count;
    double sum;
} histogram;

static struct {
    pthread_mutex_t mu;
    series requests[MAX_SERIES];
    int n_requests;
    token_series tokens[MAX_SERIES];
    int n_tokens;
    histogram ttft, itl, token;
} m = {.mu = PTHREAD_MUTEX_INITIALIZER};

void srv_metrics_init(void) {
    pthread_mutex_lock(&m.mu);
    m.n_requests = m.n_tokens = 0;
    memset(&m.ttft, 0, sizeof m.ttft);
    memset(&m.itl, 0, sizeof m.itl);
    memset(&m.token, 0, sizeof m.token);
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_free(void) {}

static void copy_label(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

void srv_metrics_request(const char *tenant, const char *endpoint, int status) {
    char tn[64], ep[32];
    copy_label(tn, sizeof tn, tenant);
    copy_label(ep, sizeof ep, endpoint);
    pthread_mutex_lock(&m.mu);
    int i = 0;
    while (i < m.n_requests && !(m.requests[i].status == status && strcmp(m.requests[i].tenant, tn) == 0 &&
                                 strcmp(m.requests[i].endpoint, ep) == 0))
        i++;
    if (i == m.n_requests && m.n_requests < MAX_SERIES) {
        memcpy(m.requests[i].tenant, tn, sizeof tn);
        memcpy(m.requests[i].endpoint, ep, sizeof ep);
        m.requests[i].status = status;
        m.requests[i].count = 0;
        m.n_requests++;
    }
    if (i < m.n_requests) m.requests[i].count++;
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_tokens(const char *tenant, long prompt, long completion) {
    char tn[64];
    copy_label(tn, sizeof tn, tenant);
    pthread_mutex_lock(&m.mu);
    int i = 0;
    while (i < m.n_tokens && strcmp(m.tokens[i].tenant, tn) != 0) i++;
    if (i == m.n_tokens && m.n_tokens < MAX_SERIES) {
        memset(&m.tokens[i], 0, sizeof m.tokens[i]);
        memcpy(m.tokens[i].tenant, tn, sizeof tn);
        m.n_tokens++;
    }
    if (i < m.n_tokens) {
        m.tokens[i].prompt += (unsigned long long)prompt;
        m.tokens[i].completion += (unsigned long long)completion;
    }
    pthread_mutex_unlock(&m.mu);
}

static void observe(histogram *h, const double *bounds, size_t n, double v) {
    size_t i = 0;
    while (i < n && v > bounds[i]) i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

void srv_metrics_ttft(double s) {
    pthread_mutex_lock(&m.mu);
    observe(&m.ttft, ttft_bounds, N_TTFT, s);
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_token_latency(double s) {
    pthread_mutex_lock(&m.mu);
    observe(&m.token, token_bounds, N_TOKEN, s);
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_inter_token(double s) {
    pthread_mutex_lock(&m.mu);
    observe(&m.itl, itl_bounds, N_ITL, s);
    pthread_mutex_unlock(&m.mu);
}

/* A label value with \, " and newline escaped as the format asks. */
static void put_label(srv_buf *b, const char *v) {
    for (; *v; v++) {
        if (*v == '\\')
            srv_buf_puts(b, "\\\\");
        else if (*v == '"')
            srv_buf_puts(b, "\\\"");
        else if (*v == '\n')
            srv_buf_puts(b, "\\n");
        else
            srv_buf_append(b, v, 1);
    }
}

static void put_histogram(srv_buf *b, const char *name, const char *help, const histogram *h, const double *bounds,
                          size_t n) {
    srv_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += h->buckets[i];
        srv_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], cum);
    }
    srv_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, h->count, name, h->sum, name,
                   h->count);
}

char *srv_metrics_render(const srv_engine_stats *e) {
    srv_buf b = {0};
    pthread_mutex_lock(&m.mu);
    srv_buf_puts(&b, "# HELP baichuan_requests_total HTTP requests answered, by tenant, endpoint and status.\n"
                     "# TYPE baichuan_requests_total counter\n");
    for (int i = 0; i < m.n_requests; i++) {
        srv_buf_puts(&b, "baichuan_requests_total{tenant=\"");
        put_label(&b, m.requests[i].tenant);
        srv_buf_puts(&b, "\",endpoint=\"");
        put_label(&b, m.requests[i].endpoint);
        srv_buf_printf(&b, "\",status=\"%d\"} %llu\n", m.requests[i].status, m.requests[i].count);
    }
    srv_buf_puts(&b, "# HELP baichuan_prompt_tokens_total Prompt tokens of finished generation requests.\n"
                     "# TYPE baichuan_prompt_tokens_total counter\n");
    for (int i = 0; i < m.n_tokens; i++) {
        srv_buf_puts(&b, "baichuan_prompt_tokens_total{tenant=\"");
        put_label(&b, m.tokens[i].tenant);
        srv_buf_printf(&b, "\"} %llu\n", m.tokens[i].prompt);
    }
    srv_buf_puts(&b, "# HELP baichuan_completion_tokens_total Generated tokens of finished generation requests.\n"
                     "# TYPE baichuan_completion_tokens_total counter\n");
    for (int i = 0; i < m.n_tokens; i++) {
        srv_buf_puts(&b, "baichuan_completion_tokens_total{tenant=\"");
        put_label(&b, m.tokens[i].tenant);
        srv_buf_printf(&b, "\"} %llu\n", m.tokens[i].completion);
    }
    srv_buf_printf(&b,
                   "# HELP baichuan_queue_depth Choices of generation requests (n per request) waiting for a slot.\n"
                   "# TYPE baichuan_queue_depth gauge\nbaichuan_queue_depth %d\n"
                   "# HELP baichuan_active_slots Slots running a request.\n"
                   "# TYPE baichuan_active_slots gauge\nbaichuan_active_slots %d\n"
                   "# HELP baichuan_slots Slots (--parallel).\n"
                   "# TYPE baichuan_slots gauge\nbaichuan_slots %d\n",
                   e->queued, e->active, e->n_slots);
    srv_buf_printf(
        &b,
        "# HELP baichuan_kv_blocks Blocks of the KV pool (%d positions each).\n"
        "# TYPE baichuan_kv_blocks gauge\nbaichuan_kv_blocks %d\n"
        "# HELP baichuan_kv_blocks_free Blocks a request can take now (unused, or cached and unused).\n"
        "# TYPE baichuan_kv_blocks_free gauge\nbaichuan_kv_blocks_free %d\n"
        "# HELP baichuan_kv_blocks_cached Unused blocks the prefix cache keeps (evicted on demand).\n"
        "# TYPE baichuan_kv_blocks_cached gauge\nbaichuan_kv_blocks_cached %d\n"
        "# HELP baichuan_kv_blocks_shared Blocks used by more than one request.\n"
        "# TYPE baichuan_kv_blocks_shared gauge\nbaichuan_kv_blocks_shared %d\n"
        "# HELP baichuan_kv_blocks_evicted_total Cached blocks evicted to make room.\n"
        "# TYPE baichuan_kv_blocks_evicted_total counter\nbaichuan_kv_blocks_evicted_total %lld\n"
        "# HELP baichuan_prefix_cache_hit_tokens_total Prompt tokens found in the prefix cache.\n"
        "# TYPE baichuan_prefix_cache_hit_tokens_total counter\nbaichuan_prefix_cache_hit_tokens_total "
        "%lld\n"
        "# HELP baichuan_prefix_cache_miss_tokens_total Prompt tokens computed.\n"
        "# TYPE baichuan_prefix_cache_miss_tokens_total counter\nbaichuan_prefix_cache_miss_tokens_total "
        "%lld\n"
        "# HELP baichuan_preemptions_total Choices of requests preempted (recomputed later) to free KV blocks.\n"
        "# TYPE baichuan_preemptions_total counter\nbaichuan_preemptions_total %lld\n"
        "# HELP baichuan_forked_prompt_tokens_total Prompt positions a choice (n > 1) shared with a "
        "sibling's instead of computing them.\n"
        "# TYPE baichuan_forked_prompt_tokens_total counter\nbaichuan_forked_prompt_tokens_total %lld\n",
        e->kv.block_size, e->kv.n_blocks, e->kv.n_free, e->kv.n_cached, e->kv.n_shared, (long long)e->kv.n_evicted,
        e->prefix_hit_tokens, e->prefix_miss_tokens, e->preemptions, e->forked_tokens);
    long long compiled, hits;
    srv_grammar_cache_counts(&compiled, &hits);
    srv_buf_printf(&b,
                   "# HELP baichuan_grammar_compilations_total Grammars (GBNF, JSON Schema) compiled for requests.\n"
                   "# TYPE baichuan_grammar_compilations_total counter\nbaichuan_grammar_compilations_total %lld\n"
                   "# HELP baichuan_grammar_cache_hits_total Requests whose grammar was found compiled in the cache.\n"
                   "# TYPE baichuan_grammar_cache_hits_total counter\nbaichuan_grammar_cache_hits_total %lld\n",
                   compiled, hits);
    put_histogram(&b, "baichuan_time_to_first_token_seconds",
                  "Seconds from a request's arrival to its first token sent.", &m.ttft, ttft_bounds, N_TTFT);
    put_histogram(&b, "baichuan_inter_token_latency_seconds",
                  "Seconds between consecutive tokens sent of one stream (a choice).", &m.itl, itl_bounds, N_ITL);
    put_histogram(&b, "baichuan_time_per_output_token_seconds",
                  "Seconds between consecutive generation steps of a choice (the eos step included; "
                  "baichuan_inter_token_latency_seconds counts tokens only).",
                  &m.token, token_bounds, N_TOKEN);
    pthread_mutex_unlock(&m.mu);
    return b.data;
}

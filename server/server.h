/*
 * server.h - the pieces of `baichuan serve`, `baichuan usage` and `baichuan
 * tenants`, shared by the files in server/. The server uses the engine only
 * through baichuan.h, and its ledger and tenants only through the storage
 * interfaces of store.h.
 *
 * Threads:
 *   - the HTTP thread (libmicrohttpd, poll, internal): parses requests,
 *     answers the cheap endpoints itself, hands generation requests to the
 *     scheduler and streams their output from per-request buffers;
 *   - the engine thread (scheduler.c): owns the context, runs one batched
 *     forward pass per step over every active slot, writes output into the
 *     requests' buffers and never touches a socket except to peek whether a
 *     waiting client is still there;
 *   - the ledger thread (ledger.c): commits one row per finished request,
 *     several per transaction, and only then releases the response's last
 *     bytes, so a client that saw a request complete finds its row;
 *   - with a PostgreSQL tenant store, its quota thread (tenants_pg.c):
 *     charges finished requests' tokens, off the engine thread. Each thread
 *     that talks to PostgreSQL has a connection of its own.
 *   - the main thread waits for SIGTERM/SIGINT and runs the shutdown.
 *
 * Lock order: scheduler lock -> request lock; metrics, tenants and ledger
 * locks are leaves (nothing is taken while holding them).
 */
#ifndef BC_SERVER_H
#define BC_SERVER_H

#include "baichuan.h"
#include "store.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Connection;

/* ------------------------------------------------------------------------ */
/* Small utilities (util.c)                                                 */
/* ------------------------------------------------------------------------ */

/* A growable byte buffer, always NUL-terminated when data != NULL. */
typedef struct srv_buf {
    char *data;
    size_t len, cap;
} srv_buf;

int srv_buf_append(srv_buf *b, const void *p, size_t n); /* 0, or -1 out of memory */
int srv_buf_puts(srv_buf *b, const char *s);
int srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_buf_free(srv_buf *b);

/* Monotonic seconds, and wall-clock seconds since the epoch. */
double srv_now(void);
double srv_wall(void);
/* t (wall-clock seconds) as ISO 8601 UTC with milliseconds: 2024-05-01T12:00:00.000Z */
void srv_iso_time(double t, char *out, size_t cap);

/* The compact UTF-8 JSON text of v (malloc'd; NULL out of memory). */
char *srv_json_dump(const json_t *v);

/* {"error": {"message", "type", "param", "code"}} (param and code may be NULL). */
json_t *srv_error_json(const char *message, const char *type, const char *param, const char *code);

/* ------------------------------------------------------------------------ */
/* Tenants (tenants.c)                                                      */
/* ------------------------------------------------------------------------ */

typedef struct srv_tenant {
    char *name;
    char (*digests)[65]; /* (n_keys) lowercase hex SHA-256 of each key: keys are not kept */
    size_t n_keys;
    long requests_per_minute; /* 0 = unlimited */
    long long tokens_per_day; /* 0 = unlimited */
    bool admin;
    /* Limiter state of the JSON store, under the tenants' lock. */
    double *recent; /* (requests_per_minute) start times of the latest requests, a ring */
    long n_recent, recent_head;
    long long day;          /* days since the epoch of tokens_today */
    long long tokens_today; /* prompt + completion tokens counted today (UTC) */
} srv_tenant;

/* The tenants of a JSON file, as the server reads it (tenants.c). */
typedef struct srv_tenants {
    srv_tenant *tenants;
    size_t n;
    pthread_mutex_t mu;
} srv_tenants;

/* Reads a tenants file; on failure writes "FILE: field: problem" to err. */
int srv_tenants_load(srv_tenants *t, const char *path, char *err, size_t err_size);
void srv_tenants_free(srv_tenants *t);
/* The digest (64 hex) of a tenants file's key entry: the key itself, or
 * "sha256:" and its digest. 0, or -1 when entry is neither. */
int srv_tenants_key_digest(const char *entry, size_t len, char out[65]);
/* The tenant that owns key (its digest compared in constant time), or NULL. */
srv_tenant *srv_tenants_find(srv_tenants *t, const char *key);
/* Admits one request of tenant now: 0, or the seconds to wait (> 0) and the
 * limit that refused it in *which ("requests_per_minute"/"tokens_per_day"). */
long srv_tenants_admit(srv_tenants *t, srv_tenant *tenant, const char **which);
/* Counts tokens against tenant's daily quota. */
void srv_tenants_charge(srv_tenants *t, srv_tenant *tenant, long long tokens);

/* ------------------------------------------------------------------------ */
/* Metrics (metrics.c)                                                      */
/* ------------------------------------------------------------------------ */

void srv_metrics_init(void);
void srv_metrics_free(void);
/* One finished HTTP request with its status, of tenant (NULL: none). */
void srv_metrics_request(const char *tenant, const char *endpoint, int status);
void srv_metrics_tokens(const char *tenant, long prompt, long completion);
void srv_metrics_ttft(double seconds);
void srv_metrics_token_latency(double seconds);
/* The Prometheus text exposition (malloc'd), with the engine's gauges. */
struct srv_engine_stats;
char *srv_metrics_render(const struct srv_engine_stats *engine);

/* ------------------------------------------------------------------------ */
/* Generation requests (openai.c builds them, scheduler.c runs them)        */
/* ------------------------------------------------------------------------ */

typedef enum srv_endpoint {
    SRV_ENDPOINT_COMPLETIONS = 0, /* POST /v1/completions */
    SRV_ENDPOINT_CHAT = 1,        /* POST /v1/chat/completions */
} srv_endpoint;

const char *srv_endpoint_path(srv_endpoint e);

#define SRV_MAX_N 8 /* most choices per request (the request's "n") */

typedef struct srv_request srv_request;
typedef struct srv_grammar srv_grammar;

/* One of the request's n continuations of its prompt: its own sequence
 * (slot), sampler, detokenizer, stop matcher, output and finish reason. */
typedef struct srv_choice {
    srv_request *req;
    int index; /* the "index" of the choice in the response */
    /* (n_prompt + max_tokens + 1) the prompt's ids, then the generated ids:
     * ids[0 .. n_prompt + n_generated) is what the choice's sequence holds
     * (or must hold again after a preemption). */
    int32_t *ids;
    bc_sampler *sampler;         /* seeded with the request's seed + index */
    bc_grammar_matcher *matcher; /* NULL without a grammar; the sampler advances it */
    bc_stop_matcher *stop;
    bc_detokenizer *detok;

    /* Engine thread only. */
    int n_generated;
    bool admitted;             /* has been admitted once (a preempted choice is admitted again) */
    size_t text_offset;        /* bytes of text emitted (logprobs text_offset) */
    const char *finish_reason; /* "stop", "length", "cancelled", "error"; NULL while running */
    bool role_sent;            /* chat stream: the first delta (role) went out */
    bool finish_sent;          /* stream: the chunk with the finish_reason went out */
    double t_last_token;
    srv_buf text;       /* non-streaming: the reply text so far */
    json_t *lp_content; /* non-streaming logprobs: chat content[] or completions arrays */
} srv_choice;

struct srv_request {
    /* Set by the HTTP thread before the request is submitted; read-only after. */
    srv_endpoint endpoint;
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    int32_t *prompt;    /* (n_prompt) the input ids */
    int n_prompt;
    int max_tokens;       /* most tokens to generate, per choice */
    int logprobs;         /* -1 off; else how many top alternatives (0..20) */
    int n_choices;        /* the request's "n", 1..SRV_MAX_N */
    srv_choice *choices;  /* (n_choices) */
    srv_grammar *grammar; /* the compiled constraint (a reference), or NULL */
    char id[64];          /* "chatcmpl-..." / "cmpl-..." */
    long long created;    /* unix seconds */
    const char *model;    /* the served model's name (lives as long as the server) */
    srv_tenant *tenant;   /* NULL without a tenants file */
    double t_arrival;     /* srv_now() when the request arrived */
    const bc_tokenizer *tok;

    /* Engine thread only, while the request is active. */
    int n_generated;           /* summed over the choices: usage, quotas, the ledger */
    int n_ended;               /* choices that have finished */
    int n_cached_prompt;       /* prompt ids found in the prefix cache at the first admission */
    bool admitted;             /* one of its choices has been admitted */
    uint64_t order;            /* arrival order: preemption takes the newest */
    const char *finish_reason; /* the ledger's: choice 0's, or "cancelled" / "error" */
    bool ttft_seen;            /* the first token of any choice was timed */
    int http_status;           /* the status the ledger records (set to 503, under mu, by a ledger that failed) */

    /* Shared between the HTTP thread and the engine/ledger threads, under mu. */
    pthread_mutex_t mu;
    srv_buf out;     /* bytes for the client: SSE events, or the whole JSON body */
    size_t out_sent; /* bytes of out already handed to libmicrohttpd */
    bool suspended;  /* the connection is suspended waiting for out */
    bool done;       /* out is complete */
    struct MHD_Connection *conn;
    int fd; /* the client's socket, to peek for a disconnect while suspended */

    atomic_bool cancelled; /* the client is gone: stop generating */
    atomic_int refs;       /* the HTTP connection, the scheduler/ledger */
};

void srv_request_unref(srv_request *r);

/* Counts a finished generation request in the metrics and its tenant's
 * quota (http.c, which knows the tenants). */
void srv_account(const srv_request *r, int status);

/* Appends bytes for the client and wakes the connection. final marks out
 * complete. */
void srv_request_publish(srv_request *r, const char *p, size_t n, bool final);

/* Peeks at the request's socket if its connection is suspended; when the
 * client has gone, marks it cancelled, resumes the connection (so
 * libmicrohttpd closes it) and returns true. */
bool srv_request_check_gone(srv_request *r);

/* ------------------------------------------------------------------------ */
/* The served model and its settings                                        */
/* ------------------------------------------------------------------------ */

typedef struct srv_config {
    const char *host;
    int port;
    int n_parallel;      /* slots: sequences decoded together */
    int n_ctx;           /* positions of the KV pool shared by all slots (0: from kv_memory or the default) */
    long long kv_memory; /* bytes for the KV pool (--kv-memory; 0: not given) */
    bool no_prefix_cache;
    int n_batch;       /* most entries in one forward pass */
    int n_threads;     /* engine threads; 0 = all cores */
    int max_queue;     /* requests waiting for a slot before 503 */
    size_t max_body;   /* bytes */
    int max_messages;  /* per chat request */
    int shutdown_wait; /* seconds SIGTERM waits for running requests */
    const char *tenants_path;
    const char *ledger_path;
    const char *alias; /* model name reported; default: the model path's basename */
} srv_config;

typedef struct srv_server srv_server;

/* ------------------------------------------------------------------------ */
/* Scheduler (scheduler.c)                                                  */
/* ------------------------------------------------------------------------ */

typedef struct srv_scheduler srv_scheduler;

int srv_scheduler_start(srv_scheduler **out, bc_context *ctx, const bc_model *model, const bc_tokenizer *tok,
                        int max_queue, srv_ledger *ledger, char *err, size_t err_size);
/* Queues a request's choices (takes a reference). -1: the queue is full
 * (max_queue choices waiting). */
int srv_scheduler_submit(srv_scheduler *s, srv_request *r);
/* Choices waiting in the queue, and slots running one. */
void srv_scheduler_counts(srv_scheduler *s, int *queued, int *active);

/* The engine's state for /metrics: a snapshot the engine thread refreshes
 * after every step. */
typedef struct srv_engine_stats {
    int queued, active, n_slots;
    bc_kv_stats kv;
    long long prefix_hit_tokens;  /* prompt tokens found in the prefix cache (first admissions) */
    long long prefix_miss_tokens; /* prompt tokens computed (first admissions) */
    long long preemptions;        /* choices preempted to free KV blocks */
    long long forked_tokens;      /* prompt positions a choice took from a sibling's sequence (n > 1) */
} srv_engine_stats;

void srv_scheduler_stats(srv_scheduler *s, srv_engine_stats *out);
/* Cancels everything still queued or running (forced shutdown). */
void srv_scheduler_cancel_all(srv_scheduler *s);
/* Stops the engine thread once no request is queued or active. */
void srv_scheduler_stop(srv_scheduler *s);

/* ------------------------------------------------------------------------ */
/* Ledger (ledger.c)                                                        */
/* ------------------------------------------------------------------------ */

struct srv_ledger_row {
    double time;            /* wall-clock seconds when the request ended */
    const char *request_id; /* the response's "id" (NULL for requests refused before one was made) */
    const char *tenant;
    const char *endpoint;
    const char *model;
    long prompt_tokens, completion_tokens;
    const char *finish_reason;
    int status;
    double latency; /* seconds from arrival to the end */
};

/* Opens (creating if needed) the ledger at path (a SQLite file or a
 * postgresql:// URL, see store.h) and starts its thread. */
int srv_ledger_open(srv_ledger **out, const char *path, char *err, size_t err_size);
/* Records a row. With r, the ledger publishes tail (final bytes, copied) to r
 * once the row is committed, and drops the reference it takes on r. */
void srv_ledger_submit(srv_ledger *l, const srv_ledger_row *row, srv_request *r, const char *tail, size_t tail_len);
/* Tokens per tenant since the start of today (UTC), to seed the quotas. */
long long srv_ledger_tokens_today(srv_ledger *l, const char *tenant);
/* The back-end's usage() (store.h) over [from, to), on a second connection
 * of the ledger's own (the HTTP thread's; serialized by a lock). */
int srv_ledger_usage(srv_ledger *l, const char *from, const char *to, bool hourly, json_t **out, char *err,
                     size_t err_size);
/* Commits what is queued, stops the thread, closes the database. */
void srv_ledger_close(srv_ledger *l);

/* ------------------------------------------------------------------------ */
/* OpenAI request parsing and response building (openai.c)                  */
/* ------------------------------------------------------------------------ */

typedef struct srv_model_info {
    const char *name;
    const bc_model *model;
    const bc_tokenizer *tok;
    bc_sampler_params defaults; /* generation_config.json */
    bc_chat_params chat;
    int n_vocab; /* ids the sampler may pick */
    int n_ctx;
    int max_messages;
} srv_model_info;

/* An error to send: status, message, type, param, code. */
typedef struct srv_error {
    int status;
    char message[512];
    const char *type;
    const char *param;
    const char *code;
} srv_error;

/* Builds a request from a parsed body. NULL with *e filled on a bad request. */
srv_request *srv_openai_parse(const srv_model_info *mi, srv_endpoint endpoint, json_t *body, srv_error *e);

/* The SSE event or body pieces the engine emits for choice c. */
void srv_openai_emit_text(srv_choice *c, const char *text, size_t len, json_t *lp);
/* The logprobs entry of one generated token (NULL when the request wants none). */
json_t *srv_openai_logprobs(const srv_choice *c, const float *logits, int n_vocab, int32_t id, size_t text_offset);
/* A streamed choice that ended before the request's last: its finish chunk
 * goes out now (no-op without streaming). */
void srv_openai_choice_done(srv_choice *c);
/* The final bytes (the finish chunks not sent yet, usage and [DONE], or the
 * whole body with every choice in index order). */
void srv_openai_finish(srv_request *r, srv_buf *tail);

/* ------------------------------------------------------------------------ */
/* Compiled grammars, cached (grammars.c)                                   */
/* ------------------------------------------------------------------------ */

typedef enum srv_grammar_kind {
    SRV_GRAMMAR_GBNF = 0,        /* text is GBNF */
    SRV_GRAMMAR_JSON_SCHEMA = 1, /* text is a JSON Schema (len 0: any JSON object) */
} srv_grammar_kind;

/* The grammar of (kind, text) for tok, compiled or found in the cache (the
 * 32 most recently used, by their exact text). A new reference: give it
 * back with srv_grammar_release. NULL with the library's message in err
 * when it does not compile. Thread-safe. */
srv_grammar *srv_grammar_get(const bc_tokenizer *tok, srv_grammar_kind kind, const char *text, size_t len, char *err,
                             size_t err_size);
const bc_grammar *srv_grammar_compiled(const srv_grammar *g);
void srv_grammar_release(srv_grammar *g);
/* Empties the cache (at shutdown; grammars still referenced live on). */
void srv_grammar_cache_clear(void);
/* Compilations and cache hits so far (for tests through /metrics). */
void srv_grammar_cache_counts(long long *compiled, long long *hits);

/* ------------------------------------------------------------------------ */
/* HTTP (http.c), the web page (web_page.c, generated)                       */
/* ------------------------------------------------------------------------ */

extern const char srv_web_page[];
extern const size_t srv_web_page_len;
/* The operator's usage page, web/admin.html (embedded the same way). */
extern const char srv_admin_page[];
extern const size_t srv_admin_page_len;

typedef struct srv_http srv_http;

int srv_http_start(srv_http **out, const srv_config *cfg, const srv_model_info *mi, srv_scheduler *sched,
                   srv_tenant_store *tenants, srv_ledger *ledger, char *err, size_t err_size);
/* Stops accepting new connections. */
void srv_http_quiesce(srv_http *h);
/* The port listened on (useful with --port 0). */
int srv_http_port(srv_http *h);
/* Generation requests whose reply has not been sent (or abandoned) yet:
 * what shutdown waits for. Idle keep-alive and slow clients do not count. */
int srv_http_pending(srv_http *h);
void srv_http_stop(srv_http *h);

#endif /* BC_SERVER_H */

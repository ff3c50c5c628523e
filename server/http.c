/*
 * http.c - the HTTP side: libmicrohttpd on its own poll thread, routing,
 * authentication, limits, the cheap endpoints, and the hand-off of
 * generation requests to the scheduler.
 *
 * A streamed request gets its response at once (text/event-stream, chunked)
 * whose reader copies from the request's output buffer and suspends the
 * connection when the buffer is empty; the engine resumes it when it
 * appends. A non-streamed request suspends its connection until the engine
 * (through the ledger) marks its body complete, then the handler runs again
 * and sends it. While a connection is suspended libmicrohttpd does not see a
 * disconnect, so the engine peeks at the socket (srv_request_check_gone).
 *
 * libmicrohttpd's thread only moves bytes and answers what needs nothing
 * but memory (/health, /livez, /readyz, the pages). Whatever may wait on a
 * store or take long (authentication, /admin/usage, parsing a generation
 * request: tokenizing, compiling a grammar, /tokenize, loading a LoRA
 * adapter's files) runs on a worker
 * (workers.c) while the connection is suspended; the worker keeps its reply
 * in the connection's state (send_bytes) and resumes the connection, and the
 * handler, called again, queues it (flush_reply). Only this thread calls
 * libmicrohttpd on a connection, except to resume it. Bounds: the workers'
 * queue (--max-waiting) and wait (--max-wait), the request bodies buffered
 * at once (--max-bodies), the connections (--max-connections): past them a
 * request is answered 503 with Retry-After.
 *
 * Why poll and not epoll: libmicrohttpd 0.9.75's edge-triggered epoll mode
 * loses the end of a client's stream when it arrives with the last request
 * bytes (it stops reading after a short read and waits for an edge that
 * never comes). A client that sends a partial request, or a request and
 * then shutdown(SHUT_WR), then held its connection until the idle timeout.
 * Level-triggered poll sees every end of stream; fuzz_http checks it. The
 * connections are bounded (--max-connections, 1000), so poll's cost per wake
 * is small.
 */
#include "http.h"

#include "admin_page.h"
#include "metrics.h"
#include "request.h"
#include "util.h"
#include "web_page.h"
#include "workers.h"

#include <microhttpd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

struct srv_http {
    struct MHD_Daemon *daemon;
    const srv_http_config *cfg;
    const srv_model_info *mi;
    srv_scheduler *sched;
    srv_tenant_store *tenants; /* NULL: no authentication */
    uint32_t id_salt;          /* random, drawn at start: part of every response id */
    srv_ledger *ledger;        /* may be NULL */
    atomic_int n_pending;      /* generation requests whose connection is still open */

    /* What may wait or take long runs on these, never on libmicrohttpd's thread. */
    srv_workers *workers;
    /* Request bodies buffered now, over every connection (cfg->max_bodies_bytes). */
    atomic_llong body_bytes;
    /* 401s (counted here, not in the ledger), and 503s given because a bound was reached. */
    atomic_llong n_unauthenticated, n_shed;
};

typedef enum route {
    ROUTE_NONE = 0,
    ROUTE_PAGE,
    ROUTE_HEALTH,
    ROUTE_LIVEZ,
    ROUTE_READYZ,
    ROUTE_MODELS,
    ROUTE_METRICS,
    ROUTE_TOKENIZE,
    ROUTE_DETOKENIZE,
    ROUTE_COMPLETIONS,
    ROUTE_CHAT,
    ROUTE_ADMIN_PAGE,
    ROUTE_ADMIN_USAGE,
    ROUTE_LOAD_ADAPTER,
    ROUTE_UNLOAD_ADAPTER,
} route;

static const struct {
    const char *path;
    const char *method;
    route route;
} routes[] = {
    {"/", "GET", ROUTE_PAGE},
    {"/health", "GET", ROUTE_HEALTH},
    {"/livez", "GET", ROUTE_LIVEZ},
    {"/readyz", "GET", ROUTE_READYZ},
    {"/v1/models", "GET", ROUTE_MODELS},
    {"/metrics", "GET", ROUTE_METRICS},
    {"/tokenize", "POST", ROUTE_TOKENIZE},
    {"/detokenize", "POST", ROUTE_DETOKENIZE},
    {"/v1/completions", "POST", ROUTE_COMPLETIONS},
    {"/v1/chat/completions", "POST", ROUTE_CHAT},
    {"/admin", "GET", ROUTE_ADMIN_PAGE},
    {"/admin/usage", "GET", ROUTE_ADMIN_USAGE},
    {"/v1/load_lora_adapter", "POST", ROUTE_LOAD_ADAPTER},
    {"/v1/unload_lora_adapter", "POST", ROUTE_UNLOAD_ADAPTER},
};

/* A reply made by an endpoint, queued by the HTTP thread (flush_reply). */
typedef struct reply {
    bool ready;
    unsigned status;
    const char *type;         /* static */
    srv_buf body;             /* copied when queued */
    const char *extra_header; /* static, or NULL */
    char extra_value[64];
} reply;

/* Where a connection's request is: its body being read; handed to a worker
 * (the connection suspended); the worker done, its reply or generation
 * request waiting for the HTTP thread; a generation request's reply
 * started (streamed, or waiting for the engine). */
typedef enum phase { PHASE_READING = 0, PHASE_WORKING, PHASE_WORKED, PHASE_STARTED } phase;

/* Per-connection request state (libmicrohttpd's con_cls). */
typedef struct conn_state {
    srv_http *h; /* the server it came to */
    route route;
    const char *path; /* the route's path (static) */
    srv_buf body;
    bool too_large;
    size_t discarded; /* body bytes dropped after too_large */
    bool answered;    /* a response was queued on the first call */
    srv_tenant *tenant;
    srv_request *req; /* a generation request handed to the scheduler */
    double t0;
    struct MHD_Connection *conn;
    phase phase;
    reply reply;
    /* Copied from the request on the HTTP thread before a worker runs, so
     * that no worker reads libmicrohttpd's structures. */
    char *key;              /* the Bearer key, or NULL */
    bool key_present;       /* an Authorization header was sent */
    char *query[4];         /* /admin/usage: from, to, bucket, adapter (NULL when absent) */
    int fd;                 /* the client's socket */
    bool metrics_token;     /* /metrics with the --metrics-token: no tenant needed */
    long long body_counted; /* bytes of body added to h->body_bytes */
} conn_state;

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

/* Keeps a reply for the HTTP thread to queue (flush_reply): endpoints run on
 * a worker or on the HTTP thread alike, and only the HTTP thread talks to
 * libmicrohttpd. extra_value is copied. */
static enum MHD_Result send_bytes(conn_state *cs, unsigned status, const char *type, const void *data, size_t len,
                                  const char *extra_header, const char *extra_value) {
    reply *rp = &cs->reply;
    rp->body.len = 0;
    if (srv_buf_append(&rp->body, data, len) != 0) return MHD_NO;
    rp->status = status;
    rp->type = type;
    rp->extra_header = extra_header;
    snprintf(rp->extra_value, sizeof rp->extra_value, "%s", extra_value ? extra_value : "");
    rp->ready = true;
    return MHD_YES;
}

/* Queues the reply kept by send_bytes (the HTTP thread). */
static enum MHD_Result flush_reply(struct MHD_Connection *c, conn_state *cs) {
    reply *rp = &cs->reply;
    if (!rp->ready) return MHD_NO;
    rp->ready = false;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(rp->body.len, rp->body.data ? rp->body.data : "", MHD_RESPMEM_MUST_COPY);
    srv_buf_free(&rp->body);
    if (resp == NULL) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rp->type);
    if (rp->extra_header != NULL) MHD_add_response_header(resp, rp->extra_header, rp->extra_value);
    enum MHD_Result ok = MHD_queue_response(c, rp->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result send_json(conn_state *cs, unsigned status, json_t *v, const char *extra_header,
                                 const char *extra_value) {
    char *s = srv_json_dump(v);
    json_decref(v);
    if (s == NULL) return MHD_NO;
    enum MHD_Result ok = send_bytes(cs, status, "application/json", s, strlen(s), extra_header, extra_value);
    free(s);
    srv_metrics_request(cs->tenant ? cs->tenant->name : NULL, cs->path ? cs->path : "other", (int)status);
    return ok;
}

/* An error in the OpenAI shape. A generation endpoint's also gets a ledger
 * row when it belongs to a tenant (or the server has no tenant store): a
 * request refused before its key was known (401), or shed while a store is
 * down (503), is counted in /metrics only, so clients without a valid key
 * cannot fill the ledger. */
static enum MHD_Result send_error(conn_state *cs, unsigned status, const char *message, const char *type,
                                  const char *param, const char *code, const char *extra_header,
                                  const char *extra_value) {
    srv_http *h = cs->h;
    bool known = cs->tenant != NULL || h->tenants == NULL;
    if (h->ledger != NULL && known && status != 503 && (cs->route == ROUTE_COMPLETIONS || cs->route == ROUTE_CHAT)) {
        srv_ledger_row row = {.time = srv_wall(),
                              .tenant = cs->tenant ? cs->tenant->name : NULL,
                              .endpoint = cs->path,
                              .model = h->mi->name,
                              .status = (int)status,
                              .latency = srv_now() - cs->t0};
        srv_ledger_submit(h->ledger, &row, NULL, NULL, 0);
    }
    if (status == 401) atomic_fetch_add(&h->n_unauthenticated, 1);
    cs->answered = true;
    return send_json(cs, status, srv_error_json(message, type, param, code), extra_header, extra_value);
}

/* ------------------------------------------------------------------------ */
/* Streaming                                                                */
/* ------------------------------------------------------------------------ */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    srv_request *r = cls;
    ssize_t n = 0;
    pthread_mutex_lock(&r->mu);
    if (r->out_sent < r->out.len) {
        size_t avail = r->out.len - r->out_sent;
        n = (ssize_t)(avail < max ? avail : max);
        memcpy(buf, r->out.data + r->out_sent, (size_t)n);
        r->out_sent += (size_t)n;
        if (r->out_sent == r->out.len) r->out.len = r->out_sent = 0; /* all sent: reuse the buffer */
    } else if (atomic_load(&r->cancelled)) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (r->done) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        r->suspended = true;
        MHD_suspend_connection(r->conn);
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void stream_free(void *cls) { srv_request_unref(cls); }

/* ------------------------------------------------------------------------ */
/* Endpoints                                                                */
/* ------------------------------------------------------------------------ */

static json_t *parse_body(conn_state *cs, enum MHD_Result *ret) {
    json_error_t je;
    json_t *body = json_loadb(cs->body.data ? cs->body.data : "", cs->body.len, JSON_REJECT_DUPLICATES, &je);
    if (body == NULL) {
        char msg[300];
        snprintf(msg, sizeof msg, "the request body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                 je.column);
        *ret = send_error(cs, 400, msg, "invalid_request_error", NULL, "invalid_json", NULL, NULL);
    } else if (!json_is_object(body)) {
        json_decref(body);
        body = NULL;
        *ret = send_error(cs, 400, "the request body must be a JSON object", "invalid_request_error", NULL,
                          "invalid_json", NULL, NULL);
    }
    return body;
}

static enum MHD_Result do_tokenize(conn_state *cs) {
    srv_http *h = cs->h;
    enum MHD_Result ret;
    json_t *body = parse_body(cs, &ret);
    if (body == NULL) return ret;
    json_t *content = json_object_get(body, "content");
    if (!json_is_string(content)) {
        json_decref(body);
        return send_error(cs, 400, "'content' is required: the text to tokenize", "invalid_request_error", "content",
                          NULL, NULL, NULL);
    }
    bc_switch special = json_is_true(json_object_get(body, "add_special")) ? BC_SWITCH_AUTO : BC_SWITCH_OFF;
    size_t n = 0;
    const bc_tokenizer *tok = h->mi->tok;
    bc_tokenizer_encode(tok, json_string_value(content), json_string_length(content), special, special, NULL, 0, &n);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    json_t *arr = json_array();
    if (ids != NULL && bc_tokenizer_encode(tok, json_string_value(content), json_string_length(content), special,
                                           special, ids, n, &n) == BC_STATUS_OK)
        for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
    free(ids);
    json_decref(body);
    return send_json(cs, 200, json_pack("{s:o}", "tokens", arr), NULL, NULL);
}

static enum MHD_Result do_detokenize(conn_state *cs) {
    srv_http *h = cs->h;
    enum MHD_Result ret;
    json_t *body = parse_body(cs, &ret);
    if (body == NULL) return ret;
    json_t *tokens = json_object_get(body, "tokens");
    size_t n = json_array_size(tokens);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    bool ok = json_is_array(tokens) && ids != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *v = json_array_get(tokens, i);
        ok = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < h->mi->n_vocab;
        if (ok) ids[i] = (int32_t)json_integer_value(v);
    }
    json_decref(body);
    if (!ok) {
        free(ids);
        return send_error(cs, 400, "'tokens' is required: an array of token ids in the vocabulary",
                          "invalid_request_error", "tokens", NULL, NULL, NULL);
    }
    size_t len = 0;
    bc_tokenizer_decode(h->mi->tok, ids, n, NULL, 0, &len);
    char *text = malloc(len + 1);
    if (text == NULL || bc_tokenizer_decode(h->mi->tok, ids, n, text, len + 1, &len) != BC_STATUS_OK) len = 0;
    json_t *out = json_pack("{s:s%}", "content", text ? text : "", len);
    free(text);
    free(ids);
    return send_json(cs, 200, out, NULL, NULL);
}

/* The base model, then the adapters the tenant may use (each with its
 * parent, the base, and its root, the adapter's path, as vLLM lists them). */
static enum MHD_Result do_models(conn_state *cs) {
    srv_http *h = cs->h;
    const srv_model_info *mi = h->mi;
    json_t *list = json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:i, s:s, s:n}]}", "object", "list", "data", "id", mi->name,
                             "object", "model", "created", (json_int_t)0, "owned_by", "baichuan.c", "context_length",
                             mi->n_ctx, "root", mi->name, "parent");
    srv_adapters_models(mi->adapters, cs->tenant, mi->name, json_object_get(list, "data"));
    return send_json(cs, 200, list, NULL, NULL);
}

static enum MHD_Result do_metrics(conn_state *cs) {
    srv_http *h = cs->h;
    srv_engine_stats st;
    srv_scheduler_stats(h->sched, &st);
    srv_metrics_request(cs->tenant ? cs->tenant->name : NULL, cs->path, 200); /* counted before rendering */
    char *text = srv_metrics_render(&st);
    if (text == NULL) return MHD_NO;
    srv_buf b = {0};
    srv_buf_puts(&b, text);
    free(text);
    srv_buf_printf(&b,
                   "# HELP baichuan_unauthenticated_total Requests refused with 401 (no or an unknown key); not in "
                   "the ledger.\n# TYPE baichuan_unauthenticated_total counter\nbaichuan_unauthenticated_total %lld\n"
                   "# HELP baichuan_shed_total Requests refused with 503 because a bound was reached (workers, "
                   "bodies in flight, the wait for a store).\n# TYPE baichuan_shed_total counter\n"
                   "baichuan_shed_total %lld\n"
                   "# HELP baichuan_workers_waiting Requests waiting for an HTTP worker.\n"
                   "# TYPE baichuan_workers_waiting gauge\nbaichuan_workers_waiting %d\n"
                   "# HELP baichuan_body_bytes Request bodies buffered now.\n# TYPE baichuan_body_bytes gauge\n"
                   "baichuan_body_bytes %lld\n",
                   (long long)atomic_load(&h->n_unauthenticated), (long long)atomic_load(&h->n_shed),
                   srv_workers_waiting(h->workers), (long long)atomic_load(&h->body_bytes));
    if (h->cfg->extra_metrics != NULL) h->cfg->extra_metrics(h->cfg->ready_ctx, &b);
    srv_adapters_metrics(h->mi->adapters, &b);
    enum MHD_Result ok =
        b.data != NULL ? send_bytes(cs, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL, NULL)
                       : MHD_NO;
    srv_buf_free(&b);
    return ok;
}

/* The adapter the body's "model" names, with a reference, in *out: NULL for
 * the base model (its own name, or no "model"). -1 when it names neither
 * the base nor an adapter this tenant may use: the same answer whether the
 * adapter exists or not, so a tenant learns nothing of others' adapters. */
static int select_adapter(conn_state *cs, json_t *body, srv_adapter **out) {
    json_t *model = json_object_get(body, "model");
    *out = NULL;
    if (!json_is_string(model) || strcmp(json_string_value(model), cs->h->mi->name) == 0) return 0;
    *out = srv_adapters_acquire(cs->h->mi->adapters, json_string_value(model), cs->tenant);
    return *out != NULL ? 0 : -1;
}

/* Parses the body (the adapter chosen, the prompt tokenized, the grammar
 * compiled) and hands the request to the scheduler (a worker). */
static enum MHD_Result do_generate(conn_state *cs) {
    srv_http *h = cs->h;
    enum MHD_Result ret;
    json_t *body = parse_body(cs, &ret);
    if (body == NULL) return ret;
    srv_adapter *adapter = NULL;
    if (select_adapter(cs, body, &adapter) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "The model '%.100s' does not exist or you do not have access to it.",
                 json_string_value(json_object_get(body, "model")));
        json_decref(body);
        return send_error(cs, 404, msg, "invalid_request_error", "model", "model_not_found", NULL, NULL);
    }
    srv_error e;
    srv_request *r =
        srv_openai_parse(h->mi, cs->route == ROUTE_CHAT ? SRV_ENDPOINT_CHAT : SRV_ENDPOINT_COMPLETIONS, body, &e);
    json_decref(body);
    if (r == NULL) {
        srv_adapter_release(adapter);
        return send_error(cs, (unsigned)e.status, e.message, e.type, e.param, e.code, NULL, NULL);
    }
    r->adapter = adapter; /* the request's reference now */
    static atomic_ullong counter;
    /* The process's random salt keeps ids of replicas sharing a ledger apart. */
    snprintf(r->id, sizeof r->id, "%s-%llx%08x%06llx", cs->route == ROUTE_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)r->created, (unsigned)h->id_salt,
             (unsigned long long)atomic_fetch_add(&counter, 1) & 0xffffff);
    r->tenant = cs->tenant;
    r->t_arrival = cs->t0;
    r->conn = cs->conn;
    r->fd = cs->fd;
    if (srv_scheduler_submit(h->sched, r) != 0) {
        srv_request_unref(r);
        return send_error(cs, 503, "the server is busy: every slot is in use and the queue is full; retry later",
                          "server_error", NULL, "queue_full", MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    cs->req = r;
    atomic_fetch_add(&h->n_pending, 1);
    return MHD_YES;
}

/* The reply of a request the scheduler has (the HTTP thread): a stream
 * starts at once; a whole body waits, the connection suspended, until the
 * engine (through the ledger) completes it. */
static enum MHD_Result start_generate(struct MHD_Connection *c, conn_state *cs) {
    srv_request *r = cs->req;
    cs->phase = PHASE_STARTED;
    if (r->stream) {
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, r, stream_free);
        if (resp == NULL) {
            atomic_store(&r->cancelled, true);
            return MHD_NO;
        }
        srv_request_ref(r); /* the response's */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    pthread_mutex_lock(&r->mu);
    if (!r->done) {
        r->suspended = true;
        MHD_suspend_connection(c);
    }
    pthread_mutex_unlock(&r->mu);
    return MHD_YES;
}

/* ------------------------------------------------------------------------ */
/* LoRA adapters loaded and unloaded while serving (admin only)             */
/* ------------------------------------------------------------------------ */

/* A string field of an adapter request's body, or NULL. */
static const char *adapter_field(json_t *body, const char *key) {
    json_t *v = json_object_get(body, key);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* POST /v1/load_lora_adapter {"lora_name", "lora_path"} (vLLM's shape). On
 * a worker, like every request that may take long: reading an adapter's
 * files (megabytes to gigabytes) while the connection is suspended. */
static enum MHD_Result do_load_adapter(conn_state *cs) {
    srv_http *h = cs->h;
    enum MHD_Result ret;
    json_t *body = parse_body(cs, &ret);
    if (body == NULL) return ret;
    const char *name = adapter_field(body, "lora_name"), *path = adapter_field(body, "lora_path");
    if (name == NULL || path == NULL) {
        json_decref(body);
        return send_error(cs, 400, "'lora_name' and 'lora_path' are required: the adapter's name and its directory",
                          "invalid_request_error", name == NULL ? "lora_name" : "lora_path", NULL, NULL, NULL);
    }
    char why[512];
    srv_adapter_status st = srv_adapters_load(h->mi->adapters, name, path, h->mi->name, why, sizeof why);
    switch (st) {
    case SRV_ADAPTER_OK: break;
    case SRV_ADAPTER_TAKEN:
        json_decref(body);
        return send_error(cs, 409, why, "invalid_request_error", "lora_name", "adapter_exists", NULL, NULL);
    case SRV_ADAPTER_BAD_NAME:
        json_decref(body);
        return send_error(cs, 400, why, "invalid_request_error", "lora_name", NULL, NULL, NULL);
    case SRV_ADAPTER_FAILED:
        json_decref(body);
        return send_error(cs, 400, why, "invalid_request_error", "lora_path", "invalid_adapter", NULL, NULL);
    }
    fprintf(stderr, "baichuan serve: adapter %s loaded from %s (by tenant %s)\n", name, path,
            cs->tenant ? cs->tenant->name : "-");
    char msg[200];
    snprintf(msg, sizeof msg, "Success: LoRA adapter '%.100s' added successfully.", name);
    json_t *out = json_pack("{s:s, s:s, s:s}", "object", "lora_adapter", "id", name, "message", msg);
    json_decref(body);
    return send_json(cs, 200, out, NULL, NULL);
}

/* POST /v1/unload_lora_adapter {"lora_name"}: new requests for it are 404 at
 * once; the ones running finish, and the last frees it. */
static enum MHD_Result do_unload_adapter(conn_state *cs) {
    srv_http *h = cs->h;
    enum MHD_Result ret;
    json_t *body = parse_body(cs, &ret);
    if (body == NULL) return ret;
    const char *name = adapter_field(body, "lora_name");
    char msg[200];
    int running = 0;
    if (name == NULL) {
        json_decref(body);
        return send_error(cs, 400, "'lora_name' is required: the adapter's name", "invalid_request_error", "lora_name",
                          NULL, NULL, NULL);
    }
    if (!srv_adapters_unload(h->mi->adapters, name, &running)) {
        snprintf(msg, sizeof msg, "The LoRA adapter '%.100s' cannot be found.", name);
        json_decref(body);
        return send_error(cs, 404, msg, "invalid_request_error", "lora_name", "model_not_found", NULL, NULL);
    }
    fprintf(stderr, "baichuan serve: adapter %s unloaded (%d requests still running under it)\n", name, running);
    snprintf(msg, sizeof msg, "Success: LoRA adapter '%.100s' removed successfully.", name);
    json_t *out = json_pack("{s:s, s:s, s:s, s:i}", "object", "lora_adapter", "id", name, "message", msg,
                            "running_requests", running);
    json_decref(body);
    return send_json(cs, 200, out, NULL, NULL);
}

/* ------------------------------------------------------------------------ */
/* The operator's usage report (/admin/usage)                               */
/* ------------------------------------------------------------------------ */

#define ADMIN_MAX_DAYS  366 /* the longest range with bucket=day */
#define ADMIN_MAX_HOURS 31  /* ... in days, with bucket=hour (744 buckets) */

/* A strict YYYY-MM-DD that names a real day: its 00:00 UTC in *t. */
static bool parse_day(const char *s, time_t *t) {
    int y, m, d, n = 0;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return false;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    *t = timegm(&tm);
    struct tm back;
    gmtime_r(t, &back); /* 2026-02-30 normalizes to March: refused */
    return y >= 1970 && back.tm_year == y - 1900 && back.tm_mon == m - 1 && back.tm_mday == d;
}

static void format_time(time_t t, const char *fmt, char *out, size_t cap) {
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, fmt, &tm);
}

/* The sums of one usage row into totals (an object of integers). */
static void add_counts(json_t *totals, const json_t *row) {
    static const char *const fields[] = {"requests", "succeeded", "prompt_tokens", "completion_tokens"};
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
        json_t *v = json_object_get(totals, fields[k]);
        json_int_t sum = json_integer_value(v) + json_integer_value(json_object_get(row, fields[k]));
        json_object_set_new(totals, fields[k], json_integer(sum));
    }
}

static json_t *zero_counts(void) {
    return json_pack("{s:I, s:I, s:I, s:I}", "requests", (json_int_t)0, "succeeded", (json_int_t)0, "prompt_tokens",
                     (json_int_t)0, "completion_tokens", (json_int_t)0);
}

/* The sums of one usage row into the entry of its adapter ("" the base
 * model) in a tenant's adapters array. */
static void add_adapter_counts(json_t *adapters, const char *adapter, const json_t *row) {
    size_t i;
    json_t *e;
    json_array_foreach(adapters, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "adapter")), adapter) == 0) {
            add_counts(json_object_get(e, "totals"), row);
            return;
        }
    }
    e = json_pack("{s:s, s:o}", "adapter", adapter, "totals", zero_counts());
    add_counts(json_object_get(e, "totals"), row);
    json_array_append_new(adapters, e);
}

/* GET /admin/usage?from=YYYY-MM-DD&to=YYYY-MM-DD&bucket=day|hour[&adapter=NAME]:
 * the ledger's requests and tokens per tenant and bucket, days inclusive
 * (UTC), of every request or only those under adapter NAME ("" the base
 * model's). {from, to, bucket, buckets: [every bucket of the range],
 * tenants: [{tenant, totals, buckets: [{bucket, requests, ...} non-empty
 * only], adapters: [{adapter ("" the base model), totals}]}], totals}. */
static enum MHD_Result do_admin_usage(conn_state *cs) {
    srv_http *h = cs->h;
    if (h->ledger == NULL)
        return send_error(cs, 404, "This server keeps no ledger (start it with --ledger STORE).",
                          "invalid_request_error", NULL, "no_ledger", NULL, NULL);
    const char *from_s = cs->query[0], *to_s = cs->query[1], *bucket = cs->query[2];
    /* adapter=NAME: only requests under that adapter; adapter= (empty): the base model's */
    const char *adapter_filter = cs->query[3];
    time_t from, to, today = (time_t)(srv_wall() / 86400.0) * 86400;
    if (bucket == NULL) bucket = "day";
    bool hourly = strcmp(bucket, "hour") == 0;
    if (!hourly && strcmp(bucket, "day") != 0)
        return send_error(cs, 400, "'bucket' must be 'day' or 'hour'", "invalid_request_error", "bucket",
                          "invalid_parameter", NULL, NULL);
    if (to_s != NULL && !parse_day(to_s, &to))
        return send_error(cs, 400, "'to' must be a date, YYYY-MM-DD (UTC, inclusive)", "invalid_request_error", "to",
                          "invalid_parameter", NULL, NULL);
    if (to_s == NULL) to = today;
    if (from_s != NULL && !parse_day(from_s, &from))
        return send_error(cs, 400, "'from' must be a date, YYYY-MM-DD (UTC, inclusive)", "invalid_request_error",
                          "from", "invalid_parameter", NULL, NULL);
    if (from_s == NULL) from = to - 6 * 86400; /* the last 7 days */
    if (from > to)
        return send_error(cs, 400, "'from' must not be after 'to'", "invalid_request_error", "from",
                          "invalid_parameter", NULL, NULL);
    long days = (long)((to - from) / 86400) + 1, max_days = hourly ? ADMIN_MAX_HOURS : ADMIN_MAX_DAYS;
    if (days > max_days) {
        char msg[160];
        snprintf(msg, sizeof msg, "the range from 'from' to 'to' spans %ld days; at most %ld with bucket=%s", days,
                 max_days, bucket);
        return send_error(cs, 400, msg, "invalid_request_error", "from", "invalid_parameter", NULL, NULL);
    }
    char lo[32], hi[32], from_day[16], to_day[16];
    format_time(from, "%Y-%m-%dT%H:%M:%S", lo, sizeof lo);
    format_time(to + 86400, "%Y-%m-%dT%H:%M:%S", hi, sizeof hi);
    format_time(from, "%Y-%m-%d", from_day, sizeof from_day);
    format_time(to, "%Y-%m-%d", to_day, sizeof to_day);
    json_t *rows = NULL;
    char err[512] = "";
    if (srv_ledger_usage(h->ledger, lo, hi, hourly, &rows, err, sizeof err) != 0) {
        fprintf(stderr, "baichuan serve: ledger: /admin/usage: %s\n", err); /* err masks the password */
        return send_error(cs, 503, "The ledger is unavailable; retry shortly.", "server_error", NULL,
                          "ledger_unavailable", MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    json_t *buckets = json_array(), *tenants = json_array(), *totals = zero_counts(), *current = NULL;
    for (time_t t = from; t < to + 86400; t += hourly ? 3600 : 86400) {
        char b[24];
        format_time(t, hourly ? "%Y-%m-%dT%H:00" : "%Y-%m-%d", b, sizeof b);
        json_array_append_new(buckets, json_string(b));
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) { /* ordered by tenant, bucket, adapter: one entry per run */
        const char *name = json_string_value(json_object_get(row, "tenant"));
        const char *adapter = json_string_value(json_object_get(row, "adapter"));
        if (adapter_filter != NULL && strcmp(adapter_filter, adapter ? adapter : "") != 0) continue;
        if (current == NULL || strcmp(json_string_value(json_object_get(current, "tenant")), name) != 0) {
            current =
                json_pack("{s:s, s:o, s:[], s:[]}", "tenant", name, "totals", zero_counts(), "buckets", "adapters");
            json_array_append_new(tenants, current);
        }
        add_counts(json_object_get(current, "totals"), row);
        add_counts(totals, row);
        add_adapter_counts(json_object_get(current, "adapters"), adapter ? adapter : "", row);
        json_t *buckets_of = json_object_get(current, "buckets");
        json_t *last = json_array_get(buckets_of, json_array_size(buckets_of) - 1);
        if (last != NULL && json_equal(json_object_get(last, "bucket"), json_object_get(row, "bucket"))) {
            add_counts(last, row); /* the same bucket under another adapter */
            continue;
        }
        json_t *entry = json_deep_copy(row);
        json_object_del(entry, "tenant");
        json_object_del(entry, "adapter");
        json_array_append_new(buckets_of, entry);
    }
    json_decref(rows);
    return send_json(cs, 200,
                     json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "from", from_day, "to", to_day, "bucket",
                               hourly ? "hour" : "day", "buckets", buckets, "tenants", tenants, "totals", totals),
                     NULL, NULL);
}

/* The non-streamed reply once the engine has finished (or the client left). */
static enum MHD_Result finish_generate(struct MHD_Connection *c, conn_state *cs) {
    srv_request *r = cs->req;
    pthread_mutex_lock(&r->mu);
    bool ready = r->done && !atomic_load(&r->cancelled);
    pthread_mutex_unlock(&r->mu);
    if (!ready) return MHD_NO; /* the client is gone: close */
    /* out is complete and no longer written: no lock needed to read it. */
    if (send_bytes(cs, (unsigned)r->http_status, "application/json", r->out.data ? r->out.data : "", r->out.len, NULL,
                   NULL) != MHD_YES)
        return MHD_NO;
    return flush_reply(c, cs);
}

/* ------------------------------------------------------------------------ */
/* The access handler                                                       */
/* ------------------------------------------------------------------------ */

/* The Bearer key of the request, or NULL. */
static const char *bearer_key(struct MHD_Connection *c, bool *present) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    *present = h != NULL;
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
    h += 7;
    while (*h == ' ') h++;
    return h;
}

/* The key's tenant through the tenant store, admitting a generation request
 * against its limits; an error reply otherwise. A worker's: the store may
 * take up to its bound (pg.h) to answer. */
static enum MHD_Result authenticate(conn_state *cs, bool *ok) {
    srv_http *h = cs->h;
    bool admit = cs->route == ROUTE_COMPLETIONS || cs->route == ROUTE_CHAT;
    const char *which = NULL;
    long wait = 0;
    char err[512] = "";
    srv_auth_status st = SRV_AUTH_UNKNOWN_KEY;
    *ok = false;
    if (cs->key != NULL)
        st = h->tenants->ops->authenticate(h->tenants, cs->key, admit, &cs->tenant, &which, &wait, err, sizeof err);
    if (st == SRV_AUTH_OK) {
        *ok = true;
        return MHD_YES;
    }
    if (st == SRV_AUTH_UNAVAILABLE) {
        static _Atomic double last_logged; /* one line a second at most while the store is down */
        double now = srv_now(), last = atomic_load(&last_logged);
        if (now - last >= 1.0 && atomic_compare_exchange_strong(&last_logged, &last, now))
            fprintf(stderr, "baichuan serve: tenants: %s\n", err); /* err masks the password */
        cs->tenant = NULL;
        return send_error(cs, 503, "The tenant store is unavailable; retry shortly.", "server_error", NULL,
                          "store_unavailable", MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    if (st == SRV_AUTH_LIMITED) {
        char msg[200], after[32];
        snprintf(msg, sizeof msg, "Rate limit reached for tenant '%s' on %s; retry after %ld s.", cs->tenant->name,
                 which, wait);
        snprintf(after, sizeof after, "%ld", wait);
        return send_error(cs, 429, msg, "rate_limit_error", NULL, "rate_limit_exceeded", MHD_HTTP_HEADER_RETRY_AFTER,
                          after);
    }
    cs->tenant = NULL;
    return send_error(cs, 401,
                      cs->key_present ? "Incorrect API key provided."
                                      : "You didn't provide an API key: send 'Authorization: Bearer KEY'.",
                      "invalid_request_error", NULL, "invalid_api_key", MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
}

/* A 503 for a request refused because a bound was reached. */
static enum MHD_Result shed(conn_state *cs, const char *message, const char *code) {
    atomic_fetch_add(&cs->h->n_shed, 1);
    return send_error(cs, 503, message, "server_error", NULL, code, MHD_HTTP_HEADER_RETRY_AFTER, "1");
}

static enum MHD_Result first_call(struct MHD_Connection *c, conn_state *cs, const char *url, const char *method) {
    srv_http *h = cs->h;
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].path) != 0) continue;
        path_known = true;
        cs->path = routes[i].path;
        if (strcmp(method, routes[i].method) == 0 || (strcmp(method, "HEAD") == 0 && routes[i].method[0] == 'G'))
            cs->route = routes[i].route;
        else {
            char msg[160];
            snprintf(msg, sizeof msg, "%s is not allowed on %s (use %s)", method, routes[i].path, routes[i].method);
            return send_error(cs, 405, msg, "invalid_request_error", NULL, "method_not_allowed", MHD_HTTP_HEADER_ALLOW,
                              routes[i].method);
        }
    }
    if (!path_known) {
        char msg[300];
        snprintf(msg, sizeof msg, "Unknown request URL: %s %.200s", method, url);
        return send_error(cs, 404, msg, "invalid_request_error", NULL, "unknown_url", NULL, NULL);
    }
    /* The admin endpoints exist only with a tenant store: without one there
     * is no key, so no admin, and nothing to show to anyone. */
    bool admin_route = cs->route == ROUTE_ADMIN_PAGE || cs->route == ROUTE_ADMIN_USAGE ||
                       cs->route == ROUTE_LOAD_ADAPTER || cs->route == ROUTE_UNLOAD_ADAPTER;
    if (admin_route && h->tenants == NULL)
        return send_error(cs, 404,
                          "The admin endpoints need a tenant store (start the server with --tenants STORE) and the "
                          "key of a tenant marked admin.",
                          "invalid_request_error", NULL, "unknown_url", NULL, NULL);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long declared = cl != NULL ? strtoull(cl, NULL, 10) : 0;
    if (declared > h->cfg->max_body) {
        cs->too_large = true;
    } else if (declared > 0) {
        /* The bodies buffered at once are bounded: a body that would take
         * the total past it is refused before it is read. */
        cs->body_counted = (long long)declared;
        if (atomic_fetch_add(&h->body_bytes, cs->body_counted) + cs->body_counted > h->cfg->max_bodies_bytes)
            return shed(cs, "the server is receiving too many request bodies at once; retry shortly", "overloaded");
    }
    return MHD_YES;
}

static enum MHD_Result too_large(conn_state *cs) {
    srv_http *h = cs->h;
    char msg[160];
    snprintf(msg, sizeof msg, "the request body is larger than %zu bytes (--max-body)", h->cfg->max_body);
    return send_error(cs, 413, msg, "invalid_request_error", NULL, "request_too_large", NULL, NULL);
}

/* Whether a bearer key is the --metrics-token (compared in constant time). */
static bool is_metrics_token(const srv_http *h, const char *key) {
    const char *t = h->cfg->metrics_token;
    if (t == NULL || key == NULL || strlen(t) != strlen(key)) return false;
    unsigned char diff = 0;
    for (size_t i = 0; t[i] != '\0'; i++) diff |= (unsigned char)(t[i] ^ key[i]);
    return diff == 0;
}

/* /livez: the process answers and its engine thread is not stuck (it has
 * stepped within 30 s whenever it had work). */
static enum MHD_Result do_livez(conn_state *cs) {
    srv_engine_stats st;
    srv_scheduler_stats(cs->h->sched, &st);
    double since = srv_now() - st.last_step;
    bool alive = st.queued + st.active == 0 || since < 30.0;
    return send_json(cs, alive ? 200 : 503,
                     json_pack("{s:s, s:b, s:f}", "status", alive ? "alive" : "engine stuck", "engine", alive,
                               "seconds_since_step", since),
                     NULL, NULL);
}

/* /readyz: the readiness callback's verdict (server.c), never waiting. */
static enum MHD_Result do_readyz(conn_state *cs) {
    srv_http *h = cs->h;
    json_t *body = NULL;
    bool ready = h->cfg->ready != NULL ? h->cfg->ready(h->cfg->ready_ctx, &body) : true;
    if (body == NULL) body = json_pack("{s:s}", "status", ready ? "ready" : "not ready");
    return send_json(cs, ready ? 200 : 503, body, ready ? NULL : MHD_HTTP_HEADER_RETRY_AFTER, ready ? NULL : "1");
}

/* The work of a request that may wait or take long: authentication (a
 * round trip to the tenant store), the endpoint itself (a ledger query,
 * tokenizing, compiling a grammar). On a worker; the connection stays
 * suspended until it is done. */
/* A worker's (or the janitor's) last step: the body's bytes leave the bound
 * on bodies in flight, and the connection is resumed; its handler runs
 * again and queues the reply (flush_reply) or starts the generation's
 * (start_generate). */
static void work_done(conn_state *cs) {
    srv_http *h = cs->h;
    srv_buf_free(&cs->body);
    atomic_fetch_sub(&h->body_bytes, cs->body_counted);
    cs->body_counted = 0;
    cs->phase = PHASE_WORKED;
    MHD_resume_connection(cs->conn);
}

static void work(void *arg) {
    conn_state *cs = arg;
    srv_http *h = cs->h;
    bool ok = true;
    if (h->tenants != NULL && !cs->metrics_token) authenticate(cs, &ok);
    if (!ok) goto done;
    bool admin_api =
        cs->route == ROUTE_ADMIN_USAGE || cs->route == ROUTE_LOAD_ADAPTER || cs->route == ROUTE_UNLOAD_ADAPTER;
    if (admin_api && !cs->tenant->admin) {
        char msg[200];
        snprintf(msg, sizeof msg, "Tenant '%.100s' is not an admin (baichuan tenants add NAME --admin).",
                 cs->tenant->name);
        send_error(cs, 403, msg, "permission_error", NULL, "not_admin", NULL, NULL);
        goto done;
    }
    switch (cs->route) {
    case ROUTE_ADMIN_USAGE: do_admin_usage(cs); break;
    case ROUTE_LOAD_ADAPTER: do_load_adapter(cs); break;
    case ROUTE_UNLOAD_ADAPTER: do_unload_adapter(cs); break;
    case ROUTE_MODELS: do_models(cs); break;
    case ROUTE_METRICS: do_metrics(cs); break;
    case ROUTE_TOKENIZE: do_tokenize(cs); break;
    case ROUTE_DETOKENIZE: do_detokenize(cs); break;
    case ROUTE_COMPLETIONS:
    case ROUTE_CHAT: do_generate(cs); break;
    default: break;
    }
done:
    work_done(cs);
}

/* A request that waited --max-wait for a worker (every worker stuck on a
 * slow store): answered now rather than later (the janitor's). */
static void work_expired(void *arg) {
    conn_state *cs = arg;
    shed(cs, "the server is waiting on its stores; retry shortly", "overloaded");
    work_done(cs);
}

/* Hands the request to a worker, the connection suspended meanwhile; a full
 * pool sheds it at once. */
static enum MHD_Result dispatch(struct MHD_Connection *c, conn_state *cs) {
    srv_http *h = cs->h;
    bool present;
    const char *key = bearer_key(c, &present);
    cs->key_present = present;
    if (key != NULL && (cs->key = strdup(key)) == NULL) return MHD_NO;
    if (cs->route == ROUTE_ADMIN_USAGE) {
        static const char *const names[] = {"from", "to", "bucket", "adapter"};
        for (int i = 0; i < 4; i++) {
            const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, names[i]);
            if (v != NULL && (cs->query[i] = strdup(v)) == NULL) return MHD_NO;
        }
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    cs->fd = ci ? ci->connect_fd : -1;
    cs->conn = c;
    cs->phase = PHASE_WORKING;
    MHD_suspend_connection(c); /* before the job is queued: its resume must come after */
    if (srv_workers_submit(h->workers, work, work_expired, cs) != 0) {
        shed(cs, "the server has too many requests waiting; retry shortly", "overloaded");
        cs->phase = PHASE_WORKED;
        MHD_resume_connection(c);
    }
    return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    (void)version;
    srv_http *h = cls;
    conn_state *cs = *con_cls;
    if (cs == NULL) {
        if ((cs = calloc(1, sizeof *cs)) == NULL) return MHD_NO;
        cs->h = h;
        cs->t0 = srv_now();
        cs->fd = -1;
        *con_cls = cs;
        first_call(c, cs, url, method);
        if (cs->too_large && !cs->answered) too_large(cs);
        return cs->reply.ready ? flush_reply(c, cs) : MHD_YES;
    }
    switch (cs->phase) {
    case PHASE_WORKING: return MHD_YES; /* not called while suspended */
    case PHASE_WORKED:
        if (cs->reply.ready) return flush_reply(c, cs);
        if (cs->req != NULL) return start_generate(c, cs);
        return MHD_NO;
    case PHASE_STARTED: return finish_generate(c, cs);
    case PHASE_READING: break;
    }
    if (cs->answered) { /* an error went out on the first call: drop the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        if (!cs->too_large && cs->body.len + *upload_data_size > h->cfg->max_body) {
            cs->too_large = true;
            srv_buf_free(&cs->body);
        }
        if (cs->too_large) {
            /* A body of unknown length (chunked) past the limit is read to its
             * end to answer 413, but not forever: libmicrohttpd cannot answer
             * before the upload ends, so one that goes on past twice the
             * limit is cut (the connection closes without an answer). */
            cs->discarded += *upload_data_size;
            if (cs->discarded > h->cfg->max_body) return MHD_NO;
        } else {
            /* A body without a Content-Length is counted as it arrives; past
             * the bound the connection is closed. */
            long long more = (long long)(cs->body.len + *upload_data_size) - cs->body_counted;
            if (more > 0) {
                cs->body_counted += more;
                if (atomic_fetch_add(&h->body_bytes, more) + more > h->cfg->max_bodies_bytes) return MHD_NO;
            }
            if (srv_buf_append(&cs->body, upload_data, *upload_data_size) != 0) return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (cs->too_large) {
        too_large(cs);
        return flush_reply(c, cs);
    }
    /* /metrics opens to --metrics-token without the tenant store, so
     * monitoring works while the store is down. */
    if (cs->route == ROUTE_METRICS && h->cfg->metrics_token != NULL) {
        bool present;
        cs->metrics_token = is_metrics_token(h, bearer_key(c, &present));
    }
    bool needs_store = h->tenants != NULL && !cs->metrics_token;
    switch (cs->route) {
    case ROUTE_PAGE:
        srv_metrics_request(NULL, cs->path, 200);
        send_bytes(cs, 200, "text/html; charset=utf-8", srv_web_page, srv_web_page_len, NULL, NULL);
        break;
    case ROUTE_ADMIN_PAGE:
        srv_metrics_request(NULL, cs->path, 200);
        send_bytes(cs, 200, "text/html; charset=utf-8", srv_admin_page, srv_admin_page_len, NULL, NULL);
        break;
    case ROUTE_HEALTH: send_json(cs, 200, json_pack("{s:s}", "status", "ok"), NULL, NULL); break;
    case ROUTE_LIVEZ: do_livez(cs); break;
    case ROUTE_READYZ: do_readyz(cs); break;
    case ROUTE_MODELS:
        if (needs_store) return dispatch(c, cs);
        do_models(cs);
        break;
    case ROUTE_METRICS:
        if (needs_store) return dispatch(c, cs);
        do_metrics(cs);
        break;
    case ROUTE_TOKENIZE:
    case ROUTE_DETOKENIZE:
    case ROUTE_COMPLETIONS:
    case ROUTE_CHAT:
    case ROUTE_ADMIN_USAGE:
    case ROUTE_LOAD_ADAPTER:
    case ROUTE_UNLOAD_ADAPTER: return dispatch(c, cs);
    case ROUTE_NONE: break;
    }
    return cs->reply.ready ? flush_reply(c, cs) : MHD_NO;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    srv_http *h = cls;
    conn_state *cs = *con_cls;
    if (cs == NULL) return;
    if (cs->req != NULL) {
        srv_request *r = cs->req;
        pthread_mutex_lock(&r->mu);
        /* Whatever ended the connection before the whole reply went out
         * (a closed socket, a timeout, a write error) ends the generation. */
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK || !r->done) atomic_store(&r->cancelled, true);
        r->fd = -1;
        pthread_mutex_unlock(&r->mu);
        srv_request_unref(r);
        atomic_fetch_sub(&h->n_pending, 1);
    }
    srv_buf_free(&cs->body);
    srv_buf_free(&cs->reply.body);
    atomic_fetch_sub(&h->body_bytes, cs->body_counted);
    free(cs->key);
    for (int i = 0; i < 4; i++) free(cs->query[i]);
    free(cs);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------------ */
/* Start and stop                                                           */
/* ------------------------------------------------------------------------ */

int srv_http_start(srv_http **out, const srv_http_config *cfg, const srv_model_info *mi, srv_scheduler *sched,
                   srv_tenant_store *tenants, srv_ledger *ledger, char *err, size_t err_size) {
    *out = NULL;
    srv_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    h->cfg = cfg;
    h->mi = mi;
    h->sched = sched;
    h->tenants = tenants;
    if (getrandom(&h->id_salt, sizeof h->id_salt, 0) != (ssize_t)sizeof h->id_salt)
        h->id_salt = (uint32_t)srv_wall() ^ (uint32_t)getpid() << 16;
    h->ledger = ledger;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1) {
        snprintf(err, err_size, "--host: '%s' is not an IPv4 address", cfg->host);
        goto fail;
    }
    if (srv_workers_start(&h->workers, cfg->n_workers, cfg->max_waiting, cfg->max_wait, err, err_size) != 0) goto fail;
    h->daemon = MHD_start_daemon(MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC, 0, NULL, NULL,
                                 handler, h, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_NOTIFY_COMPLETED, completed, h,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                                 MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (h->daemon == NULL) {
        snprintf(err, err_size, "cannot listen on %s:%d (address in use, or not allowed)", cfg->host, cfg->port);
        goto fail;
    }
    *out = h;
    return 0;
fail:
    srv_workers_free(h->workers);
    free(h);
    return -1;
}

void srv_http_quiesce(srv_http *h) {
    MHD_socket s = MHD_quiesce_daemon(h->daemon);
    if (s != MHD_INVALID_SOCKET) close(s);
}

int srv_http_port(srv_http *h) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return di ? (int)di->port : h->cfg->port;
}

int srv_http_pending(srv_http *h) { return atomic_load(&h->n_pending); }

void srv_http_stop_workers(srv_http *h) {
    if (h == NULL) return;
    /* Each job finishes (within its store's bound) and resumes its
     * connection; a request dispatched later is shed (503). */
    srv_workers_stop(h->workers);
}

void srv_http_stop(srv_http *h) {
    if (h == NULL) return;
    srv_http_stop_workers(h);
    MHD_stop_daemon(h->daemon);
    srv_workers_free(h->workers);
    free(h);
}

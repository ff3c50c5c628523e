/*
 * server.c - the server of `baichuan serve`: the KV pool's size, the
 * wiring of the tenant store, the ledger, the scheduler and the HTTP side,
 * and the shutdown on SIGTERM (stop accepting, let running requests finish
 * within the shutdown wait, flush the ledger).
 *
 * Threads:
 *   - the HTTP thread (http.c; libmicrohttpd, poll, internal): parses
 *     requests, answers the cheap endpoints itself, hands generation
 *     requests to the scheduler and streams their output from per-request
 *     buffers (request.c);
 *   - the engine thread (scheduler.c): owns the context, runs one batched
 *     forward pass per step over every active slot, writes output into the
 *     requests' buffers and never touches a socket except to peek whether a
 *     waiting client is still there; a request that ends goes to the hooks
 *     below (metrics and quota, then the ledger);
 *   - the ledger thread (ledger.c): commits one row per finished request,
 *     several per transaction, and only then releases the response's last
 *     bytes, so a client that saw a request complete finds its row;
 *   - the HTTP workers (workers.c, a fixed pool with a bounded queue):
 *     what may wait or take long, so that the HTTP thread never does:
 *     authentication (a tenant store round trip), /admin/usage (a ledger
 *     query), parsing a generation request (tokenizing, compiling its
 *     grammar) and handing it to the scheduler, /tokenize, loading a LoRA
 *     adapter (POST /v1/load_lora_adapter reads its files);
 *   - the readiness thread (health.c): pings the tenant store and the
 *     ledger, each on a connection of its own, for /readyz;
 *   - with a PostgreSQL tenant store and no ledger in its database, its
 *     quota thread (tenants_pg.c): charges committed requests' tokens, off
 *     the engine thread. Each thread that talks to PostgreSQL has a
 *     connection of its own (the workers take theirs from a pool);
 *   - the main thread waits for SIGTERM/SIGINT and runs the shutdown.
 *
 * Lock order: scheduler lock -> request lock (libmicrohttpd's own locks
 * after it, to resume a connection); metrics lock -> grammar cache lock
 * (rendering /metrics). The tenant stores', the ledger's, the workers',
 * the readiness thread's, the adapters' and the grammar cache's locks are
 * leaves: nothing is taken while holding them.
 *
 * Charges: a request's tokens count against its tenant's quota when its
 * ledger row commits (ledger.c), so only replies the client receives are
 * charged; without a ledger, when the request ends.
 */
#include "server.h"

#include "adapters.h"
#include "grammars.h"
#include "health.h"
#include "http.h"
#include "ledger.h"
#include "metrics.h"
#include "openai.h"
#include "request.h"
#include "scheduler.h"
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct srv_server {
    srv_config cfg;
    srv_http_config http_cfg;
    srv_model_info mi;
    srv_tenant_store *tenants; /* borrowed; NULL: no keys */
    srv_ledger *ledger;        /* NULL: no ledger */
    srv_scheduler *sched;
    srv_http *http;
    srv_health *health; /* the stores' readiness */
};

/* ------------------------------------------------------------------------ */
/* What becomes of a finished generation request (the scheduler's hooks)    */
/* ------------------------------------------------------------------------ */

/* Counts the request in the metrics; without a ledger, its tokens against
 * its tenant's daily quota (with one, the commit of its row charges them). */
static void account(void *ctx, const srv_request *r, int status) {
    srv_server *s = ctx;
    const char *tenant = r->tenant ? r->tenant->name : NULL;
    srv_metrics_request(tenant, srv_endpoint_path(r->endpoint), status);
    srv_metrics_tokens(tenant, r->n_prompt, r->n_generated);
    if (r->tenant != NULL && s->tenants != NULL && s->ledger == NULL)
        s->tenants->ops->charge(s->tenants, r->tenant, (long long)r->n_prompt + r->n_generated);
}

/* The ledger's hook: a committed request's tokens against its tenant. */
static void charge_committed(void *ctx, srv_tenant *tenant, long long tokens) {
    srv_server *s = ctx;
    if (s->tenants != NULL && tokens > 0) s->tenants->ops->charge(s->tenants, tenant, tokens);
}

/* Hands the request's row and last bytes to the ledger. */
static void record(void *ctx, const srv_ledger_row *row, srv_request *r, const char *tail, size_t tail_len) {
    srv_server *s = ctx;
    srv_ledger_submit(s->ledger, row, r, tail, tail_len);
}

/* ------------------------------------------------------------------------ */
/* Readiness (/readyz) and the stores' metrics                              */
/* ------------------------------------------------------------------------ */

static int ping_tenants(void *ctx, char *err, size_t err_size) {
    srv_server *s = ctx;
    return s->tenants->ops->ping(s->tenants, err, err_size);
}

static int ping_ledger(void *ctx, char *err, size_t err_size) {
    srv_server *s = ctx;
    return srv_ledger_ping(s->ledger, err, err_size);
}

/* Ready: the model is loaded (it is, once the server runs), every store
 * answers within its bound, the scheduler's queue and the ledger's have
 * room. The body names what is not ready. */
static bool ready(void *ctx, json_t **detail) {
    srv_server *s = ctx;
    json_t *not_ready = json_object();
    bool ok = s->health == NULL || srv_health_ready(s->health, not_ready);
    int queued, active;
    srv_scheduler_counts(s->sched, &queued, &active);
    if (queued >= s->cfg.max_queue) {
        ok = false;
        json_object_set_new(not_ready, "queue", json_sprintf("%d choices wait (--queue %d)", queued, s->cfg.max_queue));
    }
    if (s->ledger != NULL && srv_ledger_full(s->ledger)) {
        srv_ledger_stats_t ls;
        srv_ledger_stats(s->ledger, &ls);
        ok = false;
        json_object_set_new(
            not_ready, "ledger",
            json_sprintf("%ld rows wait for a commit (--max-ledger-queue %ld)", ls.queued, ls.max_rows));
    }
    *detail =
        json_pack("{s:s, s:s, s:o}", "status", ok ? "ready" : "not ready", "model", "loaded", "not_ready", not_ready);
    return ok;
}

static void store_metrics(void *ctx, srv_buf *out) {
    srv_server *s = ctx;
    if (s->ledger == NULL) return;
    srv_ledger_stats_t ls;
    srv_ledger_stats(s->ledger, &ls);
    srv_buf_printf(out,
                   "# HELP baichuan_ledger_queued Ledger rows waiting for a commit.\n"
                   "# TYPE baichuan_ledger_queued gauge\nbaichuan_ledger_queued %ld\n"
                   "# HELP baichuan_ledger_dropped_total Ledger rows refused because the queue was full.\n"
                   "# TYPE baichuan_ledger_dropped_total counter\nbaichuan_ledger_dropped_total %lld\n"
                   "# HELP baichuan_ledger_withheld_total Replies withheld because their rows could not be committed.\n"
                   "# TYPE baichuan_ledger_withheld_total counter\nbaichuan_ledger_withheld_total %lld\n",
                   ls.queued, ls.dropped, ls.withheld);
}

/* The seed of a tenant store's daily counts. */
static long long ledger_tokens_today(void *ledger, const char *tenant) {
    return srv_ledger_tokens_today(ledger, tenant);
}

/* ------------------------------------------------------------------------ */
/* Start and stop                                                           */
/* ------------------------------------------------------------------------ */

int srv_server_start(srv_server **out, const srv_config *cfg, const bc_model *model, const bc_tokenizer *tok,
                     bc_context *ctx, srv_tenant_store *tenants, char *err, size_t err_size) {
    *out = NULL;
    srv_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    s->cfg = *cfg;
    /* Bounds left 0 take serve's defaults (embedders such as fuzz_http). */
    if (s->cfg.n_workers <= 0) s->cfg.n_workers = 4;
    if (s->cfg.max_waiting <= 0) s->cfg.max_waiting = 64;
    if (s->cfg.max_wait <= 0) s->cfg.max_wait = 2;
    if (s->cfg.max_connections <= 0) s->cfg.max_connections = 1000;
    if (s->cfg.max_bodies_bytes <= 0) s->cfg.max_bodies_bytes = 64LL << 20;
    if (s->cfg.max_ledger_queue <= 0) s->cfg.max_ledger_queue = 10000;
    cfg = &s->cfg;
    s->http_cfg = (srv_http_config){.host = cfg->host,
                                    .port = cfg->port,
                                    .max_body = cfg->max_body,
                                    .max_connections = cfg->max_connections,
                                    .max_bodies_bytes = cfg->max_bodies_bytes,
                                    .n_workers = cfg->n_workers,
                                    .max_waiting = cfg->max_waiting,
                                    .max_wait = cfg->max_wait,
                                    .metrics_token = cfg->metrics_token,
                                    .ready = ready,
                                    .extra_metrics = store_metrics,
                                    .ready_ctx = s};
    s->tenants = tenants;
    bc_model_info info;
    bc_model_get_info(model, &info);
    bc_tokenizer_info ti;
    bc_tokenizer_get_info(tok, &ti);
    s->mi = (srv_model_info){.name = cfg->model_name,
                             .model = model,
                             .tok = tok,
                             .defaults = bc_model_sampler_params(model),
                             .chat = bc_chat_default_params(tok),
                             .n_vocab = ti.n_vocab < info.n_vocab ? ti.n_vocab : info.n_vocab,
                             .n_ctx = bc_context_n_ctx(ctx),
                             .max_messages = cfg->max_messages,
                             .adapters = srv_adapters_new(model)};
    if (s->mi.adapters == NULL) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    for (int i = 0; i < cfg->n_loras; i++) {
        char why[768];
        if (srv_adapters_load(s->mi.adapters, cfg->lora_names[i], cfg->lora_paths[i], cfg->model_name, why,
                              sizeof why) != SRV_ADAPTER_OK) {
            snprintf(err, err_size, "--lora %s=%s: %s", cfg->lora_names[i], cfg->lora_paths[i], why);
            goto fail;
        }
    }
    if (cfg->ledger_path != NULL) {
        /* The PostgreSQL tenant store in the ledger's own database: the
         * ledger's commit charges the tokens in its transaction. */
        bool same_db = tenants != NULL && strcmp(tenants->ops->name, "postgresql") == 0 && cfg->tenants_path != NULL &&
                       strcmp(cfg->tenants_path, cfg->ledger_path) == 0;
        srv_ledger_options lo = {.max_rows = cfg->max_ledger_queue,
                                 .wait = cfg->ledger_wait,
                                 .charge_quotas = same_db,
                                 .on_commit = charge_committed,
                                 .ctx = s};
        if (srv_ledger_open(&s->ledger, cfg->ledger_path, &lo, err, err_size) != 0) goto fail;
        if (tenants != NULL && tenants->ops->seed != NULL) tenants->ops->seed(tenants, ledger_tokens_today, s->ledger);
    }
    srv_probe probes[2];
    int n_probes = 0;
    if (tenants != NULL && tenants->ops->ping != NULL)
        probes[n_probes++] = (srv_probe){.name = "store", .ping = ping_tenants, .ctx = s};
    if (s->ledger != NULL) probes[n_probes++] = (srv_probe){.name = "ledger", .ping = ping_ledger, .ctx = s};
    if (srv_health_start(&s->health, probes, n_probes, err, err_size) != 0) goto fail;
    srv_metrics_init();
    srv_scheduler_hooks hooks = {.ctx = s, .account = account, .record = s->ledger != NULL ? record : NULL};
    if (srv_scheduler_start(&s->sched, ctx, cfg->max_queue, cfg->step_tokens, &hooks, err, err_size) != 0 ||
        srv_http_start(&s->http, &s->http_cfg, &s->mi, s->sched, tenants, s->ledger, err, err_size) != 0)
        goto fail;
    *out = s;
    return 0;
fail:
    srv_server_stop(s);
    return -1;
}

int srv_server_port(srv_server *s) { return srv_http_port(s->http); }

void srv_server_cancel_all(srv_server *s) { srv_scheduler_cancel_all(s->sched); }

/* Stops accepting connections and waits up to wait_s seconds for what is
 * queued, running or not yet sent; then cancels what is left. */
static void drain(srv_server *s, int wait_s) {
    srv_http_quiesce(s->http);
    double deadline = srv_now() + wait_s;
    for (;;) {
        int queued, active;
        srv_scheduler_counts(s->sched, &queued, &active);
        if (queued + active == 0 && srv_http_pending(s->http) == 0) break;
        if (srv_now() > deadline) {
            fprintf(stderr, "baichuan serve: %d requests still running: cancelling them\n", queued + active);
            srv_scheduler_cancel_all(s->sched);
            break;
        }
        usleep(20 * 1000);
    }
}

void srv_server_stop(srv_server *s) {
    if (s == NULL) return;
    /* The workers end first (they submit to the scheduler), then the
     * engine (every request finished or cancelled, so no connection stays
     * suspended), then the HTTP side, then the ledger. */
    srv_http_stop_workers(s->http);
    srv_health_stop(s->health);
    srv_scheduler_stop(s->sched);
    if (s->http != NULL) { /* the ledger thread releases the last replies meanwhile */
        double until = srv_now() + 5;
        while (srv_http_pending(s->http) > 0 && srv_now() < until) usleep(10 * 1000);
    }
    srv_http_stop(s->http);
    srv_ledger_close(s->ledger);       /* commits whatever is still queued */
    srv_adapters_free(s->mi.adapters); /* no request holds one any more */
    srv_grammar_cache_clear();         /* before the tokenizer the grammars are bound to */
    srv_metrics_free();
    free(s);
}

/* ------------------------------------------------------------------------ */
/* The KV pool's size                                                       */
/* ------------------------------------------------------------------------ */

/* MemAvailable of /proc/meminfo in bytes, or 0 where it cannot be read. */
static unsigned long long mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

static double gib(unsigned long long b) { return (double)b / (1024.0 * 1024 * 1024); }

/* The memory the server will hold, for the log line at start. */
typedef struct memory_plan {
    uint64_t per_pos;   /* KV bytes per position */
    uint64_t resident;  /* the weights */
    uint64_t ctx_bytes; /* the KV pool, scratch and tables */
} memory_plan;

/* The context's parameters: cfg->n_ctx positions of KV pool, or
 * cfg->kv_memory bytes, or by default every slot's full context where half
 * the available memory holds it. 0, or -1 with err. */
static int plan_context(const srv_config *cfg, const bc_model *model, bc_context_params *out, memory_plan *mem,
                        char *err, size_t err_size) {
    bc_model_info info;
    bc_model_get_info(model, &info);
    bc_context_params cp = bc_context_default_params();
    cp.n_seq = cfg->n_parallel;
    cp.n_batch = cfg->n_batch < cfg->n_parallel ? cfg->n_parallel : cfg->n_batch;
    cp.n_threads = cfg->n_threads;
    cp.cache_type = cfg->cache_type;
    cp.prefix_cache = !cfg->no_prefix_cache;
    const uint64_t per_pos = bc_model_kv_bytes_per_position(model, cp.cache_type);
    const uint64_t resident = info.weight_bytes - info.released_bytes + info.repacked_bytes;
    if (per_pos == 0) {
        snprintf(err, err_size, "--cache-type %s: not a KV cache type", bc_dtype_name(cp.cache_type));
        return -1;
    }
    long long n_kv = cfg->n_ctx;
    if (cfg->kv_memory > 0) {
        if (cfg->n_ctx > 0) {
            snprintf(err, err_size, "give -c (positions) or --kv-memory (bytes), not both");
            return -1;
        }
        n_kv = cfg->kv_memory / (long long)per_pos;
    } else if (n_kv == 0) {
        n_kv = (long long)cfg->n_parallel * info.n_ctx_train;
        unsigned long long avail = mem_available();
        if (avail > resident) {
            long long fit = (long long)((avail - resident) / 2 / per_pos);
            if (fit < n_kv) n_kv = fit > info.n_ctx_train ? fit : info.n_ctx_train;
        }
    }
    if (n_kv < 16 || n_kv > (1 << 28)) {
        snprintf(err, err_size,
                 "a KV pool of %lld positions (%.2f GiB of %s cache at %.0f KiB per position) is %s; give -c or "
                 "--kv-memory",
                 n_kv, gib((unsigned long long)n_kv * per_pos), bc_dtype_name(cp.cache_type), (double)per_pos / 1024,
                 n_kv < 16 ? "less than one block of 16" : "too large");
        return -1;
    }
    cp.n_kv = (int)(n_kv / 16 * 16);
    cp.n_ctx = info.n_ctx_train < n_kv ? info.n_ctx_train : (int)n_kv;
    const uint64_t ctx_bytes = bc_model_context_bytes(model, cp);
    const unsigned long long avail = mem_available();
    if (avail > 0 && ctx_bytes > avail) {
        snprintf(err, err_size,
                 "the KV pool and scratch need %.2f GiB and only %.2f GiB are available: a smaller -c or "
                 "--kv-memory, or --cache-type q8_0",
                 gib(ctx_bytes), gib(avail));
        return -1;
    }
    *out = cp;
    *mem = (memory_plan){.per_pos = per_pos, .resident = resident, .ctx_bytes = ctx_bytes};
    return 0;
}

/* ------------------------------------------------------------------------ */
/* baichuan serve                                                           */
/* ------------------------------------------------------------------------ */

static void shutdown_signals(sigset_t *sigs) {
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
}

void srv_signals_block(void) {
    sigset_t sigs;
    shutdown_signals(&sigs);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int srv_run(const srv_config *cfg, const bc_model *model, const bc_tokenizer *tok, srv_tenant_store *tenants, char *err,
            size_t err_size) {
    bc_context_params cp;
    memory_plan mem;
    bc_context *ctx = NULL;
    srv_server *s = NULL;
    if (plan_context(cfg, model, &cp, &mem, err, err_size) != 0) return -1;
    if (bc_context_init(model, cp, &ctx, err, err_size) != BC_STATUS_OK) return -1;
    if (srv_server_start(&s, cfg, model, tok, ctx, tenants, err, err_size) != 0) {
        bc_context_free(ctx);
        return -1;
    }
    bc_kv_stats kv;
    bc_context_kv_stats(ctx, &kv);
    int n_adapters;
    const unsigned long long adapter_bytes = srv_adapters_bytes(s->mi.adapters, &n_adapters);
    fprintf(stderr,
            "baichuan serve: memory bound %.2f GiB = weights %.2f GiB + KV pool %.2f GiB (%d blocks x %d "
            "positions x %.0f KiB, %s) + scratch and tables %.2f GiB + %d LoRA adapters %.3f GiB; plus request "
            "buffers (at most %d requests of %zu-byte bodies) and adapters loaded later\n",
            gib(mem.resident + mem.ctx_bytes + adapter_bytes), gib(mem.resident), gib(kv.bytes), kv.n_blocks,
            kv.block_size, (double)mem.per_pos / 1024, bc_dtype_name(cp.cache_type), gib(mem.ctx_bytes - kv.bytes),
            n_adapters, gib(adapter_bytes), cfg->max_queue + cfg->n_parallel, cfg->max_body);
    /* The adapters, a line each: after the memory bound they add to, before
     * the address line (clients may start as soon as that is out). */
    srv_buf adapters = {0};
    srv_adapters_describe(s->mi.adapters, &adapters);
    if (adapters.data != NULL) {
        for (char *line = adapters.data, *end; (end = strchr(line, '\n')) != NULL; line = end + 1)
            fprintf(stderr, "baichuan serve: %.*s\n", (int)(end - line), line);
    }
    srv_buf_free(&adapters);
    fprintf(stderr,
            "baichuan serve: %s on http://%s:%d (%d sequences sharing %d KV positions, up to %d each; prefix cache "
            "%s; batch %d, step %d tokens, %d threads)\n",
            s->mi.name, cfg->host, srv_server_port(s), cfg->n_parallel, bc_context_n_kv(ctx), cp.n_ctx,
            cp.prefix_cache ? "on" : "off", cp.n_batch, srv_scheduler_step_tokens(ctx, cfg->step_tokens),
            bc_context_n_threads(ctx));

    sigset_t sigs;
    shutdown_signals(&sigs);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "baichuan serve: %s: no new connections; finishing running requests (at most %d s)\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg->shutdown_wait);
    drain(s, cfg->shutdown_wait);
    srv_server_stop(s);
    bc_context_free(ctx);
    return 0;
}

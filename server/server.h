/*
 * server.h - the server of `baichuan serve` (server.c): its settings, and
 * the calls that wire the tenant store, the ledger, the engine thread
 * (scheduler.h) and the HTTP side (http.h) together, serve until SIGTERM or
 * SIGINT, and shut down. The server uses the engine only through
 * baichuan.h, and its ledger and tenants only through the interfaces of
 * store.h. server.c's top comment says which thread does what and the
 * order of the locks; README.md maps the files.
 */
#ifndef BC_SERVER_H
#define BC_SERVER_H

#include "baichuan.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>

/* A server's settings (`baichuan serve`'s options; its defaults are the
 * command's). */
typedef struct srv_config {
    const char *host;        /* IPv4 address to listen on */
    int port;                /* 0: any free port */
    int n_parallel;          /* slots: sequences decoded together */
    int n_ctx;               /* positions of the KV pool shared by all slots (0: from kv_memory or the default) */
    long long kv_memory;     /* bytes for the KV pool (0: not given) */
    bool no_prefix_cache;    /* do not keep or reuse the blocks of earlier prompts */
    int n_batch;             /* most entries in one forward pass */
    int step_tokens;         /* most entries in one step, the streams' next tokens included (0: n_batch) */
    int n_threads;           /* engine threads; 0 = all cores */
    bc_dtype cache_type;     /* the KV cache's element type */
    int max_queue;           /* choices waiting for a slot before 503 */
    size_t max_body;         /* bytes */
    int max_messages;        /* per chat request */
    int shutdown_wait;       /* seconds SIGTERM waits for running requests */
    const char *ledger_path; /* a SQLite file or a postgresql:// URL; NULL: no ledger */
    const char *model_name;  /* the model's name in responses, /v1/models and the ledger */
    /* The tenant store's file or URL (NULL: none): a ledger in the same
     * PostgreSQL database charges tokens in its own transaction. */
    const char *tenants_path;
    /* Bounds: past each the server sheds load (503 + Retry-After). */
    int ledger_wait;            /* seconds a failing ledger batch is retried before its replies are withheld */
    int max_ledger_queue;       /* ledger rows waiting for a commit */
    int n_workers;              /* HTTP workers (authentication, parsing, store queries) */
    int max_waiting;            /* requests waiting for a worker */
    int max_wait;               /* seconds a request may wait for a worker */
    int max_connections;        /* open connections */
    long long max_bodies_bytes; /* request bodies buffered at once */
    const char *metrics_token;  /* opens /metrics without a tenant (NULL: none) */
    /* LoRA adapters loaded at start (serve --lora NAME=PATH): n_loras names
     * and the paths of their directories. */
    const char *const *lora_names;
    const char *const *lora_paths;
    int n_loras;
} srv_config;

typedef struct srv_server srv_server;

/* Blocks SIGTERM and SIGINT in the calling thread, and so in every thread
 * started after it, for srv_run to take them with sigwait; ignores SIGPIPE
 * (a client that leaves while its reply is written). Call before any
 * thread starts: before the model is loaded or a store is opened. */
void srv_signals_block(void);

/* Starts serving model with tok on ctx (its sequences are the slots): loads
 * cfg's adapters, opens the ledger, seeds the tenants' daily counts from it, starts the engine
 * thread and the HTTP thread. tenants (NULL: no keys needed), model, tok
 * and ctx are borrowed and must outlive the server. 0, or -1 with the
 * reason in err (nothing is left running). */
int srv_server_start(srv_server **out, const srv_config *cfg, const bc_model *model, const bc_tokenizer *tok,
                     bc_context *ctx, srv_tenant_store *tenants, char *err, size_t err_size);
/* The port listened on (the one chosen with port 0). */
int srv_server_port(srv_server *s);
/* Cancels every request still queued or running. */
void srv_server_cancel_all(srv_server *s);
/* Stops the engine thread once no request is queued or running, then the
 * HTTP side (after the ledger has released the last replies, 5 s at most),
 * then commits and closes the ledger, and empties the grammar cache. NULL
 * is ignored. */
void srv_server_stop(srv_server *s);

/* `baichuan serve` once the model and tokenizer are loaded: sizes the KV
 * pool (cfg->n_ctx positions, or cfg->kv_memory bytes, or by default every
 * slot's full context where half the available memory holds it), makes the
 * context, starts the server, logs its memory bound and address on stderr,
 * waits for SIGTERM or SIGINT (blocked with srv_signals_block), lets
 * running requests finish within cfg->shutdown_wait seconds and stops.
 * tenants (NULL: none), model and tok are borrowed. 0 after that shutdown,
 * or -1 with the reason in err when the server cannot start. */
int srv_run(const srv_config *cfg, const bc_model *model, const bc_tokenizer *tok, srv_tenant_store *tenants, char *err,
            size_t err_size);

#endif /* BC_SERVER_H */

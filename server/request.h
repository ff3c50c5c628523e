/*
 * request.h - a generation request and its choices (request.c).
 *
 * openai.c builds a request from a body, the scheduler runs its choices,
 * the ledger records it, the HTTP side answers it. Each of them holds a
 * reference while it uses the request; the last one frees it.
 *
 * The output buffer is what the engine thread shares with the HTTP thread:
 * the engine (and the ledger, for the last bytes) appends under the
 * request's lock and wakes the connection (srv_request_publish); the HTTP
 * thread sends from it and suspends the connection while it is empty. A
 * suspended connection does not see its client leave, so the engine peeks
 * at the socket (srv_request_check_gone).
 */
#ifndef BC_REQUEST_H
#define BC_REQUEST_H

#include "adapters.h"
#include "baichuan.h"
#include "grammars.h"
#include "store.h"
#include "tools.h"
#include "util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Connection;

typedef enum srv_endpoint {
    SRV_ENDPOINT_COMPLETIONS = 0, /* POST /v1/completions */
    SRV_ENDPOINT_CHAT = 1,        /* POST /v1/chat/completions */
} srv_endpoint;

/* "/v1/completions" or "/v1/chat/completions". */
const char *srv_endpoint_path(srv_endpoint e);

#define SRV_MAX_N 8 /* most choices per request (the request's "n") */

typedef struct srv_request srv_request;

/* One of the request's n continuations of its prompt: its own sequence
 * (slot), generator, output and finish reason. */
typedef struct srv_choice {
    srv_request *req;
    int index; /* the "index" of the choice in the response */
    /* (n_prompt + max_tokens + 1) the prompt's ids, then the generated ids:
     * ids[0 .. n_prompt + the generator's count) is what the choice's
     * sequence holds (or must hold again after a preemption). */
    int32_t *ids;
    /* The generation step (bc_generator): the sampler seeded with the
     * request's seed + index and its logit biases, the grammar's matcher,
     * the detokenizer, the stop strings, max_tokens and logprobs. It keeps
     * its state while the choice is preempted. Freed when the choice ends. */
    bc_generator *gen;

    /* Engine thread only. */
    bool admitted;             /* has been admitted once (a preempted choice is admitted again) */
    size_t text_offset;        /* bytes of text emitted (logprobs text_offset) */
    const char *finish_reason; /* "stop", "length", "cancelled", "error"; NULL while running */
    bool role_sent;            /* chat stream: the first delta (role) went out */
    bool finish_sent;          /* stream: the chunk with the finish_reason went out */
    double t_last_token;
    srv_buf text;        /* non-streaming: the reply text so far */
    json_t *lp_content;  /* non-streaming logprobs: chat content[] or completions arrays */
    size_t text_sent;    /* stream with tools: bytes of tools.text sent as content */
    srv_tool_scan tools; /* with tools (tool_choice not none): the reply read as text or calls */
} srv_choice;

struct srv_request {
    /* Set by the HTTP thread before the request is submitted; read-only after. */
    srv_endpoint endpoint;
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    int32_t *prompt;    /* (n_prompt) the input ids */
    int n_prompt;
    int max_tokens;       /* most tokens to generate, per choice (the context has room for them after the prompt) */
    int logprobs;         /* -1 off; else how many top alternatives (0..20) */
    int n_choices;        /* the request's "n", 1..SRV_MAX_N */
    srv_choice *choices;  /* (n_choices) */
    srv_grammar *grammar; /* the compiled constraint (a reference), or NULL */
    int tool_choice;      /* srv_tool_choice: not none, the reply is read for calls (srv_choice.tools) */
    char id[64];          /* "chatcmpl-..." / "cmpl-..." */
    long long created;    /* unix seconds */
    const char *model;    /* the served model's name (lives as long as the server) */
    /* The LoRA adapter the request runs under (a reference, released with
     * the request), or NULL for the base model. Its name is the response's
     * "model". */
    srv_adapter *adapter;
    srv_tenant *tenant; /* NULL without a tenants file */
    double t_arrival;   /* srv_now() when the request arrived */
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

/* A request with one reference (the caller's), no choices, no socket
 * (fd -1) and everything else zero; NULL out of memory. */
srv_request *srv_request_new(void);
/* Takes one more reference. */
void srv_request_ref(srv_request *r);
/* Drops a reference; the last one frees the request, its choices and its
 * grammar reference. NULL is ignored. */
void srv_request_unref(srv_request *r);

/* Appends bytes for the client and wakes the connection. final marks out
 * complete. Out of memory cancels the request. */
void srv_request_publish(srv_request *r, const char *p, size_t n, bool final);

/* Peeks at the request's socket if its connection is suspended; when the
 * client has gone, marks it cancelled, resumes the connection (so
 * libmicrohttpd closes it) and returns true. */
bool srv_request_check_gone(srv_request *r);

#endif /* BC_REQUEST_H */

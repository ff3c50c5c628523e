/*
 * serve.c - `baichuan serve`: options, set-up, and the shutdown on SIGTERM
 * (stop accepting, let running requests finish within --shutdown-wait
 * seconds, flush the ledger, exit 0).
 */
#include "../cli/cli.h"
#include "server.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "usage: baichuan serve -m MODEL [options]\n"
    "\n"
    "An OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions,\n"
    "/tokenize, /detokenize; GET /v1/models, /health, /metrics, and a web chat page at /.\n"
    "Up to --parallel requests are decoded together in one batched forward pass per step.\n"
    "\n"
    "options:\n"
    "      --host ADDR          IPv4 address to listen on (default 127.0.0.1)\n"
    "      --port N             TCP port (default 8080)\n"
    "      --parallel N         requests decoded together (slots; default 4)\n"
    "  -c, --ctx-size N         positions per slot (default: the model's context)\n"
    "  -b, --batch N            most tokens in one forward pass, prompt chunks included (default 256)\n"
    "      --queue N            requests waiting for a slot before 503 (default 64)\n"
    "      --max-body N         largest request body in bytes (default 1048576)\n"
    "      --max-messages N     most messages in a chat request (default 1024)\n"
    "      --tenants FILE       tenants and their keys and limits (JSON); then every endpoint\n"
    "                           but /health and / needs 'Authorization: Bearer KEY'\n"
    "      --ledger FILE        record every generation request in this SQLite database\n"
    "      --tokenizer PATH     tokenizer directory or tokenizer.model (default: the model's; needed\n"
    "                           for a GGUF model, whose vocabulary is not read)\n"
    "      --alias NAME         the model name reported (default: the model path's last part)\n"
    "      --shutdown-wait S    seconds SIGTERM lets running requests finish (default 30)\n";

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    static char buf[256];
    size_t start = n;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(buf, sizeof buf, "%.*s", (int)(n - start), path + start);
    return buf;
}

int cmd_serve(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    const char *tokenizer_path = NULL;
    srv_config cfg = {.host = "127.0.0.1",
                      .port = 8080,
                      .n_parallel = 4,
                      .n_batch = 256,
                      .max_queue = 64,
                      .max_body = 1 << 20,
                      .max_messages = 1024,
                      .shutdown_wait = 30};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = cli_model_opt(argc, argv, &i, &mo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            fputs(cli_model_opts_help, stdout);
            return 0;
        }
        int *int_opt = NULL;
        long lo = 1, hi = 1 << 20;
        if (strcmp(a, "--port") == 0)
            int_opt = &cfg.port, lo = 0, hi = 65535;
        else if (strcmp(a, "--parallel") == 0)
            int_opt = &cfg.n_parallel, hi = 256;
        else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx-size") == 0)
            int_opt = &cfg.n_ctx, hi = 1 << 24;
        else if (strcmp(a, "-b") == 0 || strcmp(a, "--batch") == 0)
            int_opt = &cfg.n_batch, hi = 1 << 16;
        else if (strcmp(a, "--queue") == 0)
            int_opt = &cfg.max_queue, hi = 1 << 16;
        else if (strcmp(a, "--max-messages") == 0)
            int_opt = &cfg.max_messages;
        else if (strcmp(a, "--shutdown-wait") == 0)
            int_opt = &cfg.shutdown_wait, lo = 0, hi = 3600;
        if (int_opt != NULL) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, lo, hi, a, int_opt) != 0) return 1;
            continue;
        }
        const char **str_opt = NULL;
        if (strcmp(a, "--host") == 0)
            str_opt = &cfg.host;
        else if (strcmp(a, "--tenants") == 0)
            str_opt = &cfg.tenants_path;
        else if (strcmp(a, "--ledger") == 0)
            str_opt = &cfg.ledger_path;
        else if (strcmp(a, "--alias") == 0)
            str_opt = &cfg.alias;
        else if (strcmp(a, "--tokenizer") == 0)
            str_opt = &tokenizer_path;
        if (str_opt != NULL) {
            if ((*str_opt = cli_value(argc, argv, &i)) == NULL) return 1;
            continue;
        }
        if (strcmp(a, "--max-body") == 0) {
            int kb;
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 64, 1 << 30, a, &kb) != 0) return 1;
            cfg.max_body = (size_t)kb;
            continue;
        }
        return cli_error("serve: unknown option '%s' (see 'baichuan serve --help')", a);
    }
    if (mo.model == NULL) mo.model = cli_default_model();

    int rc = 1;
    char err[1024];
    bc_model *model = NULL;
    bc_tokenizer *tok = NULL;
    bc_context *ctx = NULL;
    srv_tenants tenants;
    bool have_tenants = false;
    srv_ledger *ledger = NULL;
    srv_scheduler *sched = NULL;
    srv_http *http = NULL;

    /* Signals are taken by sigwait in this thread only: block them before
     * any thread starts (threads inherit the mask). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cfg.tenants_path != NULL) {
        if (srv_tenants_load(&tenants, cfg.tenants_path, err, sizeof err) != 0) {
            cli_error("%s", err);
            goto cleanup;
        }
        have_tenants = true;
    }
    if ((model = cli_load_model(&mo)) == NULL) goto cleanup;
    if (bc_tokenizer_load(tokenizer_path ? tokenizer_path : mo.model, &tok, err, sizeof err) != BC_STATUS_OK) {
        cli_error("%s", err);
        goto cleanup;
    }
    bc_model_info info;
    bc_model_get_info(model, &info);
    bc_tokenizer_info ti;
    bc_tokenizer_get_info(tok, &ti);
    bc_context_params cp = bc_context_default_params();
    cp.n_ctx = cfg.n_ctx ? cfg.n_ctx : info.n_ctx_train;
    cp.n_seq = cfg.n_parallel;
    cp.n_batch = cfg.n_batch < cfg.n_parallel ? cfg.n_parallel : cfg.n_batch;
    cp.n_threads = mo.n_threads;
    if (bc_context_init(model, cp, &ctx, err, sizeof err) != BC_STATUS_OK) {
        cli_error("%s", err);
        goto cleanup;
    }
    cfg.n_ctx = cp.n_ctx;
    srv_model_info mi = {.name = cfg.alias ? cfg.alias : base_name(mo.model),
                         .model = model,
                         .tok = tok,
                         .defaults = bc_model_sampler_params(model),
                         .chat = bc_chat_default_params(tok),
                         .n_vocab = ti.n_vocab < info.n_vocab ? ti.n_vocab : info.n_vocab,
                         .n_ctx = cp.n_ctx,
                         .max_messages = cfg.max_messages};
    if (cfg.ledger_path != NULL) {
        if (srv_ledger_open(&ledger, cfg.ledger_path, err, sizeof err) != 0) {
            cli_error("%s", err);
            goto cleanup;
        }
        for (size_t i = 0; have_tenants && i < tenants.n; i++) {
            srv_tenant *t = &tenants.tenants[i];
            srv_tenants_charge(&tenants, t, srv_ledger_tokens_today(ledger, t->name));
        }
    }
    srv_metrics_init();
    if (srv_scheduler_start(&sched, ctx, model, tok, cfg.max_queue, ledger, err, sizeof err) != 0 ||
        srv_http_start(&http, &cfg, &mi, sched, have_tenants ? &tenants : NULL, ledger, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto cleanup;
    }
    fprintf(stderr, "baichuan serve: %s on http://%s:%d (%d slots of %d positions, batch %d, %d threads)\n", mi.name,
            cfg.host, srv_http_port(http), cfg.n_parallel, cp.n_ctx, cp.n_batch, bc_context_n_threads(ctx));

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "baichuan serve: %s: no new connections; finishing running requests (at most %d s)\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_wait);
    srv_http_quiesce(http);
    double deadline = srv_now() + cfg.shutdown_wait;
    for (;;) {
        int queued, active;
        srv_scheduler_counts(sched, &queued, &active);
        if (queued + active == 0 && srv_http_pending(http) == 0) break;
        if (srv_now() > deadline) {
            fprintf(stderr, "baichuan serve: %d requests still running: cancelling them\n", queued + active);
            srv_scheduler_cancel_all(sched);
            break;
        }
        usleep(20 * 1000);
    }
    rc = 0;
cleanup:
    /* The engine ends first (every request finished or cancelled, so no
     * connection stays suspended), then the HTTP side, then the ledger. */
    srv_scheduler_stop(sched);
    if (http != NULL) { /* the ledger thread releases the last replies meanwhile */
        double until = srv_now() + 5;
        while (srv_http_pending(http) > 0 && srv_now() < until) usleep(10 * 1000);
    }
    srv_http_stop(http);
    srv_ledger_close(ledger); /* commits whatever is still queued */
    if (have_tenants) srv_tenants_free(&tenants);
    bc_context_free(ctx);
    bc_tokenizer_free(tok);
    bc_model_free(model);
    if (rc == 0) fprintf(stderr, "baichuan serve: stopped\n");
    return rc;
}

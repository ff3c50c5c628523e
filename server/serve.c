/*
 * serve.c - `baichuan serve`: options, set-up, and the shutdown on SIGTERM
 * (stop accepting, let running requests finish within --shutdown-wait
 * seconds, flush the ledger, exit 0).
 */
#include "../cli/cli.h"
#include "server.h"

#include <errno.h>
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
    "Their keys and values live in one paged KV pool (blocks of 16 positions) that they share,\n"
    "with a prefix cache: a prompt that starts like an earlier one (a system prompt, a chat's\n"
    "history) reuses its blocks. A request is admitted when the pool can hold its prompt; when\n"
    "the pool runs out, the newest request is paused and recomputed later, never failed.\n"
    "\n"
    "options:\n"
    "      --host ADDR          IPv4 address to listen on (default 127.0.0.1)\n"
    "      --port N             TCP port (default 8080)\n"
    "      --parallel N         requests decoded together (sequences; default 4)\n"
    "  -c, --ctx-size N         positions of the KV pool, shared by all requests (default: --parallel\n"
    "                           x the model's context, less if that does not fit in half the\n"
    "                           available memory); one request may grow to min(N, model context)\n"
    "      --kv-memory SIZE     size the KV pool in bytes instead: 6G, 512M, ... (K/M/G/T = 2^10..)\n"
    "      --no-prefix-cache    do not keep or reuse the blocks of earlier prompts\n"
    "  -b, --batch N            most tokens in one forward pass, prompt chunks included (default 256)\n"
    "      --queue N            choices waiting for a slot before 503 (a request brings n; default 64)\n"
    "      --max-body N         largest request body in bytes (default 1048576)\n"
    "      --max-messages N     most messages in a chat request (default 1024)\n"
    "      --tenants STORE      tenants and their keys and limits: a JSON file, or a postgresql://\n"
    "                           URL whose tables replicas share (quotas counted in the database);\n"
    "                           then every endpoint but /health and / needs 'Authorization: Bearer KEY'\n"
    "      --ledger STORE       record every generation request in this SQLite file, or in the\n"
    "                           PostgreSQL database of a postgresql:// URL\n"
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

/* "6G", "512M", "64k", "1073741824": bytes (powers of 1024), or -1. */
static long long parse_size(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !(v > 0)) return -1;
    double unit = 1;
    switch (*end) {
    case 'k':
    case 'K':
        unit = 1024.0;
        end++;
        break;
    case 'm':
    case 'M':
        unit = 1024.0 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        unit = 1024.0 * 1024 * 1024;
        end++;
        break;
    case 't':
    case 'T':
        unit = 1024.0 * 1024 * 1024 * 1024;
        end++;
        break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end += *end == 'i' ? (end[1] == 'B' ? 2 : 1) : 1;
    if (*end != '\0' || v * unit > 9e18) return -1;
    return (long long)(v * unit);
}

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

/* The seed of a tenant store's daily counts. */
static long long ledger_tokens_today(void *ledger, const char *tenant) {
    return srv_ledger_tokens_today(ledger, tenant);
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
        if (strcmp(a, "--kv-memory") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL) return 1;
            if ((cfg.kv_memory = parse_size(v)) <= 0)
                return cli_error("--kv-memory: '%s' is not a size such as 6G, 512M or 1073741824", v);
            continue;
        }
        if (strcmp(a, "--no-prefix-cache") == 0) {
            cfg.no_prefix_cache = true;
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
    srv_tenant_store *tenants = NULL;
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
        if (srv_tenant_store_open(&tenants, cfg.tenants_path, true, err, sizeof err) != 0) {
            cli_error("%s", err);
            goto cleanup;
        }
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
    /* The pool: -c positions, or --kv-memory bytes, or by default every
     * slot's full context where half the available memory holds it. */
    bc_context_params cp = bc_context_default_params();
    cp.n_seq = cfg.n_parallel;
    cp.n_batch = cfg.n_batch < cfg.n_parallel ? cfg.n_parallel : cfg.n_batch;
    cp.n_threads = mo.n_threads;
    cp.cache_type = mo.cache_type;
    cp.prefix_cache = !cfg.no_prefix_cache;
    const uint64_t per_pos = bc_model_kv_bytes_per_position(model, cp.cache_type);
    const uint64_t resident = info.weight_bytes - info.released_bytes + info.repacked_bytes;
    if (per_pos == 0) {
        cli_error("--cache-type %s: not a KV cache type", bc_dtype_name(cp.cache_type));
        goto cleanup;
    }
    long long n_kv = cfg.n_ctx;
    if (cfg.kv_memory > 0) {
        if (cfg.n_ctx > 0) {
            cli_error("give -c (positions) or --kv-memory (bytes), not both");
            goto cleanup;
        }
        n_kv = cfg.kv_memory / (long long)per_pos;
    } else if (n_kv == 0) {
        n_kv = (long long)cfg.n_parallel * info.n_ctx_train;
        unsigned long long avail = mem_available();
        if (avail > resident) {
            long long fit = (long long)((avail - resident) / 2 / per_pos);
            if (fit < n_kv) n_kv = fit > info.n_ctx_train ? fit : info.n_ctx_train;
        }
    }
    if (n_kv < 16 || n_kv > (1 << 28)) {
        cli_error("a KV pool of %lld positions (%.2f GiB of %s cache at %.0f KiB per position) is %s; give -c or "
                  "--kv-memory",
                  n_kv, gib((unsigned long long)n_kv * per_pos), bc_dtype_name(cp.cache_type), (double)per_pos / 1024,
                  n_kv < 16 ? "less than one block of 16" : "too large");
        goto cleanup;
    }
    cp.n_kv = (int)(n_kv / 16 * 16);
    cp.n_ctx = info.n_ctx_train < n_kv ? info.n_ctx_train : (int)n_kv;
    const uint64_t ctx_bytes = bc_model_context_bytes(model, cp);
    const unsigned long long avail = mem_available();
    if (avail > 0 && ctx_bytes > avail) {
        cli_error("the KV pool and scratch need %.2f GiB and only %.2f GiB are available: a smaller -c or "
                  "--kv-memory, or --cache-type q8_0",
                  gib(ctx_bytes), gib(avail));
        goto cleanup;
    }
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
        if (tenants != NULL && tenants->ops->seed != NULL) tenants->ops->seed(tenants, ledger_tokens_today, ledger);
    }
    srv_metrics_init();
    if (srv_scheduler_start(&sched, ctx, model, tok, cfg.max_queue, ledger, err, sizeof err) != 0 ||
        srv_http_start(&http, &cfg, &mi, sched, tenants, ledger, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto cleanup;
    }
    bc_kv_stats kv;
    bc_context_kv_stats(ctx, &kv);
    fprintf(stderr,
            "baichuan serve: memory bound %.2f GiB = weights %.2f GiB + KV pool %.2f GiB (%d blocks x %d "
            "positions x %.0f KiB, %s) + scratch and tables %.2f GiB; plus request buffers (at most %d requests "
            "of %zu-byte bodies)\n",
            gib(resident + ctx_bytes), gib(resident), gib(kv.bytes), kv.n_blocks, kv.block_size, (double)per_pos / 1024,
            bc_dtype_name(cp.cache_type), gib(ctx_bytes - kv.bytes), cfg.max_queue + cfg.n_parallel, cfg.max_body);
    fprintf(stderr,
            "baichuan serve: %s on http://%s:%d (%d sequences sharing %d KV positions, up to %d each; prefix cache "
            "%s; batch %d, %d threads)\n",
            mi.name, cfg.host, srv_http_port(http), cfg.n_parallel, bc_context_n_kv(ctx), cp.n_ctx,
            cp.prefix_cache ? "on" : "off", cp.n_batch, bc_context_n_threads(ctx));

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
    srv_ledger_close(ledger);  /* commits whatever is still queued */
    srv_grammar_cache_clear(); /* before the tokenizer the grammars are bound to */
    if (tenants != NULL) tenants->ops->close(tenants);
    bc_context_free(ctx);
    bc_tokenizer_free(tok);
    bc_model_free(model);
    if (rc == 0) fprintf(stderr, "baichuan serve: stopped\n");
    return rc;
}

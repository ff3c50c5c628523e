/*
 * cmd_serve.c - `baichuan serve`: its options, the tenant store, the model
 * and the tokenizer, then the server (server/server.h), which runs until
 * SIGTERM or SIGINT (let running requests finish within --shutdown-wait
 * seconds, flush the ledger, exit 0).
 */
#include "cli.h"

#include "../server/server.h"
#include "../server/store_open.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The default of --step-tokens, from bench/bench_server.py --tests prefill
 * (server/README.md gives the figures). */
#define DEFAULT_STEP_TOKENS 64
#define TEXT_OF(x)          #x
#define TEXT_OF_VALUE(x)    TEXT_OF(x)
#define STEP_TOKENS_TEXT    TEXT_OF_VALUE(DEFAULT_STEP_TOKENS)
/* The most --lora options (more can be loaded while serving). */
#define MAX_LORAS      256
#define MAX_LORAS_TEXT TEXT_OF_VALUE(MAX_LORAS)

static const char help[] =
    "usage: baichuan serve -m MODEL [options]\n"
    "\n"
    "An OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions,\n"
    "/tokenize, /detokenize; GET /v1/models, /health, /livez, /readyz, /metrics, and a web chat\n"
    "page at /.\n"
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
    "      --step-tokens N      most tokens in one step, the running streams' next tokens included\n"
    "                           (default " STEP_TOKENS_TEXT "; at least --parallel, at most -b): a longer prompt\n"
    "                           is computed a chunk per step while the streams go on, a token a step\n"
    "      --queue N            choices waiting for a slot before 503 (a request brings n; default 64)\n"
    "      --max-body N         largest request body in bytes (default 1048576)\n"
    "      --max-messages N     most messages in a chat request (default 1024)\n"
    "      --tenants STORE      tenants and their keys and limits: a JSON file, or a postgresql://\n"
    "                           URL whose tables replicas share (quotas counted in the database);\n"
    "                           then every endpoint but /health, /livez, /readyz and / needs\n"
    "                           'Authorization: Bearer KEY'\n"
    "      --ledger STORE       record every generation request in this SQLite file, or in the\n"
    "                           PostgreSQL database of a postgresql:// URL; a request's tokens are\n"
    "                           charged to its tenant when its row commits (in the same transaction\n"
    "                           when --tenants names the same database)\n";

/* The bounds and the rest (a second string: C99 compilers need not take
 * literals over 4,095 characters). */
static const char help_more[] =
    "      --ledger-wait S      seconds a failing ledger write is retried before its replies are\n"
    "                           withheld (503; default 30)\n"
    "      --max-ledger-queue N rows waiting for the ledger before new requests are shed (default 10000)\n"
    "      --metrics-token T    /metrics also answers 'Authorization: Bearer T' without a tenant\n"
    "                           (monitoring that works while the tenant store is down)\n"
    "      --workers N          threads for authentication, parsing and store queries (default 4)\n"
    "      --max-waiting N      requests waiting for one of them before 503 (default 64)\n"
    "      --max-wait S         seconds a request may wait for one of them before 503 (default 2)\n"
    "      --max-connections N  open connections (default 1000)\n"
    "      --max-bodies SIZE    request bodies buffered at once, all connections (default 64M)\n"
    "      --tokenizer PATH     tokenizer directory or tokenizer.model (default: the model's; needed\n"
    "                           for a GGUF model, whose vocabulary is not read)\n"
    "      --alias NAME         the model name reported (default: the model path's last part)\n"
    "      --lora NAME=PATH     serve the LoRA adapter in directory PATH (PEFT's adapter_config.json and\n"
    "                           adapter_model.safetensors or .bin) as model NAME beside the base;\n"
    "                           repeatable (at most " MAX_LORAS_TEXT "). A request's \"model\": NAME selects it;\n"
    "                           admins load and unload more with POST /v1/load_lora_adapter and\n"
    "                           /v1/unload_lora_adapter\n"
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

int cmd_serve(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    const char *tokenizer_path = NULL, *tenants_path = NULL, *alias = NULL;
    static const char *lora_names[MAX_LORAS], *lora_paths[MAX_LORAS];
    static char lora_specs[MAX_LORAS][1024];
    int n_loras = 0;
    srv_config cfg = {.host = "127.0.0.1",
                      .port = 8080,
                      .n_parallel = 4,
                      .n_batch = 256,
                      .step_tokens = DEFAULT_STEP_TOKENS,
                      .max_queue = 64,
                      .max_body = 1 << 20,
                      .max_messages = 1024,
                      .shutdown_wait = 30,
                      .ledger_wait = 30,
                      .max_ledger_queue = 10000,
                      .n_workers = 4,
                      .max_waiting = 64,
                      .max_wait = 2,
                      .max_connections = 1000,
                      .max_bodies_bytes = 64LL << 20};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = cli_model_opt(argc, argv, &i, &mo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            fputs(help_more, stdout);
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
        else if (strcmp(a, "--step-tokens") == 0)
            int_opt = &cfg.step_tokens, hi = 1 << 16;
        else if (strcmp(a, "--queue") == 0)
            int_opt = &cfg.max_queue, hi = 1 << 16;
        else if (strcmp(a, "--max-messages") == 0)
            int_opt = &cfg.max_messages;
        else if (strcmp(a, "--shutdown-wait") == 0)
            int_opt = &cfg.shutdown_wait, lo = 0, hi = 3600;
        else if (strcmp(a, "--ledger-wait") == 0)
            int_opt = &cfg.ledger_wait, lo = 0, hi = 3600;
        else if (strcmp(a, "--max-ledger-queue") == 0)
            int_opt = &cfg.max_ledger_queue, lo = 10, hi = 1 << 24;
        else if (strcmp(a, "--workers") == 0)
            int_opt = &cfg.n_workers, hi = 256;
        else if (strcmp(a, "--max-waiting") == 0)
            int_opt = &cfg.max_waiting, hi = 1 << 16;
        else if (strcmp(a, "--max-wait") == 0)
            int_opt = &cfg.max_wait, hi = 3600;
        else if (strcmp(a, "--max-connections") == 0)
            int_opt = &cfg.max_connections, lo = 4, hi = 1 << 16;
        if (int_opt != NULL) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, lo, hi, a, int_opt) != 0) return 1;
            continue;
        }
        const char **str_opt = NULL;
        if (strcmp(a, "--host") == 0)
            str_opt = &cfg.host;
        else if (strcmp(a, "--tenants") == 0)
            str_opt = &tenants_path;
        else if (strcmp(a, "--ledger") == 0)
            str_opt = &cfg.ledger_path;
        else if (strcmp(a, "--alias") == 0)
            str_opt = &alias;
        else if (strcmp(a, "--tokenizer") == 0)
            str_opt = &tokenizer_path;
        else if (strcmp(a, "--metrics-token") == 0)
            str_opt = &cfg.metrics_token;
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
        if (strcmp(a, "--max-bodies") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL) return 1;
            if ((cfg.max_bodies_bytes = parse_size(v)) <= 0)
                return cli_error("--max-bodies: '%s' is not a size such as 64M or 1073741824", v);
            continue;
        }
        if (strcmp(a, "--lora") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL) return 1;
            const char *eq = strchr(v, '=');
            if (eq == NULL || eq == v || eq[1] == '\0' || strlen(v) >= sizeof lora_specs[0])
                return cli_error("--lora: '%.200s' is not NAME=PATH (an adapter's name and its directory)", v);
            if (n_loras == MAX_LORAS) return cli_error("--lora: at most %d adapters at start", MAX_LORAS);
            memcpy(lora_specs[n_loras], v, strlen(v) + 1);
            lora_specs[n_loras][eq - v] = '\0';
            lora_names[n_loras] = lora_specs[n_loras];
            lora_paths[n_loras] = lora_specs[n_loras] + (eq - v) + 1;
            n_loras++;
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
    cfg.n_threads = mo.n_threads;
    cfg.cache_type = mo.cache_type;
    cfg.model_name = alias ? alias : base_name(mo.model);
    cfg.tenants_path = tenants_path;
    if (cfg.metrics_token != NULL && strlen(cfg.metrics_token) < 16)
        return cli_error("--metrics-token: at least 16 characters (it opens /metrics to whoever has it)");
    cfg.lora_names = lora_names;
    cfg.lora_paths = lora_paths;
    cfg.n_loras = n_loras;

    int rc = 1;
    char err[1024];
    bc_model *model = NULL;
    bc_tokenizer *tok = NULL;
    srv_tenant_store *tenants = NULL;
    srv_signals_block(); /* before any thread starts: threads inherit the mask */
    if (tenants_path != NULL && srv_tenant_store_open(&tenants, tenants_path, true, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto cleanup;
    }
    if ((model = cli_load_model(&mo)) == NULL) goto cleanup;
    if (bc_tokenizer_load(tokenizer_path ? tokenizer_path : mo.model, &tok, err, sizeof err) != BC_STATUS_OK) {
        cli_error("%s", err);
        goto cleanup;
    }
    if (srv_run(&cfg, model, tok, tenants, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (tenants != NULL) tenants->ops->close(tenants);
    bc_tokenizer_free(tok);
    bc_model_free(model);
    if (rc == 0) fprintf(stderr, "baichuan serve: stopped\n");
    return rc;
}

/*
 * cmd_logits.c - baichuan logits: the logits of every position of a token
 * sequence, as little-endian float32, n_tokens x n_vocab, row-major.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "usage: baichuan logits -m DIR --tokens \"1 2 3 ...\" -o FILE [options]\n"
                           "\n"
                           "Runs the model over the token ids and writes the logits of every position\n"
                           "to FILE as little-endian float32, n_tokens x n_vocab, row-major.\n"
                           "\n"
                           "options:\n"
                           "      --tokens IDS         token ids separated by spaces or commas\n"
                           "  -o, --output FILE        where to write the logits ('-' for stdout)\n"
                           "  -b, --batch N            tokens per forward pass (default 512)\n";

/* Parses ids separated by spaces/commas into a new array. */
static int parse_tokens(const char *s, int32_t **out, int *n_out) {
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (ids == NULL) return cli_error("out of memory");
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (*p == '\0') break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v > INT32_MAX ||
            (*end != '\0' && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n')) {
            free(ids);
            return cli_error("--tokens: token %zu ('%.*s') is not a non-negative integer", n + 1,
                             (int)strcspn(p, " ,\t\n"), p);
        }
        if (n == cap) {
            int32_t *g = realloc(ids, (cap *= 2) * sizeof *ids);
            if (g == NULL) {
                free(ids);
                return cli_error("out of memory");
            }
            ids = g;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (n == 0) {
        free(ids);
        return cli_error("--tokens: no token ids given");
    }
    *out = ids;
    *n_out = (int)n;
    return 0;
}

int cmd_logits(int argc, char **argv) {
    cli_model_opts o;
    cli_model_opts_init(&o);
    cli_lora_opts lo;
    memset(&lo, 0, sizeof lo);
    const char *tokens_arg = NULL, *out_path = NULL;
    int n_batch = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            fputs(cli_model_opts_help, stdout);
            fputs(cli_lora_opts_help, stdout);
            return 0;
        }
        int r = cli_model_opt(argc, argv, &i, &o);
        if (r == 0) r = cli_lora_opt(argc, argv, &i, &lo);
        if (r < 0) {
            cli_lora_opts_free(&lo);
            return 1;
        }
        if (r > 0) continue;
        if (strcmp(a, "--tokens") == 0) {
            if ((tokens_arg = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if ((out_path = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "-b") == 0 || strcmp(a, "--batch") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 1, 1 << 16, a, &n_batch) != 0) return 1;
        } else {
            return cli_error("logits: unknown option '%s' (see 'baichuan logits --help')", a);
        }
    }
    if (tokens_arg == NULL) return cli_error("logits: --tokens is required");
    if (out_path == NULL) return cli_error("logits: -o FILE is required");

    int32_t *tokens = NULL;
    int n_tokens = 0;
    if (parse_tokens(tokens_arg, &tokens, &n_tokens) != 0) return 1;

    int rc = 1;
    bc_model *model = NULL;
    bc_context *ctx = NULL;
    bc_batch_entry *batch = NULL;
    FILE *out = NULL;
    if ((model = cli_load_model(&o)) == NULL || cli_load_loras(model, &lo) != 0) goto done;
    bc_model_info info;
    bc_model_get_info(model, &info);
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] >= info.n_vocab) {
            cli_error("--tokens: token %d is id %d, outside the vocabulary [0, %d)", i + 1, (int)tokens[i],
                      info.n_vocab);
            goto done;
        }
    if (n_tokens > info.n_ctx_train)
        fprintf(stderr, "baichuan: warning: %d tokens exceed the model's training context of %d\n", n_tokens,
                info.n_ctx_train);

    bc_context_params cp = bc_context_default_params();
    cp.n_ctx = n_tokens;
    cp.n_batch = n_batch < n_tokens ? n_batch : n_tokens;
    cp.n_threads = o.n_threads;
    cp.cache_type = o.cache_type;
    char err[1024];
    if (bc_context_init(model, cp, &ctx, err, sizeof err) != BC_STATUS_OK) {
        cli_error("%s", err);
        goto done;
    }
    if (cli_set_loras(ctx, 0, &lo) != 0) goto done;
    out = strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "wb");
    if (out == NULL) {
        cli_error("%s: cannot open for writing: %s", out_path, strerror(errno));
        goto done;
    }
    batch = malloc((size_t)cp.n_batch * sizeof *batch);
    if (batch == NULL) {
        cli_error("out of memory");
        goto done;
    }
    for (int start = 0; start < n_tokens; start += cp.n_batch) {
        int n = n_tokens - start < cp.n_batch ? n_tokens - start : cp.n_batch;
        for (int i = 0; i < n; i++) batch[i] = (bc_batch_entry){0, start + i, tokens[start + i], true};
        if (bc_context_decode(ctx, batch, n) != BC_STATUS_OK) {
            cli_error("%s", bc_context_error(ctx));
            goto done;
        }
        for (int i = 0; i < n; i++)
            if (fwrite(bc_context_logits(ctx, i), sizeof(float), (size_t)info.n_vocab, out) != (size_t)info.n_vocab) {
                cli_error("%s: write failed: %s", out_path, strerror(errno));
                goto done;
            }
    }
    if (fflush(out) != 0) {
        cli_error("%s: write failed: %s", out_path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (out != NULL && out != stdout && fclose(out) != 0 && rc == 0) rc = cli_error("%s: write failed", out_path);
    free(batch);
    bc_context_free(ctx);
    cli_lora_opts_free(&lo);
    bc_model_free(model);
    free(tokens);
    return rc;
}

/*
 * lora_opts.c - the --lora PATH[:SCALE] option of the commands that run a
 * model (run, chat, logits, perplexity, bench, info, merge): parsing it,
 * loading the adapters with readable errors, and putting them on a
 * sequence. Not shared with serve, whose --lora is NAME=PATH.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const cli_lora_opts_help =
    "      --lora PATH[:SCALE]  apply a PEFT LoRA adapter (its directory: adapter_config.json and\n"
    "                           adapter_model.safetensors or .bin) unmerged, its update times SCALE\n"
    "                           (default 1); repeatable, the updates add up\n";

int cli_lora_opt(int argc, char **argv, int *i, cli_lora_opts *o) {
    if (strcmp(argv[*i], "--lora") != 0) return 0;
    const char *v = cli_value(argc, argv, i);
    if (v == NULL) return -1;
    if (o->n == CLI_MAX_LORAS) {
        cli_error("--lora: at most %d adapters", CLI_MAX_LORAS);
        return -1;
    }
    /* PATH:SCALE when what follows the last ':' is a number; a path may hold ':' itself */
    float scale = 1.0f;
    size_t len = strlen(v);
    const char *colon = strrchr(v, ':');
    if (colon != NULL && colon[1] != '\0') {
        char *end;
        errno = 0;
        double s = strtod(colon + 1, &end);
        if (*end == '\0' && errno == 0) {
            if (!isfinite(s)) {
                cli_error("--lora %s: the scale is not a finite number", v);
                return -1;
            }
            scale = (float)s;
            len = (size_t)(colon - v);
        }
    }
    if (len == 0) {
        cli_error("--lora: no adapter path in '%s'", v);
        return -1;
    }
    o->paths[o->n] = strndup(v, len);
    if (o->paths[o->n] == NULL) {
        cli_error("out of memory");
        return -1;
    }
    o->scales[o->n++] = scale;
    return 1;
}

int cli_load_loras(const bc_model *model, cli_lora_opts *o) {
    for (int k = 0; k < o->n; k++) {
        char err[1024];
        if (bc_lora_load(model, o->paths[k], o->scales[k], &o->loras[k], err, sizeof err) != BC_STATUS_OK)
            return cli_error("%s", err);
    }
    return 0;
}

int cli_set_loras(bc_context *ctx, int seq, const cli_lora_opts *o) {
    if (o->n == 0) return 0;
    if (o->n > BC_MAX_SEQ_LORAS) return cli_error("--lora: at most %d adapters on one sequence", BC_MAX_SEQ_LORAS);
    if (bc_context_seq_set_loras(ctx, seq, (const bc_lora *const *)o->loras, o->n) != BC_STATUS_OK)
        return cli_error("%s", bc_context_error(ctx));
    return 0;
}

void cli_lora_opts_free(cli_lora_opts *o) {
    for (int k = 0; k < o->n; k++) {
        bc_lora_free(o->loras[k]);
        free(o->paths[k]);
    }
    memset(o, 0, sizeof *o);
}

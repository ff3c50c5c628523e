/*
 * args.c - option parsing helpers and model loading for the commands.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("baichuan: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

const char *const cli_model_opts_help =
    "  -m, --model MODEL        Hugging Face model directory (config.json + weights) or GGUF file\n"
    "  -t, --threads N          worker threads (default: all cores)\n"
    "      --pos-encoding P     force the position encoding: rope or alibi (default: from config.json)\n"
    "      --norm-head on|off   force NormHead on or off (default: from config.json)\n"
    "      --no-repack          read quantized weights in place from the file instead of from\n"
    "                           an interleaved copy made at load for the SIMD kernels (slower)\n"
    "  -q, --quantize-at-load T quantize an f32/f16/bf16 model's matrices at load, in memory, exactly as\n"
    "                           'baichuan quantize --type T' would write them (q8_0, q4_0, q4_1, q5_0,\n"
    "                           q5_1, q4_k_m, q5_k_m, q6_k, f16, bf16, f32)\n"
    "      --head-type T        convert the lm_head at load to T (q8_0, q6_k, q5_k, q4_k, q4_0, ..., f16):\n"
    "                           for the 4-bit checkpoints, whose f16 head is 40% of a 7B decode step's\n"
    "                           reads (default: as stored; see README for the logits' change)\n"
    "      --cache-type T       KV cache element type: f16 (default), q8_0 (half of f16's memory)\n"
    "                           or f32 (exact)\n";

void cli_model_opts_init(cli_model_opts *o) {
    memset(o, 0, sizeof *o);
    o->params = bc_model_default_params();
    o->cache_type = BC_DTYPE_F16;
}

int cli_is_help(const char *a) { return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0; }

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_error("option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_parse_int(const char *s, long lo, long hi, const char *opt, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        cli_error("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_model_opt(int argc, char **argv, int *i, cli_model_opts *o) {
    const char *a = argv[*i], *v;
    if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
        if ((v = cli_value(argc, argv, i)) == NULL) return -1;
        o->model = v;
        return 1;
    }
    if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
        if ((v = cli_value(argc, argv, i)) == NULL) return -1;
        return cli_parse_int(v, 1, 1024, a, &o->n_threads) == 0 ? 1 : -1;
    }
    if (strcmp(a, "--cache-type") == 0) {
        if ((v = cli_value(argc, argv, i)) == NULL) return -1;
        if (!bc_cache_type_from_name(v, &o->cache_type)) {
            cli_error("--cache-type: '%s' is not f16, q8_0 or f32", v);
            return -1;
        }
        return 1;
    }
    if (strcmp(a, "--pos-encoding") == 0) {
        if ((v = cli_value(argc, argv, i)) == NULL) return -1;
        if (strcmp(v, "rope") == 0)
            o->params.pos_encoding = BC_POS_ENCODING_ROPE;
        else if (strcmp(v, "alibi") == 0)
            o->params.pos_encoding = BC_POS_ENCODING_ALIBI;
        else {
            cli_error("--pos-encoding: '%s' is not rope or alibi", v);
            return -1;
        }
        return 1;
    }
    if (strcmp(a, "--norm-head") == 0) {
        if ((v = cli_value(argc, argv, i)) == NULL) return -1;
        if (strcmp(v, "on") == 0)
            o->params.norm_head = BC_SWITCH_ON;
        else if (strcmp(v, "off") == 0)
            o->params.norm_head = BC_SWITCH_OFF;
        else {
            cli_error("--norm-head: '%s' is not on or off", v);
            return -1;
        }
        return 1;
    }
    if (strcmp(a, "-q") == 0 || strcmp(a, "--quantize-at-load") == 0) {
        if ((v = cli_value(argc, argv, i)) == NULL) return -1;
        if (!bc_ftype_from_name(v, &o->params.quantize)) {
            cli_error("%s: '%s' is not a type (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m, q6_k, f16, bf16, f32)", a,
                      v);
            return -1;
        }
        return 1;
    }
    if (strcmp(a, "--head-type") == 0) {
        if ((v = cli_value(argc, argv, i)) == NULL) return -1;
        if (!bc_dtype_from_name(v, &o->params.head_type)) {
            cli_error(
                "--head-type: '%s' is not a type (q8_0, q6_k, q5_k, q4_k, q5_1, q5_0, q4_1, q4_0, f16, bf16, f32)", v);
            return -1;
        }
        return 1;
    }
    if (strcmp(a, "--no-repack") == 0) {
        o->params.repack = BC_SWITCH_OFF;
        return 1;
    }
    return 0;
}

bc_model *cli_load_model(const cli_model_opts *o) {
    if (o->model == NULL) {
        cli_error("no model given (use -m DIR)");
        return NULL;
    }
    char err[1024];
    bc_model *model;
    bc_status st = bc_model_load(o->model, o->params, &model, err, sizeof err);
    if (st != BC_STATUS_OK) {
        cli_error("%s", err);
        return NULL;
    }
    return model;
}

const char *cli_default_model(void) {
    const char *env = getenv("BAICHUAN_MODEL");
    return env != NULL && env[0] != '\0' ? env : BC_DEFAULT_MODEL_DIR;
}

char *cli_read_stream(FILE *f, const char *name, size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf != NULL && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n - 1 == 0) {
            char *p = realloc(buf, cap *= 2);
            if (p == NULL) free(buf);
            buf = p;
        }
    }
    int bad = ferror(f);
    if (buf == NULL || bad) {
        free(buf);
        cli_error("%s: %s", name, bad ? "read error" : "out of memory");
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = cli_read_stream(f, path, len);
    fclose(f);
    return buf;
}

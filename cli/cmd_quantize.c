/*
 * cmd_quantize.c - baichuan quantize: a model to a llama.cpp-compatible GGUF.
 */
#include "cli.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char help[] =
    "usage: baichuan quantize IN OUT.gguf --type T [options]\n"
    "\n"
    "Writes the model IN (a Hugging Face directory or a GGUF file) to OUT.gguf as a\n"
    "GGUF v3 file llama.cpp can load: arch baichuan, llama.cpp's tensor names, Q/K/V\n"
    "split and permuted as llama.cpp's converter does, the variant written explicitly\n"
    "(baichuan.position_encoding, baichuan.norm_head), and the vocabulary from\n"
    "IN/tokenizer.model (or the input GGUF). Streams tensor by tensor.\n"
    "\n"
    "options:\n"
    "      --type T             f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m, q6_k\n"
    "      --pos-encoding P     force the position encoding of IN: rope or alibi\n"
    "      --norm-head on|off   force NormHead on or off for IN\n"
    "  -q, --quiet              no progress bar\n";

typedef struct progress {
    bool tty;
    int last_percent;
    const char *type; /* --type, for the note below */
} progress;

/* A 4-bit checkpoint is converted through f32: say so. */
static void say_source(void *user, const bc_model_info *info) {
    const progress *p = user;
    if (info->quantization[0] != '\0')
        fprintf(stderr,
                "note: the input is a 4-bit checkpoint (%s); its weights are dequantized exactly, then quantized "
                "to %s\n",
                info->quantization, p->type);
}

static void show_progress(void *user, uint64_t done, uint64_t total, const char *tensor) {
    progress *p = user;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (!p->tty && pct / 10 == p->last_percent / 10 && done != total) return;
    p->last_percent = pct;
    char bar[31];
    int fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : ' ';
    bar[30] = '\0';
    fprintf(stderr, "%s[%s] %3d%% %-32s%s", p->tty ? "\r" : "", bar, pct, tensor, p->tty ? "" : "\n");
    if (p->tty && done == total) fputc('\n', stderr);
    fflush(stderr);
}

int cmd_quantize(int argc, char **argv) {
    cli_model_opts o;
    cli_model_opts_init(&o);
    const char *in = NULL, *out = NULL, *type = NULL;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(help, stdout);
            return 0;
        }
        if (strcmp(a, "--type") == 0) {
            if ((type = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(a, "--pos-encoding") == 0 || strcmp(a, "--norm-head") == 0 || strcmp(a, "-m") == 0 ||
                   strcmp(a, "--model") == 0) {
            int r = cli_model_opt(argc, argv, &i, &o);
            if (r < 0) return 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_error("quantize: unknown option '%s' (see 'baichuan quantize --help')", a);
        } else if (in == NULL) {
            in = a;
        } else if (out == NULL) {
            out = a;
        } else {
            return cli_error("quantize: unexpected argument '%s' (see 'baichuan quantize --help')", a);
        }
    }
    if (in == NULL && o.model != NULL) in = o.model;
    if (in == NULL || out == NULL) return cli_error("quantize: IN and OUT.gguf are required");
    if (type == NULL) return cli_error("quantize: --type is required");
    bc_quantize_params qp = bc_quantize_default_params();
    if (!bc_ftype_from_name(type, &qp.ftype))
        return cli_error("--type: '%s' is not one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m, "
                         "q6_k",
                         type);
    qp.model = o.params;
    progress pr = {isatty(2) != 0, -100, type};
    if (!quiet) qp.progress = show_progress;
    qp.progress_user = &pr;
    qp.loaded = say_source;
    char err[1024];
    struct stat st;
    char sp[4096];
    snprintf(sp, sizeof sp, "%s/tokenizer.model", in);
    bool no_vocab = stat(in, &st) == 0 && S_ISDIR(st.st_mode) && stat(sp, &st) != 0;
    if (bc_model_quantize(in, out, qp, err, sizeof err) != BC_STATUS_OK) {
        if (pr.tty && pr.last_percent >= 0) fputc('\n', stderr);
        return cli_error("%s", err);
    }
    if (!quiet) fprintf(stderr, "wrote %s (%s)\n", out, bc_ftype_name(qp.ftype));
    if (no_vocab)
        fprintf(stderr,
                "baichuan: warning: %s has no tokenizer.model: %s has no vocabulary (tokenizer.ggml.*), which "
                "llama.cpp needs to load it\n",
                in, out);
    return 0;
}

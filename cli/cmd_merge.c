/*
 * cmd_merge.c - baichuan merge: a base model with LoRA adapters merged into
 * its weights, written as a Hugging Face directory (safetensors) or a GGUF.
 */
#include "cli.h"

#include <string.h>

static const char help[] =
    "usage: baichuan merge -m BASE --lora PATH[:SCALE] [--lora ...] -o OUT [--type T]\n"
    "\n"
    "Merges PEFT LoRA adapters into the weights of BASE (W + scale * B A per adapted\n"
    "matrix, in double, rounded once per adapter) and writes the result:\n"
    "  OUT ending in .gguf: a llama.cpp-compatible GGUF of type T (default f16), as\n"
    "                       'baichuan quantize' writes it (BASE may be a GGUF)\n"
    "  otherwise:           a Hugging Face directory OUT of type T (f32, f16 or bf16;\n"
    "                       default bf16): config.json with the variant written out,\n"
    "                       tokenizer files copied, model.safetensors (BASE must be a\n"
    "                       Hugging Face directory)\n"
    "\n"
    "options:\n"
    "  -m, --model BASE         the base model\n"
    "      --lora PATH[:SCALE]  an adapter directory, its update times SCALE (default 1); repeatable\n"
    "  -o, --output OUT         where to write\n"
    "      --type T             f32, f16, bf16 (either output), q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m,\n"
    "                           q5_k_m, q6_k (GGUF)\n"
    "      --pos-encoding P     force the position encoding of BASE: rope or alibi\n"
    "      --norm-head on|off   force NormHead on or off for BASE\n";

int cmd_merge(int argc, char **argv) {
    cli_model_opts o;
    cli_model_opts_init(&o);
    cli_lora_opts lo;
    memset(&lo, 0, sizeof lo);
    const char *out = NULL, *type = NULL;
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(help, stdout);
            rc = 0;
            goto done;
        }
        int r = 0;
        if (strcmp(a, "--pos-encoding") == 0 || strcmp(a, "--norm-head") == 0 || strcmp(a, "-m") == 0 ||
            strcmp(a, "--model") == 0)
            r = cli_model_opt(argc, argv, &i, &o);
        else
            r = cli_lora_opt(argc, argv, &i, &lo);
        if (r < 0) goto done;
        if (r > 0) continue;
        if (strcmp(a, "--type") == 0) {
            if ((type = cli_value(argc, argv, &i)) == NULL) goto done;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if ((out = cli_value(argc, argv, &i)) == NULL) goto done;
        } else {
            cli_error("merge: unknown option '%s' (see 'baichuan merge --help')", a);
            goto done;
        }
    }
    if (o.model == NULL || out == NULL || lo.n == 0) {
        cli_error("merge: -m BASE, --lora PATH and -o OUT are required");
        goto done;
    }
    size_t n = strlen(out);
    bool gguf = n > 5 && strcmp(out + n - 5, ".gguf") == 0;
    bc_quantize_params qp = bc_quantize_default_params();
    qp.ftype = gguf ? BC_FTYPE_F16 : BC_FTYPE_BF16;
    if (type != NULL && !bc_ftype_from_name(type, &qp.ftype)) {
        cli_error("--type: '%s' is not one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m, q6_k",
                  type);
        goto done;
    }
    qp.model = o.params;
    qp.lora_paths = (const char *const *)lo.paths;
    qp.lora_scales = lo.scales;
    qp.n_loras = lo.n;
    char err[1024];
    bc_status st = gguf ? bc_model_quantize(o.model, out, qp, err, sizeof err)
                        : bc_model_write_hf(o.model, out, qp, err, sizeof err);
    if (st != BC_STATUS_OK) {
        cli_error("%s", err);
        goto done;
    }
    fprintf(stderr, "wrote %s (%s, %d adapter%s merged)\n", out, bc_ftype_name(qp.ftype), lo.n, lo.n == 1 ? "" : "s");
    rc = 0;
done:
    cli_lora_opts_free(&lo);
    return rc;
}

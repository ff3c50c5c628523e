/*
 * cmd_info.c - baichuan info: what a model is and what it needs.
 */
#include "cli.h"

#include <string.h>
#include <unistd.h>

static const char help[] = "usage: baichuan info -m DIR [options]\n"
                           "\n"
                           "Prints the detected variant, shapes, dtypes, file format, parameter count,\n"
                           "and the memory the model needs; with --lora, each adapter and what it costs.\n"
                           "\n"
                           "options:\n";

/* Resident set size of this process (/proc/self/statm), 0 if unknown. */
static uint64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (f == NULL) return 0;
    int ok = fscanf(f, "%llu %llu", &size, &resident) == 2;
    fclose(f);
    return ok ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static double gib(uint64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

int cmd_info(int argc, char **argv) {
    cli_model_opts o;
    cli_model_opts_init(&o);
    cli_lora_opts lo;
    memset(&lo, 0, sizeof lo);
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(help, stdout);
            fputs(cli_model_opts_help, stdout);
            fputs(cli_lora_opts_help, stdout);
            return 0;
        }
        int r = cli_model_opt(argc, argv, &i, &o);
        if (r == 0) r = cli_lora_opt(argc, argv, &i, &lo);
        if (r == 0) cli_error("info: unknown option '%s' (see 'baichuan info --help')", argv[i]);
        if (r <= 0) {
            cli_lora_opts_free(&lo);
            return 1;
        }
    }
    bc_model *model = cli_load_model(&o);
    if (model == NULL) {
        cli_lora_opts_free(&lo);
        return 1;
    }
    /* The adapters' cost, measured: resident memory before and after. */
    const uint64_t rss_before = rss_bytes();
    if (cli_load_loras(model, &lo) != 0) {
        cli_lora_opts_free(&lo);
        bc_model_free(model);
        return 1;
    }
    const uint64_t rss_after = rss_bytes();

    bc_model_info in;
    bc_model_get_info(model, &in);
    char dtypes[128] = "";
    for (int d = 0; d < BC_DTYPE_COUNT; d++) {
        if (in.dtype_counts[d] == 0) continue;
        size_t k = strlen(dtypes);
        snprintf(dtypes + k, sizeof dtypes - k, "%s%s x%d", k ? ", " : "", bc_dtype_name((bc_dtype)d),
                 in.dtype_counts[d]);
    }
    bc_context_params cp = bc_context_default_params();
    cp.cache_type = o.cache_type;
    uint64_t ctx_bytes = bc_model_context_bytes(model, cp);

    printf("model:          %s\n", in.path);
    printf("architecture:   %s\n", in.architecture[0] ? in.architecture : "(none)");
    printf("variant:        %s\n", in.variant);
    printf("position:       %s (%s)\n", bc_pos_encoding_name(in.pos_encoding),
           in.pos_encoding_explicit ? "explicit" : "detected");
    printf("norm head:      %s (%s)\n", in.norm_head ? "on" : "off", in.norm_head_explicit ? "explicit" : "detected");
    printf("format:         %s, %d file%s\n", bc_file_format_name(in.file_format), in.n_files,
           in.n_files == 1 ? "" : "s");
    printf("dtypes:         %s\n", dtypes);
    printf("n_vocab:        %d\n", in.n_vocab);
    printf("n_embd:         %d\n", in.n_embd);
    printf("n_ff:           %d\n", in.n_ff);
    printf("n_layer:        %d\n", in.n_layer);
    printf("n_head:         %d (head_dim %d)\n", in.n_head, in.head_dim);
    printf("n_ctx_train:    %d\n", in.n_ctx_train);
    printf("norm_eps:       %g\n", (double)in.norm_eps);
    if (in.pos_encoding == BC_POS_ENCODING_ROPE) printf("rope_theta:     %g\n", (double)in.rope_theta);
    printf("tokens:         bos %d, eos %d, pad %d\n", in.bos_token_id, in.eos_token_id, in.pad_token_id);
    printf("parameters:     %lld (%.3f B)\n", (long long)in.n_params, (double)in.n_params / 1e9);
    printf("ignored:        %d tensor%s in the files not used by the model\n", in.n_ignored_tensors,
           in.n_ignored_tensors == 1 ? "" : "s");
    printf("weights:        %.3f GiB, mapped from the files (shared page cache, not copied)\n", gib(in.weight_bytes));
    const uint64_t per_pos = bc_model_kv_bytes_per_position(model, o.cache_type);
    printf("KV cache:       %.1f KiB per position (%s: 2 x %d layers x %d values x %.4g bytes); a pool of N "
           "positions takes N x that\n",
           (double)per_pos / 1024, bc_dtype_name(o.cache_type), in.n_layer, in.n_embd,
           (double)per_pos / (2.0 * in.n_layer * in.n_embd));
    printf("context:        %.3f GiB for n_ctx %d, 1 sequence, batch 512 (KV pool + scratch)\n", gib(ctx_bytes),
           in.n_ctx_train);
    if (in.quantization[0] != '\0') {
        printf("quantization:   %s: %d matrices", in.quantization, in.n_converted);
        /* Matrices that got a repacked copy freed their converted one. */
        if (in.converted_bytes > 0) printf(", %.3f GiB of heap copies", gib(in.converted_bytes));
        if (in.repacked_bytes > 0) printf("%s held in the repacked copy", in.converted_bytes > 0 ? ", the rest" : ",");
        printf("\n");
    }
    if (in.quantized_at_load != BC_FTYPE_COUNT)
        printf("quantized:      at load as %s: %d matrices, %.3f GiB of heap copies\n",
               bc_ftype_name(in.quantized_at_load), in.n_quantized, gib(in.quantized_bytes));
    printf("kernels:        %s (the instruction-set level detected on this CPU)\n", bc_kernel_level());
    if (in.repacked_bytes > 0)
        printf("repacked:       %.3f GiB, interleaved copies of the quantized matrices for this CPU's kernels "
               "(--no-repack: none)\n",
               gib(in.repacked_bytes));
    if (in.released_bytes > 0)
        printf("released:       %.3f GiB of mapped pages the copies above replace\n", gib(in.released_bytes));
    uint64_t lora_bytes = 0;
    for (int k = 0; k < lo.n; k++) {
        bc_lora_info li;
        bc_lora_get_info(lo.loras[k], &li);
        lora_bytes += li.bytes;
        static const char *const mod_names[] = {"W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"};
        char mods[96] = "";
        for (size_t m = 0, n = 0; m < sizeof mod_names / sizeof mod_names[0]; m++)
            if (li.modules & (1u << m))
                n += (size_t)snprintf(mods + n, sizeof mods - n, "%s%s", n ? "," : "", mod_names[m]);
        printf("lora:           %s: r %d, alpha %g%s, scale %g, %s, %d matrices, %s, %.2f MiB\n", li.path, li.rank,
               (double)li.alpha, li.rslora ? " (rslora)" : "", (double)li.scale, mods, li.n_matrices,
               bc_dtype_name(li.dtype), (double)li.bytes / (1 << 20));
    }
    if (lo.n > 0)
        printf("lora total:     %d adapter%s, %.3f GiB; resident memory %.3f -> %.3f GiB while loading them (+%.3f "
               "GiB)\n",
               lo.n, lo.n == 1 ? "" : "s", gib(lora_bytes), gib(rss_before), gib(rss_after),
               gib(rss_after > rss_before ? rss_after - rss_before : 0));
    printf("memory total:   %.3f GiB\n", gib(in.weight_bytes - in.released_bytes + in.quantized_bytes +
                                             in.converted_bytes + in.repacked_bytes + ctx_bytes + lora_bytes));

    cli_lora_opts_free(&lo);
    bc_model_free(model);
    return 0;
}

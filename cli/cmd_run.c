/*
 * cmd_run.c - baichuan run: plain text completion, streamed to stdout.
 */
#include "generate.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "usage: baichuan run [-m DIR] (-p TEXT | -f FILE) [-n N] [options]\n"
                           "\n"
                           "Continues the prompt (encoded as it is: no chat format, no BOS unless the\n"
                           "tokenizer config asks) and prints only the generated text to stdout as it\n"
                           "is produced. Timing figures go to stderr. Without -m, the embedded default\n"
                           "model is used.\n"
                           "\n"
                           "options:\n"
                           "  -p, --prompt TEXT        the prompt\n"
                           "  -f, --file FILE          read the prompt from FILE\n"
                           "  -n, --n-predict N        most tokens to generate (default 128)\n";

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

int cmd_run(int argc, char **argv) {
    cli_gen_opts o;
    cli_gen_opts_init(&o);
    const char *prompt = NULL, *prompt_file = NULL;
    int n_predict = 128;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            fputs(cli_model_opts_help, stdout);
            fputs(cli_gen_opts_help, stdout);
            return 0;
        }
        int r = cli_gen_opt(argc, argv, &i, &o);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) {
            if ((prompt = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            if ((prompt_file = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-predict") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 0, 1 << 24, a, &n_predict) != 0) return 1;
        } else {
            return cli_error("run: unknown option '%s' (see 'baichuan run --help')", a);
        }
    }
    if ((prompt == NULL) == (prompt_file == NULL)) return cli_error("run: give the prompt with -p TEXT or -f FILE");
    if (o.model.model == NULL) o.model.model = cli_default_model();

    char *file_text = NULL;
    size_t prompt_len = prompt ? strlen(prompt) : 0;
    if (prompt_file != NULL && (prompt = file_text = cli_read_file(prompt_file, &prompt_len)) == NULL) return 1;

    int rc = 1;
    int32_t *ids = NULL;
    cli_gen g;
    if (cli_gen_init(&g, &o) != 0) goto done;

    size_t n_ids = 0;
    bc_status st = bc_tokenizer_encode(g.tok, prompt, prompt_len, BC_SWITCH_AUTO, BC_SWITCH_OFF, NULL, 0, &n_ids);
    if (st != BC_STATUS_OK && st != BC_STATUS_ERROR_ARGUMENT) {
        cli_error("encoding the prompt: %s", bc_status_name(st));
        goto done;
    }
    ids = malloc((n_ids ? n_ids : 1) * sizeof *ids);
    if (ids == NULL || bc_tokenizer_encode(g.tok, prompt, prompt_len, BC_SWITCH_AUTO, BC_SWITCH_OFF, ids, n_ids,
                                           &n_ids) != BC_STATUS_OK) {
        cli_error("encoding the prompt failed");
        goto done;
    }
    if (n_ids == 0) {
        cli_error("the prompt encodes to no tokens: nothing to continue from");
        goto done;
    }
    int n_ctx = bc_context_n_ctx(g.ctx);
    if ((long)n_ids + n_predict > n_ctx) {
        cli_error("the prompt (%zu tokens) plus -n %d exceeds the context of %d tokens (lower -n, shorten the "
                  "prompt, or raise -c up to the model's %d)",
                  n_ids, n_predict, n_ctx, g.info.n_ctx_train);
        goto done;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);

    cli_finish finish;
    if (cli_gen_run(&g, ids, (int)n_ids, n_predict, stdout, NULL, &interrupted, &finish) != 0) goto done;
    fputc('\n', stdout);
    fflush(stdout);
    static const char *const why[] = {"end of text", "stop string", "token limit", "interrupted"};
    fprintf(stderr,
            "\nprompt: %d tokens in %.2f s (%.1f tokens/s); generation: %d tokens in %.2f s (%.1f tokens/s); %s\n",
            g.n_prompt, g.t_prompt, g.t_prompt > 0 ? g.n_prompt / g.t_prompt : 0.0, g.n_generated, g.t_generate,
            g.t_generate > 0 ? g.n_generated / g.t_generate : 0.0, why[finish]);
    rc = 0;
done:
    cli_gen_free(&g);
    free(ids);
    free(file_text);
    return rc;
}

/*
 * generate.h - one sequence of text generation for the CLI (run, chat):
 * feed the input ids (reusing what the KV cache already holds), then step
 * the library's bc_generator (sampling, detokenizing, stop strings, the
 * limit) on each row of logits and print its text as it comes, until eos,
 * a stop string, the token limit or Ctrl-C.
 */
#ifndef BC_CLI_GENERATE_H
#define BC_CLI_GENERATE_H

#include "cli.h"

#include <signal.h>

/* Options shared by run and chat. */
typedef struct cli_gen_opts {
    cli_model_opts model;
    bc_sampler_params sampler; /* from generation_config.json, then flags */
    bool set_temp, set_top_k, set_top_p, set_min_p, set_penalty, set_seed;
    int n_ctx;             /* -c; 0 = the model's training context */
    int n_batch;           /* -b; default 512 */
    const char *stops[16]; /* --stop, in order */
    size_t n_stops;
    /* The output constraint: at most one of --json-schema FILE,
     * --grammar-file FILE.gbnf, --json (any JSON object). */
    const char *constraint_opt;  /* the option given, for errors; NULL: none */
    const char *constraint_file; /* its file (NULL for --json) */
    const char *constraint_gbnf; /* or GBNF text given by the command (chat --tools), with constraint_opt */
    cli_lora_opts lora;          /* --lora, put on the one sequence; owned (freed by cli_gen_free) */
} cli_gen_opts;

void cli_gen_opts_init(cli_gen_opts *o);

/* Consumes a sampling/context option or a model option (1), not one (0), or
 * an error already printed (-1). */
int cli_gen_opt(int argc, char **argv, int *i, cli_gen_opts *o);

extern const char *const cli_gen_opts_help;

typedef enum cli_finish {
    CLI_FINISH_EOS,         /* the model ended its text */
    CLI_FINISH_STOP,        /* a stop string */
    CLI_FINISH_LENGTH,      /* the token limit */
    CLI_FINISH_INTERRUPTED, /* Ctrl-C */
} cli_finish;

typedef struct cli_gen {
    bc_model *model;
    bc_tokenizer *tok;
    bc_context *ctx;
    bc_grammar *grammar; /* the output constraint, or NULL */
    bc_generator *gen;   /* sampling, the constraint's matcher, detokenizing, stop strings */
    bc_model_info info;
    cli_lora_opts *lora; /* the options' adapters, loaded for model */
    int32_t *cached;     /* (n_ctx) the ids whose keys and values are cached */
    int n_cached;
    bc_batch_entry *batch; /* (n_batch) */

    /* Figures of the last cli_gen_run. */
    int n_reused; /* input ids found in the cache */
    int n_prompt; /* input ids run through the model */
    int n_generated;
    double t_prompt, t_generate; /* seconds */
} cli_gen;

/* Loads model, tokenizer and context; prints errors. 0 or 1. */
int cli_gen_init(cli_gen *g, cli_gen_opts *o);
void cli_gen_free(cli_gen *g);

/* Runs input (n_input ids) and generates at most n_max tokens, writing the
 * text to out as it comes and appending it to *reply if reply is not NULL
 * (a malloc'd string the caller frees). interrupted is polled between
 * tokens. Returns 0 (with *finish set) or 1 after printing an error. */
int cli_gen_run(cli_gen *g, const int32_t *input, int n_input, int n_max, FILE *out, char **reply,
                volatile sig_atomic_t *interrupted, cli_finish *finish);

/* Seconds on a monotonic clock. */
double cli_now(void);

#endif /* BC_CLI_GENERATE_H */

/*
 * cli.h - shared pieces of the baichuan command-line program. The program
 * uses the engine only through baichuan.h, like any outside user.
 */
#ifndef BC_CLI_H
#define BC_CLI_H

#include "baichuan.h"

#include <stdio.h>

#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Prints "baichuan: error: ..." to stderr; returns 1 (the exit status). */
int cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);

/* Options every model-loading command takes. */
typedef struct cli_model_opts {
    const char *model;      /* -m, --model */
    int n_threads;          /* -t, --threads; 0 = all cores */
    bc_model_params params; /* --pos-encoding, --norm-head, --no-repack */
    bc_dtype cache_type;    /* --cache-type: the KV cache's element type (default f16) */
} cli_model_opts;

void cli_model_opts_init(cli_model_opts *o);

/* If argv[*i] is a model option, consumes it (and its value) and returns 1;
 * returns 0 if it is not one, -1 after printing an error. */
int cli_model_opt(int argc, char **argv, int *i, cli_model_opts *o);

/* Help text for the model options, for the commands' --help. */
extern const char *const cli_model_opts_help;

/* The value after option argv[*i]; advances *i. NULL after printing an error. */
const char *cli_value(int argc, char **argv, int *i);

/* Parses an integer in [lo, hi]; -1 after printing an error naming opt. */
int cli_parse_int(const char *s, long lo, long hi, const char *opt, int *out);

int cli_is_help(const char *a);

/* A whole file as a NUL-terminated malloc'd buffer of *len bytes; NULL after
 * printing an error naming the file. */
char *cli_read_file(const char *path, size_t *len);

/* The same for an open stream (stdin); name is used in the error. */
char *cli_read_stream(FILE *f, const char *name, size_t *len);

/* The chat-template command's input (chat_input.c): a JSON array of
 * {"role": "system"|"user"|"assistant", "content": "..."} into *out
 * (malloc'd, *n_out messages whose text points into root). 0, or 1 after
 * printing an error naming the message and field. */
struct json_t;
int cli_parse_conversation(struct json_t *root, bc_chat_message **out, size_t *n_out);

/* --lora PATH[:SCALE] (lora_opts.c), repeatable. */
#define CLI_MAX_LORAS 128
typedef struct cli_lora_opts {
    int n;
    char *paths[CLI_MAX_LORAS];
    float scales[CLI_MAX_LORAS];
    bc_lora *loras[CLI_MAX_LORAS]; /* loaded by cli_load_loras */
} cli_lora_opts;

extern const char *const cli_lora_opts_help;
/* If argv[*i] is --lora, consumes it and its value and returns 1; 0 if it is
 * not; -1 after printing an error. Zero-initialize o first. */
int cli_lora_opt(int argc, char **argv, int *i, cli_lora_opts *o);
/* Loads o's adapters for model; 0, or 1 after printing the error. */
int cli_load_loras(const bc_model *model, cli_lora_opts *o);
/* Puts all of o's adapters (at most BC_MAX_SEQ_LORAS) on sequence seq; 0,
 * or 1 after printing the error. No-op without adapters. */
int cli_set_loras(bc_context *ctx, int seq, const cli_lora_opts *o);
void cli_lora_opts_free(cli_lora_opts *o);

/* Loads the model named by o; prints the error and returns NULL on failure. */
bc_model *cli_load_model(const cli_model_opts *o);

int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_grammar(int argc, char **argv);
/* The server's commands (their work is in server/) */
int cmd_serve(int argc, char **argv);
int cmd_usage(int argc, char **argv);
int cmd_tenants(int argc, char **argv);

/* The model used when a command that generates gets no -m: $BAICHUAN_MODEL,
 * else the embedded default model (models/default of the source tree). */
const char *cli_default_model(void);

#endif /* BC_CLI_H */

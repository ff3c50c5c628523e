/*
 * main.c - the baichuan command-line program: dispatch to a command.
 */
#include "cli.h"

#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "describe a model: variant, shapes, dtypes, files, memory"},
    {"logits", cmd_logits, "write the logits of every position of a token sequence"},
    {"tokenize", cmd_tokenize, "text on stdin to token ids (tokenizer.model only, no weights)"},
    {"detokenize", cmd_detokenize, "token ids on stdin back to text"},
    {"chat-template", cmd_chat_template, "a JSON conversation on stdin to the Chat model's input ids"},
    {"run", cmd_run, "continue a prompt: plain text completion, streamed"},
    {"chat", cmd_chat, "interactive multi-turn chat in the Baichuan chat format"},
    {"quantize", cmd_quantize, "write a model as a llama.cpp-compatible GGUF (f16, bf16, q8_0, q4_k_m, ...)"},
    {"merge", cmd_merge, "merge LoRA adapters into a model: a safetensors directory or a GGUF"},
    {"bench", cmd_bench, "prompt and generation speed in tokens/s (like llama-bench)"},
    {"perplexity", cmd_perplexity, "perplexity of a text, and KL divergence from a base model (like llama-perplexity)"},
    {"grammar", cmd_grammar, "a JSON Schema's GBNF grammar, and whether a text on stdin matches a grammar"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching, tenants, ledger"},
    {"usage", cmd_usage, "per-tenant totals from a serve --ledger database"},
    {"tenants", cmd_tenants, "add tenants, create and revoke keys, list them (JSON file or PostgreSQL)"},
};

static void usage(FILE *f) {
    fputs("usage: baichuan COMMAND [options]\n\ncommands:\n", f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fputs("\n'baichuan COMMAND --help' describes a command's options.\n", f);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    cli_error("unknown command '%s' (see 'baichuan --help')", argv[1]);
    return 1;
}

/*
 * fuzz_chat.c - libFuzzer target for the chat template's input: the input
 * is what `baichuan chat-template` reads on stdin (a JSON array of
 * messages), read by the command's own parser and encoded with
 * bc_chat_encode against the tokenizer tests/data/tiny_bpe.model (or the
 * file named by BC_FUZZ_MODEL). Sizing then filling must agree.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_chat CORPUS_DIR fuzz/seeds/fuzz_chat
 */
#include "baichuan.h"
#include "cli.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BC_SOURCE_DIR
#define BC_SOURCE_DIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bc_tokenizer *tok;

/* The command's parser reports through cli_error (cli/args.c, which needs the
 * whole program); here its message is kept, and must not be empty. */
static char last_error[1024];

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    if (last_error[0] == '\0') abort();
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (tok == NULL) {
        const char *path = getenv("BC_FUZZ_MODEL");
        char err[1024];
        if (bc_tokenizer_load(path ? path : BC_SOURCE_DIR "/tests/data/tiny_bpe.model", &tok, err, sizeof err) !=
            BC_STATUS_OK) {
            fprintf(stderr, "%s\n", err);
            abort();
        }
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &jerr);
    if (root == NULL) return 0;
    bc_chat_message *messages;
    size_t n_messages;
    if (cli_parse_conversation(root, &messages, &n_messages) == 0) {
        bc_chat_params params = bc_chat_default_params(tok);
        params.max_new_tokens = (int)(size % 64); /* a small budget, so truncation runs too */
        char err[1024] = "";
        size_t n_ids = 0, n_filled = 0;
        bc_status st = bc_chat_encode(tok, messages, n_messages, params, NULL, 0, &n_ids, err, sizeof err);
        if (st == BC_STATUS_ERROR_ARGUMENT && n_ids > 0) {
            int32_t *ids = malloc(n_ids * sizeof *ids);
            if (ids != NULL) {
                st = bc_chat_encode(tok, messages, n_messages, params, ids, n_ids, &n_filled, err, sizeof err);
                if (st != BC_STATUS_OK || n_filled != n_ids) abort(); /* the size it asked for is enough */
                free(ids);
            }
        } else if (st != BC_STATUS_OK && err[0] == '\0') {
            abort();
        }
        free(messages);
    }
    json_decref(root);
    return 0;
}

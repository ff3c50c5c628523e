/*
 * fuzz_openai.c - libFuzzer target for the server's request parser: the
 * first byte selects the endpoint (even: /v1/completions, odd:
 * /v1/chat/completions), the rest is the request body, read as the HTTP
 * layer reads it and handed to srv_openai_parse with the model and
 * model tests/data/tiny.gguf and tokenizer tests/data/tiny_bpe.model (or
 * the files named by BC_FUZZ_MODEL and BC_FUZZ_TOKENIZER).
 * A request that parses must fit the context it was checked against.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_openai CORPUS_DIR fuzz/seeds/fuzz_openai
 */
#include "openai.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BC_SOURCE_DIR
#define BC_SOURCE_DIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static srv_model_info mi;

static void load(void) {
    const char *path = getenv("BC_FUZZ_MODEL"), *tok_path = getenv("BC_FUZZ_TOKENIZER");
    if (path == NULL) path = BC_SOURCE_DIR "/tests/data/tiny.gguf";
    if (tok_path == NULL) tok_path = BC_SOURCE_DIR "/tests/data/tiny_bpe.model";
    bc_model *model;
    bc_tokenizer *tok;
    char err[1024];
    if (bc_model_load(path, bc_model_default_params(), &model, err, sizeof err) != BC_STATUS_OK ||
        bc_tokenizer_load(tok_path, &tok, err, sizeof err) != BC_STATUS_OK) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    bc_model_info info;
    bc_model_get_info(model, &info);
    bc_tokenizer_info ti;
    bc_tokenizer_get_info(tok, &ti);
    mi.name = "tiny";
    mi.model = model;
    mi.tok = tok;
    mi.defaults = bc_model_sampler_params(model);
    mi.chat = bc_chat_default_params(tok);
    mi.n_vocab = ti.n_vocab < info.n_vocab ? ti.n_vocab : info.n_vocab;
    mi.n_ctx = 256;
    mi.max_messages = 32;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (mi.model == NULL) load();
    srv_endpoint endpoint = data[0] % 2 ? SRV_ENDPOINT_CHAT : SRV_ENDPOINT_COMPLETIONS;
    json_error_t je;
    json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &je);
    if (body == NULL) return 0;
    srv_error e;
    srv_request *r = srv_openai_parse(&mi, endpoint, body, &e);
    if (r != NULL) {
        if (r->n_prompt < 1 || r->max_tokens < 1 || r->n_prompt + r->max_tokens > mi.n_ctx) abort();
        if (r->out.len != 0 || r->done) abort(); /* the parser never publishes output */
        for (int i = 0; i < r->n_prompt; i++)
            if (r->prompt[i] < 0 || r->prompt[i] >= mi.n_vocab) abort(); /* the forward pass would refuse it */
        srv_request_unref(r);
    } else if (e.message[0] == '\0' || e.status < 400) {
        abort(); /* every refusal explains itself */
    }
    json_decref(body);
    return 0;
}

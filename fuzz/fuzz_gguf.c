/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader, the model built from
 * it and the tokenizer read from its vocabulary: the input is the file.
 * Whatever loads must run one forward pass, or encode and decode a text.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_gguf -max_len=65536 CORPUS_DIR tests/data/tiny.gguf
 */
#include "baichuan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The reader maps files: hand it the input as one. */
    char path[] = "/tmp/fuzz_gguf_XXXXXX.gguf";
    int fd = mkstemps(path, 5);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    bc_model *model;
    char err[1024];
    if (off == size && bc_model_load(path, bc_model_default_params(), &model, err, sizeof err) == BC_STATUS_OK) {
        bc_model_info info;
        bc_model_get_info(model, &info);
        bc_context_params cp = bc_context_default_params();
        cp.n_ctx = 4;
        cp.n_batch = 2;
        cp.n_threads = 1;
        bc_context *ctx;
        if (info.n_embd <= 4096 && info.n_layer <= 64 &&
            bc_context_init(model, cp, &ctx, err, sizeof err) == BC_STATUS_OK) {
            bc_batch_entry b[2] = {{0, 0, 1 % info.n_vocab, true}, {0, 1, 0, true}};
            bc_context_decode(ctx, b, 2);
            bc_context_free(ctx);
        }
        bc_model_free(model);
    }
    /* The vocabulary, read by the tokenizer on its own. */
    bc_tokenizer *tok;
    if (off == size && bc_tokenizer_load(path, &tok, err, sizeof err) == BC_STATUS_OK) {
        static const char text[] = "Hello \xe4\xbd\xa0\xe5\xa5\xbd 123 \xff!";
        int32_t ids[64];
        size_t n_ids = 0, n_text;
        char out[512];
        if (bc_tokenizer_encode(tok, text, sizeof text - 1, BC_SWITCH_AUTO, BC_SWITCH_AUTO, ids, 64, &n_ids) ==
            BC_STATUS_OK)
            bc_tokenizer_decode(tok, ids, n_ids, out, sizeof out, &n_text);
        bc_tokenizer_free(tok);
    }
    unlink(path);
    return 0;
}

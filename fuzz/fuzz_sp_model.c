/*
 * fuzz_sp_model.c - libFuzzer target for the tokenizer.model reader: the
 * input is the model file. Whatever loads must encode and decode a fixed
 * text (and the input itself, as text) without fault, and the streaming
 * detokenizer must agree with the whole decode.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_sp_model -max_len=65536 CORPUS_DIR tests/data/tiny_bpe.model
 */
#include "tokenizer/load.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(const bc_tokenizer *tok, const char *text, size_t len) {
    size_t n;
    if (bc_tokenizer_encode(tok, text, len, BC_SWITCH_OFF, BC_SWITCH_OFF, NULL, 0, &n) == BC_STATUS_ERROR_MEMORY)
        return;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (ids == NULL) return;
    if (bc_tokenizer_encode(tok, text, len, BC_SWITCH_OFF, BC_SWITCH_OFF, ids, n, &n) != BC_STATUS_OK) abort();
    size_t text_len;
    bc_tokenizer_decode(tok, ids, n, NULL, 0, &text_len);
    char *whole = malloc(text_len + 1);
    if (whole != NULL && bc_tokenizer_decode(tok, ids, n, whole, text_len + 1, &text_len) != BC_STATUS_OK) abort();
    bc_detokenizer *d;
    if (whole != NULL && bc_detokenizer_init(tok, &d) == BC_STATUS_OK) {
        size_t pos = 0;
        for (size_t i = 0; i <= n; i++) {
            const char *chunk;
            size_t chunk_len;
            if ((i < n ? bc_detokenizer_push(d, ids[i], &chunk, &chunk_len)
                       : bc_detokenizer_flush(d, &chunk, &chunk_len)) != BC_STATUS_OK)
                abort();
            if (pos + chunk_len > text_len || memcmp(whole + pos, chunk, chunk_len) != 0) abort();
            pos += chunk_len;
        }
        if (pos != text_len) abort();
        bc_detokenizer_free(d);
    }
    free(whole);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bc__err err = {BC_STATUS_OK, ""};
    bc_tokenizer *tok;
    if (bc__tokenizer_from_bytes(data, size, "fuzz.model", &tok, &err) != 0) {
        if (err.msg[0] == '\0') abort(); /* every refusal explains itself */
        return 0;
    }
    static const char text[] = "Hello  world\t42 \xe4\xbd\xa0\xe5\xa5\xbd <s> \xff\xe4\xb8 \xf0\x9f\x98\x80";
    exercise(tok, text, sizeof text - 1);
    exercise(tok, (const char *)data, size < 4096 ? size : 4096);
    bc_tokenizer_free(tok);
    return 0;
}

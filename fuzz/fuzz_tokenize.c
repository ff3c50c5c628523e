/*
 * fuzz_tokenize.c - libFuzzer target for encoding and decoding: the input
 * is text, the model a real one (tests/data/tiny_bpe.model, or the file
 * named by BC_FUZZ_MODEL). That model is lossless (identity normalizer, no
 * dummy prefix, byte fallback), so decode(encode(x)) must equal x with each
 * byte that starts no valid UTF-8 sequence replaced by U+FFFD and U+2581 by
 * a space, exactly SentencePiece's round trip; and streaming must equal the
 * whole decode, in complete characters.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_tokenize CORPUS_DIR
 */
#include "baichuan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BC_SOURCE_DIR
#define BC_SOURCE_DIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bc_tokenizer *tok;

/* SentencePiece's strict UTF-8 (shortest form, no surrogates, <= U+10FFFF):
 * the length of the character at s, 0 if s[0] starts none. */
static size_t valid_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
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
    /* The expected round trip. */
    char *want = malloc(size * 3 + 1);
    size_t want_len = 0;
    for (size_t i = 0; i < size;) {
        size_t len = valid_len(data + i, size - i);
        if (len == 0) {
            memcpy(want + want_len, "\xef\xbf\xbd", 3);
            want_len += 3;
            i++;
        } else if (len == 3 && memcmp(data + i, "\xe2\x96\x81", 3) == 0) {
            want[want_len++] = ' ';
            i += 3;
        } else {
            memcpy(want + want_len, data + i, len);
            want_len += len;
            i += len;
        }
    }
    size_t n;
    bc_tokenizer_encode(tok, (const char *)data, size, BC_SWITCH_OFF, BC_SWITCH_OFF, NULL, 0, &n);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (bc_tokenizer_encode(tok, (const char *)data, size, BC_SWITCH_OFF, BC_SWITCH_OFF, ids, n, &n) != BC_STATUS_OK)
        abort();
    char *got = malloc(want_len + 1);
    size_t got_len;
    if (bc_tokenizer_decode(tok, ids, n, got, want_len + 1, &got_len) != BC_STATUS_OK || got_len != want_len ||
        memcmp(got, want, want_len) != 0)
        abort();
    bc_detokenizer *d;
    if (bc_detokenizer_init(tok, &d) != BC_STATUS_OK) abort();
    size_t pos = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *chunk;
        size_t chunk_len;
        if ((i < n ? bc_detokenizer_push(d, ids[i], &chunk, &chunk_len)
                   : bc_detokenizer_flush(d, &chunk, &chunk_len)) != BC_STATUS_OK)
            abort();
        for (size_t k = 0; k < chunk_len;) { /* complete characters only */
            size_t len = valid_len((const uint8_t *)chunk + k, chunk_len - k);
            if (len == 0) abort();
            k += len;
        }
        if (pos + chunk_len > want_len || memcmp(want + pos, chunk, chunk_len) != 0) abort();
        pos += chunk_len;
    }
    if (pos != want_len) abort();
    bc_detokenizer_free(d);
    free(got);
    free(ids);
    free(want);
    return 0;
}

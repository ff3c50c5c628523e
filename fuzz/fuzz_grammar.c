/*
 * fuzz_grammar.c - libFuzzer target for the GBNF compiler and the matcher.
 * The input is grammar text, optionally followed by a NUL byte and a text:
 * the grammar is compiled for the tokenizer tests/data/tiny_bpe.model (or
 * the file named by BC_FUZZ_MODEL); the text is matched; then a generation
 * of up to 16 pieces is simulated, each chosen among the allowed ones by
 * the text's bytes. Invariants (abort when broken): a refused grammar has
 * a message; every allowed piece is accepted; the end-of-sequence id is
 * allowed exactly when the text may end; a whole match is a prefix.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_grammar CORPUS_DIR fuzz/seeds/fuzz_grammar
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
static bc_tokenizer_info info;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (tok == NULL) {
        const char *path = getenv("BC_FUZZ_MODEL");
        char err[1024];
        if (bc_tokenizer_load(path ? path : BC_SOURCE_DIR "/tests/data/tiny_bpe.model", &tok, err, sizeof err) !=
            BC_STATUS_OK) {
            fprintf(stderr, "%s\n", err);
            abort();
        }
        bc_tokenizer_get_info(tok, &info);
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t glen = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : "";
    size_t tlen = nul ? size - glen - 1 : 0;

    bc_grammar *g = NULL;
    char err[512] = "";
    if (bc_grammar_init_gbnf(tok, (const char *)data, glen, &g, err, sizeof err) != BC_STATUS_OK) {
        if (err[0] == '\0' || g != NULL) abort();
        return 0;
    }
    bool prefix, complete;
    bc_grammar_match(g, text, tlen, &prefix, &complete);
    if (complete && !prefix) abort();

    bc_grammar_matcher *m = NULL;
    uint32_t *bits = malloc((size_t)(info.n_vocab + 31) / 32 * sizeof *bits);
    if (bits == NULL || bc_grammar_matcher_init(g, &m) != BC_STATUS_OK) abort();
    for (int step = 0; step < 16; step++) {
        if (bc_grammar_matcher_allowed(m, bits, info.n_vocab) != BC_STATUS_OK) break; /* a limit: fine */
        bool eos = info.eos_id >= 0 && ((bits[info.eos_id >> 5] >> (info.eos_id & 31)) & 1);
        if (eos != bc_grammar_matcher_can_end(m)) abort();
        int n = 0;
        for (int id = 0; id < info.n_vocab; id++) n += (bits[id >> 5] >> (id & 31)) & 1;
        if (n == 0) break;
        int pick = tlen > 0 ? ((const uint8_t *)text)[step % tlen] % n : step % n;
        int32_t id = 0;
        for (; id < info.n_vocab; id++)
            if (((bits[id >> 5] >> (id & 31)) & 1) && pick-- == 0) break;
        bc_status st = bc_grammar_matcher_accept(m, id);
        if (st == BC_STATUS_ERROR_ARGUMENT) abort(); /* allowed, so it must be accepted */
        if (st != BC_STATUS_OK || id == info.eos_id) break;
    }
    bc_grammar_matcher_free(m);
    free(bits);
    bc_grammar_free(g);
    return 0;
}

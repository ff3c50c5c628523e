/*
 * fuzz_json_schema.c - libFuzzer target for the JSON Schema converter: the
 * input is a schema. A refusal must explain itself and give no grammar; a
 * grammar the converter writes must compile (bc_grammar_init_gbnf without a
 * tokenizer), or the converter has a bug.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_json_schema CORPUS_DIR fuzz/seeds/fuzz_json_schema
 */
#include "baichuan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512] = "";
    char *gbnf = NULL;
    bc_status st = bc_json_schema_to_gbnf((const char *)data, size, &gbnf, err, sizeof err);
    if (st != BC_STATUS_OK) {
        if (err[0] == '\0' || gbnf != NULL) abort();
        return 0;
    }
    if (gbnf == NULL) abort();
    bc_grammar *g = NULL;
    st = bc_grammar_init_gbnf(NULL, gbnf, strlen(gbnf), &g, err, sizeof err);
    if (st != BC_STATUS_OK && st != BC_STATUS_ERROR_MEMORY) {
        fprintf(stderr, "fuzz_json_schema: the converter's grammar does not compile: %s\n%s", err, gbnf);
        abort();
    }
    bc_grammar_free(g);
    free(gbnf);
    return 0;
}

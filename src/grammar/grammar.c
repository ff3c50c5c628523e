/* grammar.c - placeholder while the grammar engine is written (replaced in the next commits). */
#include "baichuan.h"

#include <stdio.h>

bc_status bc_grammar_init_gbnf(const bc_tokenizer *tok, const char *gbnf, size_t len, bc_grammar **out, char *err,
                               size_t err_size) {
    (void)tok, (void)gbnf, (void)len;
    *out = NULL;
    snprintf(err, err_size, "grammars are not implemented yet");
    return BC_STATUS_ERROR_ARGUMENT;
}
bc_status bc_grammar_init_json_schema(const bc_tokenizer *tok, const char *schema, size_t len, bc_grammar **out,
                                      char *err, size_t err_size) {
    return bc_grammar_init_gbnf(tok, schema, len, out, err, err_size);
}
void bc_grammar_free(bc_grammar *g) { (void)g; }
void bc_grammar_match(const bc_grammar *g, const char *text, size_t len, bool *prefix, bool *complete) {
    (void)g, (void)text, (void)len;
    if (prefix) *prefix = false;
    if (complete) *complete = false;
}
bc_status bc_grammar_matcher_init(const bc_grammar *g, bc_grammar_matcher **out) {
    (void)g;
    *out = NULL;
    return BC_STATUS_ERROR_ARGUMENT;
}
void bc_grammar_matcher_free(bc_grammar_matcher *m) { (void)m; }
void bc_grammar_matcher_reset(bc_grammar_matcher *m) { (void)m; }
bc_status bc_grammar_matcher_allowed(bc_grammar_matcher *m, uint32_t *allowed, int n_vocab) {
    (void)m, (void)allowed, (void)n_vocab;
    return BC_STATUS_ERROR_ARGUMENT;
}
bc_status bc_grammar_matcher_accept(bc_grammar_matcher *m, int32_t id) {
    (void)m, (void)id;
    return BC_STATUS_ERROR_ARGUMENT;
}
bool bc_grammar_matcher_can_end(const bc_grammar_matcher *m) {
    (void)m;
    return false;
}
void bc_sampler_set_grammar(bc_sampler *s, bc_grammar_matcher *m) { (void)s, (void)m; }

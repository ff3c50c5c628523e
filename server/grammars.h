/*
 * grammars.h - the compiled grammars of structured output requests, cached
 * by their exact text (grammars.c). Thread-safe.
 */
#ifndef BC_GRAMMARS_H
#define BC_GRAMMARS_H

#include "baichuan.h"

#include <stddef.h>

typedef struct srv_grammar srv_grammar;

typedef enum srv_grammar_kind {
    SRV_GRAMMAR_GBNF = 0,        /* text is GBNF */
    SRV_GRAMMAR_JSON_SCHEMA = 1, /* text is a JSON Schema (len 0: any JSON object) */
} srv_grammar_kind;

/* The grammar of (kind, text) for tok, compiled or found in the cache (the
 * 32 most recently used, by their exact text). A new reference: give it
 * back with srv_grammar_release. NULL with the library's message in err
 * when it does not compile. */
srv_grammar *srv_grammar_get(const bc_tokenizer *tok, srv_grammar_kind kind, const char *text, size_t len, char *err,
                             size_t err_size);
const bc_grammar *srv_grammar_compiled(const srv_grammar *g);
void srv_grammar_release(srv_grammar *g);
/* Empties the cache (at shutdown; grammars still referenced live on). */
void srv_grammar_cache_clear(void);
/* Compilations and cache hits so far (for tests through /metrics). */
void srv_grammar_cache_counts(long long *compiled, long long *hits);

#endif /* BC_GRAMMARS_H */

/*
 * sp_normalizer.h - SentencePiece's normalizer (sp_normalizer.c): the byte
 * trie of the user-defined symbols, and the normalizer that turns text into
 * what the encoder merges (character map, dummy prefix, whitespace rules,
 * U+2581 for spaces).
 */
#ifndef BC_SP_NORMALIZER_H
#define BC_SP_NORMALIZER_H

#include "formats/sp_model.h"

#include <stdbool.h>

/* ------------------------------------------------------------------------ */
/* Tries                                                                    */
/* ------------------------------------------------------------------------ */

/* A byte trie over a set of strings (the user-defined symbols), answering
 * "which is the longest key that is a prefix of this text". */
typedef struct bc__trie {
    uint32_t *slots;     /* hash of (node << 8 | byte) -> child node; 0 = empty */
    uint64_t *slot_keys; /* (node << 8 | byte) + 1 for each used slot */
    size_t n_slots;      /* a power of two */
    uint32_t n_nodes;    /* node 0 is the root */
    uint8_t *terminal;   /* (n_nodes) 1 where a key ends */
    size_t cap_nodes;
    bool first_byte[256]; /* bytes some key starts with */
    size_t n_keys;
} bc__trie;

/* Adds the key s[0, n) (n > 0). -1 on out of memory. */
BC__HIDDEN int bc__trie_insert(bc__trie *t, const char *s, size_t n);
/* Length of the longest key that is a prefix of s[0, n), 0 if none. */
BC__HIDDEN size_t bc__trie_longest_prefix(const bc__trie *t, const char *s, size_t n);
BC__HIDDEN void bc__trie_free(bc__trie *t);

/* ------------------------------------------------------------------------ */
/* Normalizer                                                               */
/* ------------------------------------------------------------------------ */

typedef struct bc__normalizer {
    bool add_dummy_prefix;
    bool remove_extra_whitespaces;
    bool escape_whitespaces;
    bool treat_whitespace_as_suffix; /* from the trainer spec */
    /* precompiled_charsmap, split: a Darts-clone double array and the
     * NUL-separated replacement strings its values point into. */
    const uint32_t *trie_units; /* (n_trie_units), NULL when identity */
    size_t n_trie_units;
    const char *replacements;
    size_t replacements_len;
    uint32_t *trie_copy;       /* owned aligned copy of the units */
    const bc__trie *user_trie; /* user-defined symbols, passed through unnormalized */
} bc__normalizer;

/* Prepares a normalizer from the spec; checks the charsmap's framing. */
BC__HIDDEN int bc__normalizer_init(bc__normalizer *n, const bc__sp_normalizer_spec *spec, bool treat_ws_as_suffix,
                                   const bc__trie *user_trie, const char *file, bc__err *err);
BC__HIDDEN void bc__normalizer_free(bc__normalizer *n);

/* Normalizes text[0, len) into out (cleared first), exactly as
 * SentencePiece's Normalizer::Normalize. Returns -1 on out of memory. */
BC__HIDDEN int bc__normalize(const bc__normalizer *n, const char *text, size_t len, bc__buf *out);

/* "\xe2\x96\x81", U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's space. */
#define BC__SPACE_SYMBOL     "\xe2\x96\x81"
#define BC__SPACE_SYMBOL_LEN 3

#endif /* BC_SP_NORMALIZER_H */

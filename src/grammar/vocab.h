/*
 * vocab.h - a tokenizer's pieces as the grammar sees them (vocab.c): the
 * bytes the detokenizer writes for each, sorted so that a walk can read the
 * list as a trie. Built once per tokenizer and kept on it.
 */
#ifndef BC_GRAMMAR_VOCAB_H
#define BC_GRAMMAR_VOCAB_H

#include "base/base.h"

#include <stdbool.h>
#include <stdint.h>

/* A sorted list of token byte strings, walked as a trie: lcp[i] is the
 * length of the prefix token i shares with token i - 1. */
typedef struct bc__tok_list {
    int n;
    int32_t *ids;
    const uint8_t **bytes;
    uint16_t *len;
    uint16_t *lcp;
} bc__tok_list;

/* The tokens of a tokenizer as the grammar sees them. */
typedef struct bc__gvocab {
    int n_vocab; /* the tokenizer's */
    int32_t eos_id;
    bc__tok_list all;      /* every allowed piece, as decoded */
    bc__tok_list stripped; /* pieces starting with a space, without it (the detokenizer's first piece) */
    bool strip_first;      /* the detokenizer drops a first piece's leading space */
    bool strip_repeats;    /* ... of every piece while nothing was written (remove_extra_whitespaces) */
    uint8_t *kind;         /* (n_vocab) 0 never allowed, 1 text, 2 text with a leading space, 3 a byte piece */
    const uint8_t **bytes; /* (n_vocab) the decoded bytes */
    uint16_t *len;         /* (n_vocab) */
} bc__gvocab;

/* The pieces of tok, built by the first caller and kept on the tokenizer
 * (freed with it); safe to call from several threads at once. NULL when out
 * of memory. */
BC__HIDDEN const bc__gvocab *bc__gvocab_of(const bc_tokenizer *tok);

/* The tokens idx[0, n) (indices into src, in src's order) as a list; -1 when
 * out of memory (free out even then). */
BC__HIDDEN int bc__tok_list_subset(bc__tok_list *out, const bc__tok_list *src, const int32_t *idx, int n);

/* Frees a list's arrays and zeroes it. */
BC__HIDDEN void bc__tok_list_free(bc__tok_list *l);

#endif /* BC_GRAMMAR_VOCAB_H */

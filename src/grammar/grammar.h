/*
 * grammar.h - the compiled form of a grammar, what the grammar engine's
 * files share (gbnf.c compiles it, matcher.c runs it). Header-only; not part
 * of the public API.
 *
 * A compiled grammar is a list of rules; a rule is a list of alternatives;
 * an alternative is a run of elements in one flat array, closed by an END
 * element:
 *
 *   elems:  [BYTES s0][BYTES s1][END] [REF 3][BYTES s2][END] ...
 *            ^ alternative 0 of rule 0  ^ alternative 1 ...
 *
 * BYTES matches one byte of a 256-bit set; REF enters a rule. Character
 * classes and `.` are compiled into rules whose alternatives are the UTF-8
 * byte sequences of their code points, so the automaton sees only bytes.
 *
 * A position is an index into elems. The automaton's state is a set of
 * stacks of positions (every parse still alive); a stack's top is always a
 * BYTES element (stacks are "expanded": REFs entered, ENDs popped), and an
 * empty stack means the whole grammar has matched. Entering a REF that is
 * the last element of its alternative replaces the caller's frame instead
 * of stacking on it (a tail call), so `x*` (compiled as R ::= x R | "")
 * runs in constant depth.
 */
#ifndef BC_GRAMMAR_H
#define BC_GRAMMAR_H

#include "grammar/vocab.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum { BC__G_END = 0, BC__G_BYTES = 1, BC__G_REF = 2 };

typedef struct bc__gelem {
    uint8_t kind;
    int32_t arg; /* BYTES: index into bytesets; REF: rule id */
} bc__gelem;

/* Limits (documented in baichuan.h). */
enum {
    BC__G_MAX_TEXT = 1 << 20,
    BC__G_MAX_ELEMS = 65536,
    BC__G_MAX_NESTING = 64,
    BC__G_MAX_REPEAT = 1000,
    BC__G_MAX_DEPTH = 2048,     /* frames in one stack: how deep the output may nest */
    BC__G_MAX_STACKS = 16384,   /* live parses at one byte (an enum of n strings starts with n) */
    BC__G_WORK_PER_PIECE = 400, /* expansions one token mask may take, per piece of the vocabulary */
    BC__G_KEY = 4,              /* top frames that key the token-mask cache */
    BC__G_MAX_EXPAND = 1 << 20, /* expansions for one byte */
};

/* One cached token mask: the tokens allowed from a stack whose top frames
 * are the key, whatever lies below them, and the ones that depend on what
 * lies below (walked again per stack). */
typedef struct bc__gmask {
    int32_t key[BC__G_KEY];
    int n_key;              /* frames in the key */
    bool whole;             /* the key is the whole stack */
    uint32_t *accepted;     /* ((n_vocab + 31) / 32) bits */
    bc__tok_list uncertain; /* sorted */
    struct bc__gmask *next; /* hash chain */
} bc__gmask;

struct bc_grammar {
    bc__gelem *elems; /* (n_elems) */
    int n_elems;
    int32_t *alt_start; /* (n_alts) the first position of each alternative */
    int32_t *rule_alts; /* (n_rules + 1) rule r's alternatives: alt_start[rule_alts[r] .. rule_alts[r+1]) */
    int n_rules;
    uint64_t (*bytesets)[4]; /* (n_bytesets) 256-bit sets */
    int n_bytesets;
    int32_t root;

    const bc_tokenizer *tok; /* NULL: matching only */
    const bc__gvocab *vocab; /* the tokenizer's (built once per tokenizer) */

    pthread_mutex_t mu; /* guards the mask cache */
    bc__gmask **buckets;
    size_t n_buckets, n_masks;
};

static inline bool bc__byteset_has(const uint64_t set[4], uint8_t b) { return (set[b >> 6] >> (b & 63)) & 1; }

#endif /* BC_GRAMMAR_H */

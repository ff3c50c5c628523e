/*
 * tokenizer.h - SentencePiece models, the BPE tokenizer, the detokenizer and
 * the chat format; shared by sp_model.c, sp_normalizer.c, tokenizer.c,
 * detokenizer.c and chat.c. Not part of the public API.
 *
 *   bc__sp_model       what a tokenizer.model file says (sp_model.c)
 *   bc__normalizer     SentencePiece's normalizer (sp_normalizer.c)
 *   struct bc_tokenizer  vocabulary tables, encoder (tokenizer.c)
 *
 * Facts about SentencePiece (field numbers, piece types, the normalizer's
 * whitespace rules, BPE merge order) are from the sentencepiece 0.1.97
 * sources and were checked against python3-sentencepiece by the tests.
 */
#ifndef BC_TOKENIZER_H
#define BC_TOKENIZER_H

#include "formats/config.h"
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

/* ------------------------------------------------------------------------ */
/* Tokenizer                                                                */
/* ------------------------------------------------------------------------ */

/* Open-addressing map from a piece's bytes to its id. */
typedef struct bc__piece_map {
    uint64_t *slots; /* (hash >> 32) << 32 | (id + 1); 0 = empty */
    size_t mask;     /* n_slots - 1 */
} bc__piece_map;

struct bc_tokenizer {
    char *path;          /* tokenizer.model as opened */
    uint8_t *file_bytes; /* the whole file; pieces point into it */
    size_t file_size;
    bc__sp_model sp;
    int32_t n_vocab;

    /* SentencePiece keeps two maps: pieces that take part in merges
     * (normal, user-defined, unused) and reserved ones (control, unknown,
     * byte). PieceToId looks in the reserved map first. */
    bc__piece_map normal_map;
    bc__piece_map reserved_map;
    /* Every way a mergeable piece splits into two mergeable pieces:
     * (left id, right id) -> merged id, so that merging never hashes
     * strings. Keys are left << 32 | right; UINT64_MAX marks a free slot. */
    uint64_t *merge_keys;
    int32_t *merge_vals;
    size_t merge_mask;
    /* One bit per hash of a key, about 16 bits per key: most pairs are not
     * pieces, and this small array (cache-resident) says so before the big
     * table is touched. */
    uint64_t *merge_filter;
    size_t merge_filter_mask; /* bits - 1 */
    /* Mergeable pieces of one character (up to four bytes), the encoder's
     * starting symbols: key = length << 32 | bytes (little-endian) -> id.
     * UINT64_MAX marks a free slot. */
    uint64_t *char_keys;
    int32_t *char_vals;
    size_t char_mask;
    char *piece_text;      /* every piece, NUL-terminated, back to back */
    size_t *piece_off;     /* (n_vocab) where each starts in piece_text */
    float *scores;         /* (n_vocab) */
    uint32_t *score_keys;  /* (n_vocab) the scores as integers in the same order */
    uint8_t *types;        /* (n_vocab) */
    int32_t unk_id;        /* the UNKNOWN piece */
    int32_t byte_ids[256]; /* <0xXX> pieces, -1 when absent */
    bool byte_fallback;
    /* SentencePiece's bos_id() etc.: PieceToId of the trainer spec's piece
     * name ("<s>", "</s>", "<pad>", "<unk>" by default) when that piece has
     * the right type (control; unknown for unk), else -1. */
    int32_t bos_id, eos_id, pad_id, unk_piece_id;
    int32_t n_types[7]; /* pieces per type */
    bc__trie user_trie;
    bc__normalizer normalizer;
    char *normalizer_name; /* normalizer_spec.name, NUL-terminated */
    bc__span unk_surface;  /* decoding of <unk> */

    /* id -> PieceToId(its piece): the same id unless a reserved piece has
     * the same bytes. SentencePiece's encoder outputs, and its decoder
     * interprets, this id. */
    int32_t *canonical_id; /* (n_vocab) */
    /* Decoding: each piece's text with U+2581 turned into spaces. */
    size_t *decode_off; /* (n_vocab + 1) offsets into decode_text */
    char *decode_text;
    uint8_t *decode_leading_ws; /* (n_vocab) 1 if the piece starts with U+2581 */

    /* From the model directory (defaults when loaded from a bare file). */
    bc__tok_config config; /* tokenizer_config.json */
    bc__gen_config gen;    /* generation_config.json */
    int n_ctx_train;       /* config.json model_max_length, else max_position_embeddings, else 4096 */
    bool from_directory;
    /* The pieces sorted for grammar token masks (src/grammar/matcher.c),
     * built by the first grammar made for this tokenizer, under that
     * file's lock; freed with the tokenizer. */
    struct bc__gvocab *grammar_vocab;
};

/* An encoded token, with the normalized bytes it covers (for the self test,
 * which compares piece strings). */
typedef struct bc__ids {
    int32_t *ids;
    size_t n, cap;
} bc__ids;

BC__HIDDEN int bc__ids_push(bc__ids *v, int32_t id);

/* PieceToId: reserved pieces first, then normal ones, else the unknown id. */
BC__HIDDEN int32_t bc__piece_to_id(const bc_tokenizer *tok, const char *s, size_t n);

/* Encodes text (no BOS/EOS) and appends the ids to out. When pieces is not
 * NULL, also appends each token's piece string followed by a space (for the
 * self test). Returns -1 on out of memory. */
BC__HIDDEN int bc__tokenizer_encode(const bc_tokenizer *tok, const char *text, size_t len, bc__ids *out,
                                    bc__buf *pieces);

/* A tokenizer from the bytes of a tokenizer.model (copied); name is used
 * in messages. Directory settings take their defaults. For fuzzing. */
BC__HIDDEN int bc__tokenizer_from_bytes(const uint8_t *data, size_t size, const char *name, bc_tokenizer **out,
                                        bc__err *err);

/* Checks tok->sp (filled by the caller, pieces pointing into memory tok
 * owns), builds the tables and the normalizer, runs the self test and sets
 * the directory settings to their defaults. tok->path names the source in
 * messages. */
BC__HIDDEN int bc__tokenizer_build(bc_tokenizer *tok, bc__err *err);

/* Fills tok from the tokenizer.ggml.* metadata of a GGUF file
 * (tokenizer_gguf.c), then bc__tokenizer_build()s it. */
BC__HIDDEN int bc__tokenizer_from_gguf(bc_tokenizer *tok, const char *path, bc__err *err);

/* Frees a tokenizer's grammar vocabulary (matcher.c). */
BC__HIDDEN void bc__gvocab_free(struct bc__gvocab *v);

#endif /* BC_TOKENIZER_H */

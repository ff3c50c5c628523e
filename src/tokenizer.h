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

#include "model.h"

#include <stdbool.h>

/* A byte range inside a buffer someone else owns. */
typedef struct bc__span {
    const char *ptr;
    size_t len;
} bc__span;

/* ------------------------------------------------------------------------ */
/* tokenizer.model: SentencePiece's ModelProto                              */
/* ------------------------------------------------------------------------ */

/* ModelProto.SentencePiece.Type */
enum {
    BC__SP_NORMAL = 1,
    BC__SP_UNKNOWN = 2,
    BC__SP_CONTROL = 3,
    BC__SP_USER_DEFINED = 4,
    BC__SP_UNUSED = 5,
    BC__SP_BYTE = 6,
};

/* TrainerSpec.ModelType */
enum { BC__SP_MODEL_UNIGRAM = 1, BC__SP_MODEL_BPE = 2, BC__SP_MODEL_WORD = 3, BC__SP_MODEL_CHAR = 4 };

typedef struct bc__sp_piece {
    bc__span text; /* never empty in a model that loads */
    float score;   /* larger merges first */
    int type;      /* BC__SP_NORMAL, ... */
} bc__sp_piece;

/* TrainerSpec: the fields encoding and decoding depend on. Absent fields
 * hold the proto's defaults. */
typedef struct bc__sp_trainer_spec {
    bool present;
    int32_t model_type; /* default UNIGRAM */
    int32_t vocab_size;
    bool byte_fallback;              /* default false */
    bool treat_whitespace_as_suffix; /* default false: the dummy prefix goes first */
    bool split_digits;               /* training only; reported */
    bool allow_whitespace_only_pieces;
    int32_t unk_id, bos_id, eos_id, pad_id;              /* defaults 0, 1, 2, -1 (informational) */
    bc__span unk_piece, bos_piece, eos_piece, pad_piece; /* empty when absent */
    bc__span unk_surface;                                /* what decoding prints for <unk> */
    bool has_unk_surface;
} bc__sp_trainer_spec;

/* NormalizerSpec (also used for denormalizer_spec). */
typedef struct bc__sp_normalizer_spec {
    bool present;
    bc__span name;                 /* "identity", "nmt_nfkc", ... */
    bc__span precompiled_charsmap; /* empty: no character mapping */
    bool add_dummy_prefix;         /* default true */
    bool remove_extra_whitespaces; /* default true */
    bool escape_whitespaces;       /* default true */
} bc__sp_normalizer_spec;

typedef struct bc__sp_sample {
    bc__span input, expected; /* expected: pieces joined by single spaces */
} bc__sp_sample;

typedef struct bc__sp_model {
    bc__sp_piece *pieces; /* (n_pieces), owned; texts point into the parsed bytes */
    int32_t n_pieces;
    bc__sp_trainer_spec trainer;
    bc__sp_normalizer_spec normalizer;
    bc__sp_normalizer_spec denormalizer;
    bc__sp_sample *samples; /* self_test_data, owned */
    size_t n_samples;
} bc__sp_model;

/* Parses a serialized ModelProto. Strings in m point into data, which must
 * outlive m. `name` (the file) prefixes every message, together with the
 * field and the byte offset at fault. Checks the wire format only; what the
 * fields mean is checked by the tokenizer. */
BC__HIDDEN int bc__sp_model_parse(bc__sp_model *m, const uint8_t *data, size_t size, const char *name, bc__err *err);
BC__HIDDEN void bc__sp_model_free(bc__sp_model *m);

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

/* A growable byte buffer. */
typedef struct bc__buf {
    char *data;
    size_t len, cap;
} bc__buf;

BC__HIDDEN int bc__buf_reserve(bc__buf *b, size_t extra);
BC__HIDDEN int bc__buf_append(bc__buf *b, const void *p, size_t n);

/* Normalizes text[0, len) into out (cleared first), exactly as
 * SentencePiece's Normalizer::Normalize. Returns -1 on out of memory. */
BC__HIDDEN int bc__normalize(const bc__normalizer *n, const char *text, size_t len, bc__buf *out);

/* SentencePiece's UTF-8 rules (util.h): the length its lead byte claims
 * (1 for stray bytes), and the strict decoder that maps every malformed,
 * overlong, surrogate or out-of-range sequence to one invalid byte. */
static inline size_t bc__utf8_lead_len(uint8_t c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }
/* Returns the length of the valid sequence at s[0, n) (n >= 1), or 0 if the
 * first byte does not start one. */
BC__HIDDEN size_t bc__utf8_valid_len(const uint8_t *s, size_t n);

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

/* Reads tokenizer_config.json, generation_config.json and config.json from
 * dir, each optional; ids are checked against n_vocab. */
BC__HIDDEN int bc__tok_dir_config_read(const char *dir, int n_vocab, bc__tok_config *tok, bc__gen_config *gen,
                                       int *n_ctx_train, bc__err *err);

/* Frees a tokenizer's grammar vocabulary (matcher.c). */
BC__HIDDEN void bc__gvocab_free(struct bc__gvocab *v);

#endif /* BC_TOKENIZER_H */

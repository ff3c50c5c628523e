/*
 * tokenizer.h - the SentencePiece BPE tokenizer (tokenizer.c): its tables,
 * the builder every source of a vocabulary goes through, and the encoder;
 * what the detokenizer, the chat format and the loader use. Not part of the
 * public API.
 *
 *   bc__sp_model         what a vocabulary says (formats/sp_model.h)
 *   bc__normalizer       SentencePiece's normalizer (sp_normalizer.h)
 *   struct bc_tokenizer  vocabulary tables, encoder (tokenizer.c)
 *   loading              picks the source: load.c (tokenizer.model, a
 *                        model directory) or tokenizer_gguf.c (GGUF)
 *
 * Facts about SentencePiece (field numbers, piece types, the normalizer's
 * whitespace rules, BPE merge order) are from the sentencepiece 0.1.97
 * sources and were checked against python3-sentencepiece by the tests.
 */
#ifndef BC_TOKENIZER_H
#define BC_TOKENIZER_H

#include "formats/config.h"
#include "formats/sp_model.h"
#include "tokenizer/sp_normalizer.h"

#include <stdbool.h>

/* ------------------------------------------------------------------------ */
/* Tokenizer                                                                */
/* ------------------------------------------------------------------------ */

/* Open-addressing map from a piece's bytes to its id. */
typedef struct bc__piece_map {
    uint64_t *slots; /* (hash >> 32) << 32 | (id + 1); 0 = empty */
    size_t mask;     /* n_slots - 1 */
} bc__piece_map;

/* What a higher layer caches on a tokenizer (the grammar, its view of the
 * pieces): the tokenizer never looks inside it, and calls destroy(data),
 * when set, as it is freed. */
typedef struct bc__tok_attachment {
    void *data;
    void (*destroy)(void *data);
} bc__tok_attachment;

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
    /* The pieces as the grammar sees them (src/grammar/vocab.c), built by
     * the first grammar made for this tokenizer and set under that file's
     * lock; freed with the tokenizer. */
    bc__tok_attachment grammar_vocab;
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

/* Checks tok->sp (filled by the caller, pieces pointing into memory tok
 * owns), builds the tables and the normalizer, runs the self test and sets
 * the directory settings to their defaults. tok->path names the source in
 * messages. */
BC__HIDDEN int bc__tokenizer_build(bc_tokenizer *tok, bc__err *err);

#endif /* BC_TOKENIZER_H */

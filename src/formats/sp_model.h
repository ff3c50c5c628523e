/*
 * sp_model.h - a SentencePiece tokenizer.model file: the ModelProto protobuf
 * (pieces, trainer_spec, normalizer_spec, self_test_data), read strictly
 * (sp_model.c). What the fields mean is the tokenizer's business.
 *
 * Field numbers and defaults are from sentencepiece 0.1.97's
 * sentencepiece_model.proto.
 */
#ifndef BC_SP_MODEL_H
#define BC_SP_MODEL_H

#include "base/base.h"

#include <stdbool.h>

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

#endif /* BC_SP_MODEL_H */

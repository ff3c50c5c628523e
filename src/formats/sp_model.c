/*
 * sp_model.c - a reader of SentencePiece's tokenizer.model: the protobuf
 * wire format of ModelProto (sentencepiece_model.proto), without protobuf.
 *
 *   wire format   varints, keys, length-delimited ranges, skipping; every
 *                 length is checked against the end of its enclosing message
 *   messages      ModelProto -> SentencePiece (pieces), TrainerSpec,
 *                 NormalizerSpec, SelfTestData
 *
 * Protobuf rules kept: fields may come in any order; for a non-repeated
 * field the last occurrence wins, and repeated occurrences of an embedded
 * message are merged; unknown fields are skipped. Stricter than protobuf:
 * a known field with the wrong wire type, an unknown enum value and group
 * wire types are errors rather than silently ignored, so that a damaged file
 * is never read as a different model.
 */
#include "formats/sp_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_START_GROUP = 3, WIRE_END_GROUP = 4, WIRE_FIXED32 = 5 };

static const char *wire_name(int wire) {
    switch (wire) {
    case WIRE_VARINT: return "varint";
    case WIRE_FIXED64: return "fixed64";
    case WIRE_LEN: return "length-delimited";
    case WIRE_START_GROUP: return "start-group";
    case WIRE_END_GROUP: return "end-group";
    case WIRE_FIXED32: return "fixed32";
    }
    return "invalid";
}

/* ------------------------------------------------------------------------ */
/* Wire format                                                              */
/* ------------------------------------------------------------------------ */

/* One message being read: bytes [pos, end) of the file remain. `where`
 * names the message for errors ("trainer_spec", "pieces[12]"). */
typedef struct pb_msg {
    const uint8_t *data; /* the whole file */
    size_t pos, end;
    const char *file;
    const char *where;
} pb_msg;

/* One field: its number, wire type, and value (varint / fixed value, or the
 * [start, start+len) range of a length-delimited one). */
typedef struct pb_field {
    uint32_t number;
    int wire;
    size_t key_pos; /* byte offset of the key, for messages */
    uint64_t value;
    size_t start, len;
} pb_field;

static int pb_error(const pb_msg *m, size_t pos, bc__err *err, const char *what) {
    return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: malformed SentencePiece model at byte %zu (in %s): %s", m->file,
                      pos, m->where, what);
}

static int pb_varint(pb_msg *m, uint64_t *out, bc__err *err) {
    size_t start = m->pos;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (m->pos >= m->end)
            return pb_error(m, start, err, "varint runs past the end of the message (truncated file?)");
        uint8_t b = m->data[m->pos++];
        if (i == 9 && b > 1) return pb_error(m, start, err, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *out = v;
            return 0;
        }
    }
    return pb_error(m, start, err, "varint longer than 10 bytes");
}

/* Reads the next field of m; 1 when one was read, 0 at the end of m. */
static int pb_next(pb_msg *m, pb_field *f, bc__err *err) {
    if (m->pos >= m->end) return 0;
    f->key_pos = m->pos;
    uint64_t key;
    if (pb_varint(m, &key, err) != 0) return -1;
    f->wire = (int)(key & 7);
    uint64_t number = key >> 3;
    if (number == 0 || number > 536870911u) {
        char what[96];
        snprintf(what, sizeof what, "invalid field number %llu", (unsigned long long)number);
        return pb_error(m, f->key_pos, err, what);
    }
    f->number = (uint32_t)number;
    f->value = 0;
    f->start = f->len = 0;
    char what[160];
    switch (f->wire) {
    case WIRE_VARINT: return pb_varint(m, &f->value, err) == 0 ? 1 : -1;
    case WIRE_FIXED64:
        if (m->end - m->pos < 8) {
            snprintf(what, sizeof what, "field %u: fixed64 value runs past the end of the message (truncated file?)",
                     f->number);
            return pb_error(m, f->key_pos, err, what);
        }
        memcpy(&f->value, m->data + m->pos, 8);
        m->pos += 8;
        return 1;
    case WIRE_FIXED32: {
        if (m->end - m->pos < 4) {
            snprintf(what, sizeof what, "field %u: fixed32 value runs past the end of the message (truncated file?)",
                     f->number);
            return pb_error(m, f->key_pos, err, what);
        }
        uint32_t v;
        memcpy(&v, m->data + m->pos, 4);
        f->value = v;
        m->pos += 4;
        return 1;
    }
    case WIRE_LEN: {
        uint64_t len;
        if (pb_varint(m, &len, err) != 0) return -1;
        if (len > m->end - m->pos) {
            snprintf(what, sizeof what,
                     "field %u: length %llu runs past the end of the message (%zu bytes left; truncated file?)",
                     f->number, (unsigned long long)len, m->end - m->pos);
            return pb_error(m, f->key_pos, err, what);
        }
        f->start = m->pos;
        f->len = (size_t)len;
        m->pos += (size_t)len;
        return 1;
    }
    default:
        snprintf(what, sizeof what, "field %u: unsupported wire type %d (%s)", f->number, f->wire, wire_name(f->wire));
        return pb_error(m, f->key_pos, err, what);
    }
}

static int pb_expect(const pb_msg *m, const pb_field *f, int wire, const char *field_name, bc__err *err) {
    if (f->wire == wire) return 0;
    char what[160];
    snprintf(what, sizeof what, "field %s (%u) has wire type %s, expected %s", field_name, f->number,
             wire_name(f->wire), wire_name(wire));
    return pb_error(m, f->key_pos, err, what);
}

static pb_msg pb_sub(const pb_msg *parent, const pb_field *f, const char *where) {
    pb_msg m = {parent->data, f->start, f->start + f->len, parent->file, where};
    return m;
}

/* Typed field readers: check the wire type, then convert as protobuf does
 * (int32 keeps the low 32 bits of the varint; bool is "not zero"). */
static int get_int32(const pb_msg *m, const pb_field *f, const char *name, int32_t *out, bc__err *err) {
    if (pb_expect(m, f, WIRE_VARINT, name, err) != 0) return -1;
    *out = (int32_t)(uint32_t)f->value;
    return 0;
}

static int get_bool(const pb_msg *m, const pb_field *f, const char *name, bool *out, bc__err *err) {
    if (pb_expect(m, f, WIRE_VARINT, name, err) != 0) return -1;
    *out = f->value != 0;
    return 0;
}

static int get_float(const pb_msg *m, const pb_field *f, const char *name, float *out, bc__err *err) {
    if (pb_expect(m, f, WIRE_FIXED32, name, err) != 0) return -1;
    uint32_t bits = (uint32_t)f->value;
    memcpy(out, &bits, 4);
    return 0;
}

static int get_bytes(const pb_msg *m, const pb_field *f, const char *name, bc__span *out, bc__err *err) {
    if (pb_expect(m, f, WIRE_LEN, name, err) != 0) return -1;
    out->ptr = (const char *)m->data + f->start;
    out->len = f->len;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

/* ModelProto.SentencePiece: piece = 1, score = 2, type = 3. */
static int read_piece(pb_msg *m, bc__sp_piece *p, bc__err *err) {
    pb_field f;
    int r;
    while ((r = pb_next(m, &f, err)) == 1) {
        int rc = 0;
        switch (f.number) {
        case 1: rc = get_bytes(m, &f, "piece", &p->text, err); break;
        case 2: rc = get_float(m, &f, "score", &p->score, err); break;
        case 3: {
            int32_t t = 0;
            if (get_int32(m, &f, "type", &t, err) != 0) return -1;
            if (t < BC__SP_NORMAL || t > BC__SP_BYTE) {
                char what[96];
                snprintf(what, sizeof what, "type %d is not a SentencePiece piece type (1..6)", (int)t);
                return pb_error(m, f.key_pos, err, what);
            }
            p->type = t;
            break;
        }
        default: break; /* unknown field: skipped */
        }
        if (rc != 0) return -1;
    }
    return r;
}

/* TrainerSpec: only the fields that matter for encoding, decoding, or the
 * messages; the others are skipped. */
static int read_trainer_spec(pb_msg *m, bc__sp_trainer_spec *t, bc__err *err) {
    pb_field f;
    int r;
    t->present = true;
    while ((r = pb_next(m, &f, err)) == 1) {
        int rc = 0;
        switch (f.number) {
        case 3: {
            rc = get_int32(m, &f, "model_type", &t->model_type, err);
            if (rc == 0 && (t->model_type < BC__SP_MODEL_UNIGRAM || t->model_type > BC__SP_MODEL_CHAR)) {
                char what[96];
                snprintf(what, sizeof what, "model_type %d is not a SentencePiece model type (1..4)",
                         (int)t->model_type);
                return pb_error(m, f.key_pos, err, what);
            }
            break;
        }
        case 4: rc = get_int32(m, &f, "vocab_size", &t->vocab_size, err); break;
        case 24: rc = get_bool(m, &f, "treat_whitespace_as_suffix", &t->treat_whitespace_as_suffix, err); break;
        case 25: rc = get_bool(m, &f, "split_digits", &t->split_digits, err); break;
        case 26: rc = get_bool(m, &f, "allow_whitespace_only_pieces", &t->allow_whitespace_only_pieces, err); break;
        case 35: rc = get_bool(m, &f, "byte_fallback", &t->byte_fallback, err); break;
        case 40: rc = get_int32(m, &f, "unk_id", &t->unk_id, err); break;
        case 41: rc = get_int32(m, &f, "bos_id", &t->bos_id, err); break;
        case 42: rc = get_int32(m, &f, "eos_id", &t->eos_id, err); break;
        case 43: rc = get_int32(m, &f, "pad_id", &t->pad_id, err); break;
        case 44:
            rc = get_bytes(m, &f, "unk_surface", &t->unk_surface, err);
            t->has_unk_surface = true;
            break;
        case 45: rc = get_bytes(m, &f, "unk_piece", &t->unk_piece, err); break;
        case 46: rc = get_bytes(m, &f, "bos_piece", &t->bos_piece, err); break;
        case 47: rc = get_bytes(m, &f, "eos_piece", &t->eos_piece, err); break;
        case 48: rc = get_bytes(m, &f, "pad_piece", &t->pad_piece, err); break;
        default: break;
        }
        if (rc != 0) return -1;
    }
    return r;
}

/* NormalizerSpec: name = 1, precompiled_charsmap = 2, add_dummy_prefix = 3,
 * remove_extra_whitespaces = 4, escape_whitespaces = 5. */
static int read_normalizer_spec(pb_msg *m, bc__sp_normalizer_spec *n, bc__err *err) {
    pb_field f;
    int r;
    n->present = true;
    while ((r = pb_next(m, &f, err)) == 1) {
        int rc = 0;
        switch (f.number) {
        case 1: rc = get_bytes(m, &f, "name", &n->name, err); break;
        case 2: rc = get_bytes(m, &f, "precompiled_charsmap", &n->precompiled_charsmap, err); break;
        case 3: rc = get_bool(m, &f, "add_dummy_prefix", &n->add_dummy_prefix, err); break;
        case 4: rc = get_bool(m, &f, "remove_extra_whitespaces", &n->remove_extra_whitespaces, err); break;
        case 5: rc = get_bool(m, &f, "escape_whitespaces", &n->escape_whitespaces, err); break;
        default: break;
        }
        if (rc != 0) return -1;
    }
    return r;
}

static void normalizer_defaults(bc__sp_normalizer_spec *n) {
    memset(n, 0, sizeof *n);
    n->add_dummy_prefix = true;
    n->remove_extra_whitespaces = true;
    n->escape_whitespaces = true;
}

/* SelfTestData: samples = 1, each Sample: input = 1, expected = 2. */
static int read_self_test(pb_msg *m, bc__sp_model *model, bc__err *err) {
    pb_field f;
    int r;
    while ((r = pb_next(m, &f, err)) == 1) {
        if (f.number != 1) continue;
        if (pb_expect(m, &f, WIRE_LEN, "samples", err) != 0) return -1;
        bc__sp_sample *g = realloc(model->samples, (model->n_samples + 1) * sizeof *g);
        if (g == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", m->file);
        model->samples = g;
        bc__sp_sample *s = &g[model->n_samples++];
        memset(s, 0, sizeof *s);
        pb_msg sub = pb_sub(m, &f, "self_test_data.samples");
        pb_field g2;
        int r2;
        while ((r2 = pb_next(&sub, &g2, err)) == 1) {
            int rc = 0;
            if (g2.number == 1) rc = get_bytes(&sub, &g2, "input", &s->input, err);
            if (g2.number == 2) rc = get_bytes(&sub, &g2, "expected", &s->expected, err);
            if (rc != 0) return -1;
        }
        if (r2 < 0) return -1;
    }
    return r;
}

void bc__sp_model_free(bc__sp_model *m) {
    if (m == NULL) return;
    free(m->pieces);
    free(m->samples);
    memset(m, 0, sizeof *m);
}

/* ModelProto: pieces = 1, trainer_spec = 2, normalizer_spec = 3,
 * self_test_data = 4, denormalizer_spec = 5. */
int bc__sp_model_parse(bc__sp_model *m, const uint8_t *data, size_t size, const char *name, bc__err *err) {
    memset(m, 0, sizeof *m);
    m->trainer.model_type = BC__SP_MODEL_UNIGRAM;
    m->trainer.vocab_size = 8000;
    m->trainer.unk_id = 0;
    m->trainer.bos_id = 1;
    m->trainer.eos_id = 2;
    m->trainer.pad_id = -1;
    normalizer_defaults(&m->normalizer);
    normalizer_defaults(&m->denormalizer);

    pb_msg top = {data, 0, size, name, "ModelProto"};
    size_t cap = 0;
    pb_field f;
    int r;
    char where[64];
    while ((r = pb_next(&top, &f, err)) == 1) {
        int rc = 0;
        switch (f.number) {
        case 1: {
            if (pb_expect(&top, &f, WIRE_LEN, "pieces", err) != 0) goto fail;
            if (m->n_pieces == INT32_MAX) {
                bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: more than %d pieces", name, INT32_MAX);
                goto fail;
            }
            if ((size_t)m->n_pieces == cap) {
                size_t ncap = cap ? cap * 2 : 1024;
                bc__sp_piece *g = realloc(m->pieces, ncap * sizeof *g);
                if (g == NULL) {
                    bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", name);
                    goto fail;
                }
                m->pieces = g;
                cap = ncap;
            }
            bc__sp_piece *p = &m->pieces[m->n_pieces];
            memset(p, 0, sizeof *p);
            p->type = BC__SP_NORMAL;
            snprintf(where, sizeof where, "pieces[%d]", (int)m->n_pieces);
            pb_msg sub = pb_sub(&top, &f, where);
            rc = read_piece(&sub, p, err);
            m->n_pieces++;
            break;
        }
        case 2: {
            if (pb_expect(&top, &f, WIRE_LEN, "trainer_spec", err) != 0) goto fail;
            pb_msg sub = pb_sub(&top, &f, "trainer_spec");
            rc = read_trainer_spec(&sub, &m->trainer, err);
            break;
        }
        case 3: {
            if (pb_expect(&top, &f, WIRE_LEN, "normalizer_spec", err) != 0) goto fail;
            pb_msg sub = pb_sub(&top, &f, "normalizer_spec");
            rc = read_normalizer_spec(&sub, &m->normalizer, err);
            break;
        }
        case 4: {
            if (pb_expect(&top, &f, WIRE_LEN, "self_test_data", err) != 0) goto fail;
            pb_msg sub = pb_sub(&top, &f, "self_test_data");
            rc = read_self_test(&sub, m, err);
            break;
        }
        case 5: {
            if (pb_expect(&top, &f, WIRE_LEN, "denormalizer_spec", err) != 0) goto fail;
            pb_msg sub = pb_sub(&top, &f, "denormalizer_spec");
            rc = read_normalizer_spec(&sub, &m->denormalizer, err);
            break;
        }
        default: break;
        }
        if (rc != 0) goto fail;
    }
    if (r < 0) goto fail;
    return 0;
fail:
    bc__sp_model_free(m);
    return -1;
}

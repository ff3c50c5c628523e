/*
 * test_sp_model.c - the tokenizer.model reader and the tokenizer's buffer
 * conventions, through the public API:
 *
 *   - a real SentencePiece model (tests/data/tiny_bpe.model) loads and
 *     encodes as SentencePiece does (ids recorded from sentencepiece 0.1.97);
 *   - every truncation of it is refused with a message naming the file;
 *   - thousands of random byte mutations never crash (run under ASan/UBSan);
 *   - hand-made models: each kind of wire-format damage and each invalid
 *     vocabulary is refused with a message naming the field or piece and,
 *     for wire damage, the byte offset; unknown fields are skipped and
 *     repeated embedded messages merge, as protobuf does;
 *   - the streaming detokenizer holds back unfinished UTF-8 from byte pieces;
 *   - encode/decode/chat buffer conventions.
 *
 * usage: test_sp_model PATH/TO/tiny_bpe.model
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baichuan.h"

static const char *real_model_path;
static char tmp_path[64];

/* ------------------------------------------------------------------------ */
/* A protobuf writer for hand-made models                                   */
/* ------------------------------------------------------------------------ */

typedef struct pbw {
    uint8_t *data;
    size_t len, cap;
} pbw;

static void w_raw(pbw *w, const void *p, size_t n) {
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 64;
        w->data = realloc(w->data, w->cap);
        assert_non_null(w->data);
    }
    if (n > 0) memcpy(w->data + w->len, p, n);
    w->len += n;
}

static void w_varint(pbw *w, uint64_t v) {
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) b |= 0x80;
        w_raw(w, &b, 1);
    } while (v);
}

static void w_key(pbw *w, uint32_t field, int wire) { w_varint(w, (uint64_t)field << 3 | (uint64_t)wire); }
static void w_int(pbw *w, uint32_t field, int64_t v) {
    w_key(w, field, 0);
    w_varint(w, (uint64_t)v);
}
static void w_bytes(pbw *w, uint32_t field, const void *p, size_t n) {
    w_key(w, field, 2);
    w_varint(w, n);
    w_raw(w, p, n);
}
static void w_str(pbw *w, uint32_t field, const char *s) { w_bytes(w, field, s, strlen(s)); }
static void w_float(pbw *w, uint32_t field, float f) {
    w_key(w, field, 5);
    w_raw(w, &f, 4);
}
static void w_msg(pbw *w, uint32_t field, pbw *sub) {
    w_bytes(w, field, sub->data, sub->len);
    free(sub->data);
    memset(sub, 0, sizeof *sub);
}

/* Types (ModelProto.SentencePiece.Type). */
enum { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 };

static void w_piece(pbw *w, const char *text, float score, int type) {
    pbw p = {0};
    w_str(&p, 1, text);
    w_float(&p, 2, score);
    if (type != NORMAL) w_int(&p, 3, type);
    w_msg(w, 1, &p);
}

/* Knobs for the hand-made model. */
typedef struct spec {
    int model_type;     /* 2 = BPE */
    bool byte_fallback; /* adds the 256 byte pieces */
    int skip_byte;      /* with byte_fallback: leave this byte's piece out (-1: none) */
    bool add_dummy_prefix;
    const char *extra_piece; /* appended as a normal piece when not NULL */
    int extra_type;
    float extra_score;
    bool no_unk;
    bool no_trainer, no_normalizer;
    const char *charsmap; /* precompiled_charsmap bytes */
    size_t charsmap_len;
    bool denormalizer_charsmap;
    const char *sample_input, *sample_expected; /* self_test_data */
    bool unknown_fields;                        /* sprinkle fields the reader does not know */
    bool split_trainer;                         /* trainer_spec in two parts (protobuf merges them) */
} spec;

static spec default_spec(void) {
    spec s;
    memset(&s, 0, sizeof s);
    s.model_type = 2;
    s.skip_byte = -1;
    s.extra_type = NORMAL;
    return s;
}

/* pieces: <unk> <s> </s> then a small BPE vocabulary over "abc" and the
 * space symbol, then optional byte pieces. */
static void build(const spec *s, pbw *w) {
    memset(w, 0, sizeof *w);
    if (s->unknown_fields) {
        w_int(w, 99, 12345);
        w_key(w, 100, 1);
        w_raw(w, "\1\2\3\4\5\6\7\10", 8);
        w_str(w, 101, "ignored");
        w_key(w, 102, 5);
        w_raw(w, "\1\2\3\4", 4);
    }
    if (!s->no_unk) w_piece(w, "<unk>", 0, UNKNOWN);
    w_piece(w, "<s>", 0, CONTROL);
    w_piece(w, "</s>", 0, CONTROL);
    w_piece(w, "ab", -1, NORMAL);
    w_piece(w, "abc", -2, NORMAL);
    w_piece(w,
            "\xe2\x96\x81"
            "a",
            -3, NORMAL);
    w_piece(w, "a", -4, NORMAL);
    w_piece(w, "b", -5, NORMAL);
    w_piece(w, "c", -6, NORMAL);
    w_piece(w, "\xe2\x96\x81", -7, NORMAL);
    if (s->extra_piece) w_piece(w, s->extra_piece, s->extra_score, s->extra_type);
    if (s->byte_fallback)
        for (int b = 0; b < 256; b++) {
            if (b == s->skip_byte) continue;
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            w_piece(w, name, 0, BYTE);
        }
    if (!s->no_trainer) {
        pbw t = {0};
        if (s->unknown_fields) w_int(&t, 77, 1);
        w_int(&t, 3, s->model_type);
        if (s->split_trainer) {
            w_msg(w, 2, &t);
            memset(&t, 0, sizeof t);
        }
        w_int(&t, 35, s->byte_fallback);
        w_int(&t, 43, -1); /* pad_id -1: a ten-byte varint */
        w_msg(w, 2, &t);
    }
    if (!s->no_normalizer) {
        pbw n = {0};
        w_str(&n, 1, "identity");
        if (s->charsmap) w_bytes(&n, 2, s->charsmap, s->charsmap_len);
        w_int(&n, 3, s->add_dummy_prefix);
        w_int(&n, 4, 0);
        if (s->unknown_fields) w_str(&n, 66, "x");
        w_msg(w, 3, &n);
    }
    if (s->sample_input) {
        pbw sample = {0}, data = {0};
        w_str(&sample, 1, s->sample_input);
        w_str(&sample, 2, s->sample_expected);
        w_msg(&data, 1, &sample);
        w_msg(w, 4, &data);
    }
    if (s->denormalizer_charsmap) {
        pbw n = {0};
        w_bytes(&n, 2, "\x08\0\0\0abcdefgh", 12);
        w_msg(w, 5, &n);
    }
}

static void write_tmp(const void *data, size_t n) {
    FILE *f = fopen(tmp_path, "wb");
    assert_non_null(f);
    if (n > 0) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Loads tmp_path; returns the status, the message in msg. */
static bc_status load_tmp(bc_tokenizer **tok, char *msg, size_t n) {
    msg[0] = '\0';
    return bc_tokenizer_load(tmp_path, tok, msg, n);
}

static bc_tokenizer *load_spec(const spec *s) {
    pbw w;
    build(s, &w);
    write_tmp(w.data, w.len);
    free(w.data);
    bc_tokenizer *tok;
    char msg[1024];
    if (load_tmp(&tok, msg, sizeof msg) != BC_STATUS_OK) fail_msg("hand-made model refused: %s", msg);
    return tok;
}

/* The model must be refused with a message holding the file name and
 * every needle. */
static void expect_refused_bytes(const void *data, size_t n, const char *needle1, const char *needle2) {
    write_tmp(data, n);
    bc_tokenizer *tok = (bc_tokenizer *)1;
    char msg[1024];
    bc_status st = load_tmp(&tok, msg, sizeof msg);
    if (st == BC_STATUS_OK) {
        bc_tokenizer_free(tok);
        fail_msg("accepted a bad model (expected '%s')", needle1);
    }
    assert_null(tok);
    if (strstr(msg, tmp_path) == NULL) fail_msg("message does not name the file: %s", msg);
    if (needle1 && strstr(msg, needle1) == NULL) fail_msg("message '%s' lacks '%s'", msg, needle1);
    if (needle2 && strstr(msg, needle2) == NULL) fail_msg("message '%s' lacks '%s'", msg, needle2);
}

static void expect_refused(const spec *s, const char *needle1, const char *needle2) {
    pbw w;
    build(s, &w);
    expect_refused_bytes(w.data, w.len, needle1, needle2);
    free(w.data);
}

/* Encodes text; returns the ids as "1 2 3" in out. */
static void encode_str(const bc_tokenizer *tok, const char *text, char *out, size_t n) {
    int32_t ids[256];
    size_t n_ids;
    assert_int_equal(bc_tokenizer_encode(tok, text, strlen(text), BC_SWITCH_OFF, BC_SWITCH_OFF, ids, 256, &n_ids),
                     BC_STATUS_OK);
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n_ids; i++) k += (size_t)snprintf(out + k, n - k, i ? " %d" : "%d", (int)ids[i]);
}

static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)n);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return data;
}

/* ------------------------------------------------------------------------ */
/* The real model                                                           */
/* ------------------------------------------------------------------------ */

static void test_real_model(void **state) {
    (void)state;
    bc_tokenizer *tok;
    char msg[1024];
    if (bc_tokenizer_load(real_model_path, &tok, msg, sizeof msg) != BC_STATUS_OK) fail_msg("%s", msg);
    bc_tokenizer_info info;
    bc_tokenizer_get_info(tok, &info);
    assert_int_equal(info.n_vocab, 400);
    assert_int_equal(info.bos_id, 1);
    assert_int_equal(info.eos_id, 2);
    assert_int_equal(info.unk_id, 0);
    assert_int_equal(info.pad_id, -1);
    assert_true(info.byte_fallback);
    assert_string_equal(info.normalizer, "identity");
    assert_false(info.has_charsmap);
    assert_false(info.add_dummy_prefix);
    assert_int_equal(info.n_piece_types[BC_PIECE_TYPE_BYTE], 256);
    assert_int_equal(info.n_piece_types[BC_PIECE_TYPE_CONTROL], 4);
    assert_int_equal(info.n_piece_types[BC_PIECE_TYPE_USER_DEFINED], 1);
    size_t len;
    bc_piece_type type;
    assert_string_equal(bc_tokenizer_piece(tok, 3, &len, &type), "<reserved_106>");
    assert_int_equal(type, BC_PIECE_TYPE_CONTROL);
    assert_null(bc_tokenizer_piece(tok, 400, NULL, NULL));

    /* Ids recorded from sentencepiece 0.1.97 (python3-sentencepiece). */
    static const struct {
        const char *text, *ids;
    } cases[] = {
        {"Hello world", "372 307 288 311 277 305 304"},
        {"  def f(x):\n\treturn x", "262 303 322 280 338 345 339 335 16 15 271 308 319 313 310 306 345"},
        {"\xe4\xbd\xa0\xe5\xa5\xbd<reserved_5><s>", "234 195 166 235 171 195 5 351 314 342"},
        {"caf\xc3\xa9 2024-01-15 \xf0\x9f\x98\x80",
         "318 309 322 201 175 306 333 323 333 340 344 323 328 344 328 336 306 246 165 158 134"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[1024];
        encode_str(tok, cases[i].text, got, sizeof got);
        assert_string_equal(got, cases[i].ids);
    }
    bc_tokenizer_free(tok);
}

static void test_every_truncation_refused(void **state) {
    (void)state;
    size_t size;
    uint8_t *data = read_file(real_model_path, &size);
    for (size_t cut = 0; cut < size; cut++) {
        write_tmp(data, cut);
        bc_tokenizer *tok = (bc_tokenizer *)1;
        char msg[1024];
        if (load_tmp(&tok, msg, sizeof msg) == BC_STATUS_OK) {
            bc_tokenizer_free(tok);
            fail_msg("a copy cut to %zu of %zu bytes loaded", cut, size);
        }
        assert_null(tok);
        if (strstr(msg, tmp_path) == NULL) fail_msg("cut %zu: message does not name the file: %s", cut, msg);
    }
    free(data);
}

/* Random damage: loading may fail or succeed, but never crash; what loads
 * must encode and decode. */
static void test_mutations_never_crash(void **state) {
    (void)state;
    size_t size;
    uint8_t *orig = read_file(real_model_path, &size);
    uint8_t *data = malloc(size);
    assert_non_null(data);
    uint64_t rng = 0x2545f4914f6cdd1dull;
    int loaded = 0;
    for (int iter = 0; iter < 10000; iter++) {
        memcpy(data, orig, size);
        int n_mut = 1 + iter % 3;
        for (int k = 0; k < n_mut; k++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            size_t pos = (size_t)(rng % size);
            data[pos] = (uint8_t)(rng >> 32);
        }
        write_tmp(data, size);
        bc_tokenizer *tok;
        char msg[1024];
        if (load_tmp(&tok, msg, sizeof msg) != BC_STATUS_OK) {
            if (msg[0] == '\0') fail_msg("refused without a message");
            continue;
        }
        loaded++;
        static const char text[] = "Hello  world\t42 \xe4\xbd\xa0\xe5\xa5\xbd \xff <s>";
        int32_t ids[256];
        size_t n_ids;
        bc_status st = bc_tokenizer_encode(tok, text, sizeof text - 1, BC_SWITCH_OFF, BC_SWITCH_OFF, ids, 256, &n_ids);
        assert_int_equal(st, BC_STATUS_OK);
        char out[1024];
        size_t out_len;
        assert_int_equal(bc_tokenizer_decode(tok, ids, n_ids, out, sizeof out, &out_len), BC_STATUS_OK);
        bc_tokenizer_free(tok);
    }
    print_message("%d of 10000 mutated models loaded\n", loaded);
    free(data);
    free(orig);
}

/* ------------------------------------------------------------------------ */
/* Hand-made models                                                         */
/* ------------------------------------------------------------------------ */

static void test_handmade_valid(void **state) {
    (void)state;
    spec s = default_spec();
    bc_tokenizer *tok = load_spec(&s);
    char got[256];
    /* ids: <unk>0 <s>1 </s>2 ab3 abc4 _a5 a6 b7 c8 _9 */
    encode_str(tok, "abcab a", got, sizeof got);
    assert_string_equal(got, "4 3 5");
    encode_str(tok, "xab", got, sizeof got); /* no byte pieces: x is unknown */
    assert_string_equal(got, "0 3");
    encode_str(tok, "xyzab", got, sizeof got); /* a run of unknowns is one id */
    assert_string_equal(got, "0 3");
    bc_tokenizer_free(tok);

    /* Unknown fields anywhere are skipped; the model is the same. */
    s.unknown_fields = true;
    tok = load_spec(&s);
    encode_str(tok, "abcab a", got, sizeof got);
    assert_string_equal(got, "4 3 5");
    bc_tokenizer_free(tok);

    /* trainer_spec given in two parts: protobuf merges them. */
    s = default_spec();
    s.split_trainer = true;
    s.byte_fallback = true;
    tok = load_spec(&s);
    encode_str(tok, "xab", got, sizeof got);
    assert_string_equal(got, "130 3"); /* x = 0x78, byte pieces start at id 10 */
    bc_tokenizer_free(tok);

    /* A passing self test. */
    s = default_spec();
    s.sample_input = "abcab";
    s.sample_expected = "abc ab";
    tok = load_spec(&s);
    bc_tokenizer_free(tok);
}

static void test_wire_damage(void **state) {
    (void)state;
    static const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_refused_bytes(long_varint, sizeof long_varint, "byte 1", "varint");
    static const uint8_t overflow[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    expect_refused_bytes(overflow, sizeof overflow, "byte 1", "overflows");
    static const uint8_t field0[] = {0x02, 0x00};
    expect_refused_bytes(field0, sizeof field0, "byte 0", "field number 0");
    static const uint8_t group[] = {0x0b, 0x0c};
    expect_refused_bytes(group, sizeof group, "wire type 3", NULL);
    static const uint8_t wire6[] = {0x0e};
    expect_refused_bytes(wire6, sizeof wire6, "wire type 6", NULL);
    static const uint8_t past_end[] = {0x0a, 0x10, 0x0a, 0x01, 0x61};
    expect_refused_bytes(past_end, sizeof past_end, "length 16", "truncated");
    static const uint8_t fixed32_cut[] = {0x2d, 0x01, 0x02};
    expect_refused_bytes(fixed32_cut, sizeof fixed32_cut, "fixed32", NULL);
    static const uint8_t fixed64_cut[] = {0x29, 0x01, 0x02};
    expect_refused_bytes(fixed64_cut, sizeof fixed64_cut, "fixed64", NULL);
    /* pieces (field 1) as a varint */
    static const uint8_t pieces_varint[] = {0x08, 0x01};
    expect_refused_bytes(pieces_varint, sizeof pieces_varint, "pieces", "wire type varint");
    /* a piece's score as a varint, in the second piece: the message names it */
    pbw w = {0}, p = {0};
    w_piece(&w, "<unk>", 0, UNKNOWN);
    w_str(&p, 1, "a");
    w_int(&p, 2, 5);
    w_msg(&w, 1, &p);
    expect_refused_bytes(w.data, w.len, "pieces[1]", "score");
    free(w.data);
    /* an unknown piece type */
    memset(&w, 0, sizeof w);
    w_str(&p, 1, "a");
    w_int(&p, 3, 9);
    w_msg(&w, 1, &p);
    expect_refused_bytes(w.data, w.len, "type 9", "pieces[0]");
    free(w.data);
    /* a truncated piece inside a valid outer length */
    memset(&w, 0, sizeof w);
    w_raw(&p, "\x0a\x05\x61", 3);
    w_msg(&w, 1, &p);
    expect_refused_bytes(w.data, w.len, "pieces[0]", "length 5");
    free(w.data);
    /* empty file */
    expect_refused_bytes("", 0, "empty", NULL);
}

static void test_vocabulary_refused(void **state) {
    (void)state;
    spec s = default_spec();
    s.model_type = 1;
    expect_refused(&s, "model_type is unigram (1)", "only BPE");
    s.model_type = 9;
    expect_refused(&s, "model_type 9", "trainer_spec");
    s = default_spec();
    s.no_trainer = true;
    expect_refused(&s, "no trainer_spec", NULL);
    s = default_spec();
    s.no_normalizer = true;
    expect_refused(&s, "no normalizer_spec", NULL);
    s = default_spec();
    s.extra_piece = "";
    expect_refused(&s, "piece 10 is empty", NULL);
    s.extra_piece = "ab";
    expect_refused(&s, "piece 10", "already defined as piece 3");
    s.extra_piece = "<s>";
    s.extra_type = CONTROL;
    expect_refused(&s, "already defined as piece 1", NULL);
    s.extra_piece = "<unk2>";
    s.extra_type = UNKNOWN;
    expect_refused(&s, "both of type unknown", NULL);
    s.extra_piece = "<0x41>";
    s.extra_type = BYTE;
    expect_refused(&s, "byte_fallback is false", NULL);
    s.extra_piece = "zz";
    s.extra_type = NORMAL;
    s.extra_score = NAN;
    expect_refused(&s, "NaN score", "zz");
    s = default_spec();
    s.no_unk = true;
    expect_refused(&s, "no piece has type unknown", NULL);
    s = default_spec();
    s.byte_fallback = true;
    s.skip_byte = 0x7f;
    expect_refused(&s, "no byte piece <0x7F>", NULL);
    s = default_spec();
    s.byte_fallback = true;
    s.skip_byte = 0x41;
    s.extra_piece = "<0x4g>";
    s.extra_type = BYTE;
    expect_refused(&s, "not of the form <0xXX>", NULL);
    s = default_spec();
    s.charsmap = "\x10\0\0\0ab";
    s.charsmap_len = 6;
    expect_refused(&s, "precompiled_charsmap is broken", NULL);
    s = default_spec();
    s.denormalizer_charsmap = true;
    expect_refused(&s, "denormalizer_spec", "not supported");
    s = default_spec();
    s.sample_input = "abcab";
    s.sample_expected = "ab c ab";
    expect_refused(&s, "self_test_data sample 0 fails", "abc ab");
}

/* ------------------------------------------------------------------------ */
/* Decoding, streaming, buffers                                             */
/* ------------------------------------------------------------------------ */

static int32_t byte_id(uint8_t b) { return 10 + b; } /* in the hand-made model with byte_fallback */

static void test_streaming_bytes(void **state) {
    (void)state;
    spec s = default_spec();
    s.byte_fallback = true;
    bc_tokenizer *tok = load_spec(&s);
    bc_detokenizer *d;
    assert_int_equal(bc_detokenizer_init(tok, &d), BC_STATUS_OK);
    const char *t;
    size_t n;
    /* U+20AC in three byte pieces: nothing until the last. */
    assert_int_equal(bc_detokenizer_push(d, byte_id(0xe2), &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(bc_detokenizer_push(d, byte_id(0x82), &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(bc_detokenizer_push(d, byte_id(0xac), &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(t, "\xe2\x82\xac", 3);
    /* A lead byte followed by a non-continuation: U+FFFD at once, then A. */
    assert_int_equal(bc_detokenizer_push(d, byte_id(0xe2), &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(bc_detokenizer_push(d, byte_id(0x41), &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(t,
                        "\xef\xbf\xbd"
                        "A",
                        4);
    /* A surrogate's prefix is invalid as soon as its second byte is seen. */
    assert_int_equal(bc_detokenizer_push(d, byte_id(0xed), &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(bc_detokenizer_push(d, byte_id(0xa0), &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 6);
    /* An unfinished character, then a normal piece: U+FFFD per byte first. */
    assert_int_equal(bc_detokenizer_push(d, byte_id(0xf0), &t, &n), BC_STATUS_OK);
    assert_int_equal(bc_detokenizer_push(d, byte_id(0x9f), &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(bc_detokenizer_push(d, 4, &t, &n), BC_STATUS_OK); /* "abc" */
    assert_int_equal(n, 9);
    assert_memory_equal(t,
                        "\xef\xbf\xbd\xef\xbf\xbd"
                        "abc",
                        9);
    /* Flush gives what is held back and starts over. */
    assert_int_equal(bc_detokenizer_push(d, byte_id(0xc3), &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(bc_detokenizer_flush(d, &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(bc_detokenizer_flush(d, &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);
    /* Control pieces vanish; an id outside the vocabulary is refused. */
    assert_int_equal(bc_detokenizer_push(d, 1, &t, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(bc_detokenizer_push(d, 10 + 256, &t, &n), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(bc_detokenizer_push(d, -1, &t, &n), BC_STATUS_ERROR_ARGUMENT);
    bc_detokenizer_free(d);
    bc_tokenizer_free(tok);
}

static void test_dummy_prefix_decode(void **state) {
    (void)state;
    spec s = default_spec();
    s.add_dummy_prefix = true;
    bc_tokenizer *tok = load_spec(&s);
    char got[256];
    encode_str(tok, "a a", got, sizeof got); /* "_a_a" */
    assert_string_equal(got, "5 5");
    int32_t ids[] = {1, 5, 5, 2}; /* <s> _a _a </s> */
    char text[16];
    size_t n;
    assert_int_equal(bc_tokenizer_decode(tok, ids, 4, text, sizeof text, &n), BC_STATUS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(text, "a a");
    int32_t unk[] = {0, 6};
    assert_int_equal(bc_tokenizer_decode(tok, unk, 2, text, sizeof text, &n), BC_STATUS_OK);
    assert_string_equal(text, " \xe2\x81\x87 a");
    bc_tokenizer_free(tok);
}

static void test_buffers(void **state) {
    (void)state;
    spec s = default_spec();
    bc_tokenizer *tok = load_spec(&s);
    int32_t ids[8];
    size_t n = 99;
    /* Size query, too small, exact. */
    assert_int_equal(bc_tokenizer_encode(tok, "abcabc", 6, BC_SWITCH_OFF, BC_SWITCH_OFF, NULL, 0, &n),
                     BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(n, 2);
    assert_int_equal(bc_tokenizer_encode(tok, "abcabc", 6, BC_SWITCH_ON, BC_SWITCH_ON, ids, 3, &n),
                     BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(n, 4);
    assert_int_equal(bc_tokenizer_encode(tok, "abcabc", 6, BC_SWITCH_ON, BC_SWITCH_ON, ids, 4, &n), BC_STATUS_OK);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 4);
    assert_int_equal(ids[3], 2);
    /* AUTO: no tokenizer_config.json, so nothing added. */
    assert_int_equal(bc_tokenizer_encode(tok, "abc", 3, BC_SWITCH_AUTO, BC_SWITCH_AUTO, ids, 8, &n), BC_STATUS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(bc_tokenizer_encode(tok, "", 0, BC_SWITCH_OFF, BC_SWITCH_OFF, NULL, 0, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);

    char text[8];
    int32_t dec[] = {4, 4, 4}; /* "abcabcabc" */
    assert_int_equal(bc_tokenizer_decode(tok, dec, 3, text, 4, &n), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(n, 9);
    assert_int_equal(bc_tokenizer_decode(tok, dec, 2, text, 6, &n), BC_STATUS_OK); /* fits, no room for NUL */
    assert_int_equal(n, 6);
    assert_memory_equal(text, "abcabc", 6);
    assert_int_equal(bc_tokenizer_decode(tok, dec, 2, text, 7, &n), BC_STATUS_OK);
    assert_string_equal(text, "abcabc");
    int32_t bad[] = {4, 10};
    assert_int_equal(bc_tokenizer_decode(tok, bad, 2, text, sizeof text, &n), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(n, 0);
    assert_int_equal(bc_tokenizer_decode(tok, NULL, 0, NULL, 0, &n), BC_STATUS_OK);
    assert_int_equal(n, 0);
    bc_tokenizer_free(tok);
}

static void test_chat_errors(void **state) {
    (void)state;
    spec s = default_spec();
    bc_tokenizer *tok = load_spec(&s);
    bc_chat_params p = bc_chat_default_params(tok);
    assert_int_equal(p.user_token_id, 195);
    assert_int_equal(p.assistant_token_id, 196);
    assert_int_equal(p.max_length, 4096);
    assert_int_equal(p.max_new_tokens, 2048);
    p.user_token_id = 1;
    p.assistant_token_id = 2;
    int32_t ids[64];
    size_t n;
    char err[256];
    bc_chat_message m[3] = {
        {BC_CHAT_ROLE_SYSTEM, "ab", 2}, {BC_CHAT_ROLE_USER, "abc", 3}, {BC_CHAT_ROLE_SYSTEM, "", 0}};
    assert_int_equal(bc_chat_encode(tok, m, 2, p, ids, 64, &n, err, sizeof err), BC_STATUS_OK);
    assert_int_equal(n, 4); /* ab, <user> abc, <assistant> */
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[2], 4);
    assert_int_equal(ids[3], 2);
    assert_int_equal(bc_chat_encode(tok, m, 3, p, ids, 64, &n, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(err, "message 3 is a system message"));
    assert_int_equal(bc_chat_encode(tok, m, 0, p, ids, 64, &n, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(err, "no messages"));
    bc_chat_params q = p;
    q.max_new_tokens = q.max_length;
    assert_int_equal(bc_chat_encode(tok, m, 2, q, ids, 64, &n, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(err, "leaves no room"));
    q = p;
    q.user_token_id = 10;
    assert_int_equal(bc_chat_encode(tok, m, 2, q, ids, 64, &n, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(err, "vocabulary"));
    m[1].role = (bc_chat_role)7;
    assert_int_equal(bc_chat_encode(tok, m, 2, p, ids, 64, &n, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(err, "unknown role"));
    bc_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s tests/data/tiny_bpe.model\n", argv[0]);
        return 2;
    }
    real_model_path = argv[1];
    /* Thousands of small files are written: in memory when possible. */
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmp_path, sizeof tmp_path, "%s/bc_test_sp_model_%d.model", dir, (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_model),
        cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_mutations_never_crash),
        cmocka_unit_test(test_handmade_valid),
        cmocka_unit_test(test_wire_damage),
        cmocka_unit_test(test_vocabulary_refused),
        cmocka_unit_test(test_streaming_bytes),
        cmocka_unit_test(test_dummy_prefix_decode),
        cmocka_unit_test(test_buffers),
        cmocka_unit_test(test_chat_errors),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(tmp_path);
    int total = (int)(sizeof tests / sizeof tests[0]);
    printf("%d passed, %d failed\n", total - failed, failed);
    return failed;
}

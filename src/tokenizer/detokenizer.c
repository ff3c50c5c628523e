/*
 * detokenizer.c - ids back to text, whole or streaming, identical to
 * SentencePiece's DecodeIds.
 *
 * SentencePiece's rules: every id is looked up by its piece again
 * (PieceToId, reserved pieces first), so the type that counts is that of
 * the id the piece maps to. Control pieces decode to nothing; the unknown
 * piece to unk_surface (" \u2047 " by default); runs of byte pieces are
 * joined and decoded as UTF-8 from the start, each byte that does not begin
 * a valid sequence becoming U+FFFD; other pieces decode to their text with
 * U+2581 as a space. While nothing has been written yet, a piece that
 * starts with U+2581 loses it when the model adds a dummy prefix or removes
 * extra whitespace (with remove_extra_whitespaces every such leading piece
 * does, otherwise only the first).
 *
 * The streaming detokenizer applies the same rules one id at a time. The
 * only lookahead they need is inside a run of byte pieces: the bytes of a
 * character that could still become valid are held back (at most three)
 * until it is complete, proven invalid, or the run ends.
 */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

struct bc_detokenizer {
    const bc_tokenizer *tok;
    bc__buf out;        /* what the current call returns */
    uint8_t pending[4]; /* byte-piece bytes of an unfinished character */
    size_t n_pending;
    bool any_text;    /* something has been written */
    bool is_bos_ws;   /* a leading U+2581 may still be dropped */
    bool bos_ws_seen; /* the previous piece had one dropped */
};

static void detok_reset(bc_detokenizer *d) {
    d->n_pending = 0;
    d->any_text = false;
    d->is_bos_ws = true;
    d->bos_ws_seen = false;
}

static int out_append(bc_detokenizer *d, const void *p, size_t n) {
    if (n == 0) return 0;
    d->any_text = true;
    return bc__buf_append(&d->out, p, n);
}

/* Whether the bytes s[0, n), n below the length their lead byte claims,
 * can still be the start of a valid sequence (shortest form, no
 * surrogates, at most U+10FFFF). */
static bool could_complete(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
    } else if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return false;
    }
    if (n >= 2 && (s[1] < lo || s[1] > hi)) return false;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return false;
    return true;
}

static size_t lead_need(uint8_t c) {
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) return 2;
    if ((c & 0xf0) == 0xe0) return 3;
    if ((c & 0xf8) == 0xf0) return 4;
    return 1;
}

/* Writes out the held bytes that are decided; with `end` (the run of byte
 * pieces is over) all of them. */
static int resolve_bytes(bc_detokenizer *d, bool end) {
    static const char replacement[] = "\xef\xbf\xbd";
    while (d->n_pending > 0) {
        size_t need = lead_need(d->pending[0]);
        if (d->n_pending < need && !end && could_complete(d->pending, d->n_pending)) break;
        size_t len = bc__utf8_valid_len(d->pending, d->n_pending);
        if (len == 0) {
            if (out_append(d, replacement, 3) != 0) return -1;
            len = 1;
        } else if (out_append(d, d->pending, len) != 0) {
            return -1;
        }
        memmove(d->pending, d->pending + len, d->n_pending - len);
        d->n_pending -= len;
    }
    return 0;
}

static int detok_push(bc_detokenizer *d, int32_t id) {
    const bc_tokenizer *tok = d->tok;
    int32_t c = tok->canonical_id[id];
    int type = tok->types[c];
    if (type == BC__SP_BYTE) {
        const char *p = tok->piece_text + tok->piece_off[c]; /* "<0xXX>" */
        int hi = p[3] <= '9' ? p[3] - '0' : p[3] - 'A' + 10, lo = p[4] <= '9' ? p[4] - '0' : p[4] - 'A' + 10;
        d->pending[d->n_pending++] = (uint8_t)(hi * 16 + lo);
        return resolve_bytes(d, false);
    }
    if (resolve_bytes(d, true) != 0) return -1;
    if (d->bos_ws_seen || d->any_text) d->is_bos_ws = false;
    if (type == BC__SP_CONTROL) {
        d->bos_ws_seen = false;
        return 0;
    }
    if (type == BC__SP_UNKNOWN) {
        d->bos_ws_seen = false;
        return out_append(d, tok->unk_surface.ptr, tok->unk_surface.len);
    }
    const char *text = tok->decode_text + tok->decode_off[id];
    size_t len = tok->decode_off[id + 1] - tok->decode_off[id];
    bool dropped = false;
    const bc__normalizer *nz = &tok->normalizer;
    if (d->is_bos_ws && (nz->add_dummy_prefix || nz->remove_extra_whitespaces) && tok->decode_leading_ws[id]) {
        text++; /* U+2581 decodes to one space */
        len--;
        dropped = !nz->remove_extra_whitespaces;
    }
    d->bos_ws_seen = dropped;
    return out_append(d, text, len);
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */
/* ------------------------------------------------------------------------ */

bc_status bc_detokenizer_init(const bc_tokenizer *tok, bc_detokenizer **out) {
    if (out == NULL) return BC_STATUS_ERROR_ARGUMENT;
    *out = NULL;
    if (tok == NULL) return BC_STATUS_ERROR_ARGUMENT;
    bc_detokenizer *d = calloc(1, sizeof *d);
    if (d == NULL || bc__buf_reserve(&d->out, 256) != 0) {
        free(d);
        return BC_STATUS_ERROR_MEMORY;
    }
    d->tok = tok;
    detok_reset(d);
    *out = d;
    return BC_STATUS_OK;
}

void bc_detokenizer_free(bc_detokenizer *d) {
    if (d == NULL) return;
    free(d->out.data);
    free(d);
}

void bc_detokenizer_reset(bc_detokenizer *d) {
    if (d != NULL) detok_reset(d);
}

bc_status bc_detokenizer_push(bc_detokenizer *d, int32_t id, const char **text, size_t *text_len) {
    if (text != NULL) *text = "";
    if (text_len != NULL) *text_len = 0;
    if (d == NULL || text == NULL || text_len == NULL || id < 0 || id >= d->tok->n_vocab)
        return BC_STATUS_ERROR_ARGUMENT;
    d->out.len = 0;
    if (detok_push(d, id) != 0) return BC_STATUS_ERROR_MEMORY;
    *text = d->out.data;
    *text_len = d->out.len;
    return BC_STATUS_OK;
}

bc_status bc_detokenizer_flush(bc_detokenizer *d, const char **text, size_t *text_len) {
    if (text != NULL) *text = "";
    if (text_len != NULL) *text_len = 0;
    if (d == NULL || text == NULL || text_len == NULL) return BC_STATUS_ERROR_ARGUMENT;
    d->out.len = 0;
    if (resolve_bytes(d, true) != 0) return BC_STATUS_ERROR_MEMORY;
    *text = d->out.data;
    *text_len = d->out.len;
    detok_reset(d);
    return BC_STATUS_OK;
}

bc_status bc_tokenizer_decode(const bc_tokenizer *tok, const int32_t *ids, size_t n_ids, char *text, size_t text_cap,
                              size_t *text_len) {
    if (text_len != NULL) *text_len = 0;
    if (tok == NULL || text_len == NULL || (ids == NULL && n_ids > 0) || (text == NULL && text_cap > 0))
        return BC_STATUS_ERROR_ARGUMENT;
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= tok->n_vocab) return BC_STATUS_ERROR_ARGUMENT;
    bc_detokenizer d = {0};
    d.tok = tok;
    detok_reset(&d);
    int rc = 0;
    for (size_t i = 0; i < n_ids && rc == 0; i++) rc = detok_push(&d, ids[i]);
    if (rc == 0) rc = resolve_bytes(&d, true);
    if (rc != 0) {
        free(d.out.data);
        return BC_STATUS_ERROR_MEMORY;
    }
    *text_len = d.out.len;
    size_t n_copy = d.out.len < text_cap ? d.out.len : text_cap;
    if (n_copy > 0) memcpy(text, d.out.data, n_copy);
    if (d.out.len < text_cap) text[d.out.len] = '\0';
    free(d.out.data);
    return d.out.len <= text_cap ? BC_STATUS_OK : BC_STATUS_ERROR_ARGUMENT;
}

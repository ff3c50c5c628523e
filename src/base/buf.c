/*
 * buf.c - growable byte buffers and SentencePiece's strict UTF-8 decoding
 * (see base.h).
 */
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

int bc__buf_reserve(bc__buf *b, size_t extra) {
    if (b->cap - b->len >= extra) return 0;
    size_t need = b->len + extra;
    if (need < b->len) return -1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    char *g = realloc(b->data, cap);
    if (g == NULL) return -1;
    b->data = g;
    b->cap = cap;
    return 0;
}

int bc__buf_append(bc__buf *b, const void *p, size_t n) {
    if (n == 0) return 0;
    if (bc__buf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static inline int is_trail(uint8_t c) { return (c & 0xc0) == 0x80; }

/* util.cc DecodeUTF8 + IsValidDecodeUTF8: shortest form only, no
 * surrogates, nothing above U+10FFFF. */
size_t bc__utf8_valid_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if (n >= 2 && (c & 0xe0) == 0xc0) {
        uint32_t cp = ((uint32_t)(c & 0x1f) << 6) | (s[1] & 0x3f);
        if (is_trail(s[1]) && cp >= 0x80) return 2;
    } else if (n >= 3 && (c & 0xf0) == 0xe0) {
        uint32_t cp = ((uint32_t)(c & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
        if (is_trail(s[1]) && is_trail(s[2]) && cp >= 0x800 && (cp < 0xd800 || cp >= 0xe000)) return 3;
    } else if (n >= 4 && (c & 0xf8) == 0xf0) {
        uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) | ((uint32_t)(s[2] & 0x3f) << 6) |
                      (s[3] & 0x3f);
        if (is_trail(s[1]) && is_trail(s[2]) && is_trail(s[3]) && cp >= 0x10000 && cp <= 0x10ffff) return 4;
    }
    return 0;
}

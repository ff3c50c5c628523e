/*
 * util.c - byte buffers, clocks and JSON helpers for the server.
 */
#include "util.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int srv_buf_append(srv_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int srv_buf_puts(srv_buf *b, const char *s) { return srv_buf_append(b, s, strlen(s)); }

int srv_buf_printf(srv_buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return srv_buf_append(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (big == NULL) return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int r = srv_buf_append(b, big, (size_t)n);
    free(big);
    return r;
}

void srv_buf_free(srv_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double srv_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void srv_iso_time(double t, char *out, size_t cap) {
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", base, (int)((t - (double)s) * 1000.0));
}

char *srv_json_dump(const json_t *v) { return json_dumps(v, JSON_COMPACT); }

/* The length of the well-formed UTF-8 sequence that starts s (n bytes
 * left), or 0: no overlong forms, surrogates or code points past U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, cp = s[0] & 0x1fu, min = 0x80;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0fu, min = 0x800;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, cp = s[0] & 0x07u, min = 0x10000;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

/* text as a JSON string, with every byte that is not part of well-formed
 * UTF-8 written as \xNN: error messages quote what the client sent (a URL,
 * a method, a role cut at 64 bytes), and jansson refuses invalid UTF-8, which
 * would leave the request without an answer. */
static json_t *json_string_lossless(const char *text) {
    json_t *v = json_string(text);
    if (v != NULL) return v;
    srv_buf b = {0};
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence(s + i, n - i);
        if (len > 0) {
            srv_buf_append(&b, s + i, len);
            i += len;
        } else {
            srv_buf_printf(&b, "\\x%02x", s[i++]);
        }
    }
    v = b.data ? json_string(b.data) : NULL;
    srv_buf_free(&b);
    return v;
}

json_t *srv_error_json(const char *message, const char *type, const char *param, const char *code) {
    return json_pack("{s:{s:o, s:s, s:o, s:o}}", "error", "message", json_string_lossless(message), "type", type,
                     "param", param ? json_string_lossless(param) : json_null(), "code",
                     code ? json_string(code) : json_null());
}

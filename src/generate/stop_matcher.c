/*
 * stop_matcher.c - hold back generated text that may be the start of a stop
 * string; drop everything from a completed stop string on.
 *
 * State: `held`, the tail of the text so far that is a proper prefix of some
 * stop string (shorter than the longest stop). A push appends to it, finds
 * the earliest complete stop, else releases all but the longest suffix that
 * could still grow into a stop.
 */
#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bc_stop_matcher {
    char **stops; /* (n) owned copies */
    size_t *lens; /* (n) */
    size_t n;
    char *buf; /* held tail + the pushed text */
    size_t len, cap;
    char *out; /* what the last call released */
    size_t out_cap;
    bool stopped;
};

/* Whether s[0..n) is valid UTF-8 (no overlongs, no surrogates). */
static bool utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0)
            k = 1, min = 0x80, c &= 0x1f;
        else if ((c & 0xf0) == 0xe0)
            k = 2, min = 0x800, c &= 0x0f;
        else if ((c & 0xf8) == 0xf0)
            k = 3, min = 0x10000, c &= 0x07;
        else
            return false;
        if (i + k >= n) return false; /* truncated sequence */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return false;
            c = (c << 6) | (s[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
        i += k + 1;
    }
    return true;
}

bc_status bc_stop_matcher_init(const char *const *stops, size_t n, bc_stop_matcher **out, char *err, size_t err_size) {
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        if (stops[i] == NULL || stops[i][0] == '\0') {
            if (err_size) snprintf(err, err_size, "stop string %zu is empty", i + 1);
            return BC_STATUS_ERROR_ARGUMENT;
        }
        if (!utf8_valid((const unsigned char *)stops[i], strlen(stops[i]))) {
            if (err_size) snprintf(err, err_size, "stop string %zu is not valid UTF-8", i + 1);
            return BC_STATUS_ERROR_ARGUMENT;
        }
    }
    bc_stop_matcher *m = calloc(1, sizeof *m);
    if (m == NULL) goto oom;
    m->n = n;
    /* Buffers exist from the start, so no copy ever involves a NULL pointer. */
    m->cap = m->out_cap = 64;
    m->buf = malloc(m->cap);
    m->out = malloc(m->out_cap);
    if (m->buf == NULL || m->out == NULL) goto oom;
    m->stops = calloc(n ? n : 1, sizeof *m->stops);
    m->lens = calloc(n ? n : 1, sizeof *m->lens);
    if (m->stops == NULL || m->lens == NULL) goto oom;
    for (size_t i = 0; i < n; i++) {
        if ((m->stops[i] = bc__strdup(stops[i])) == NULL) goto oom;
        m->lens[i] = strlen(stops[i]);
    }
    *out = m;
    return BC_STATUS_OK;
oom:
    bc_stop_matcher_free(m);
    if (err_size) snprintf(err, err_size, "out of memory");
    return BC_STATUS_ERROR_MEMORY;
}

void bc_stop_matcher_free(bc_stop_matcher *m) {
    if (m == NULL) return;
    for (size_t i = 0; i < m->n && m->stops; i++) free(m->stops[i]);
    free(m->stops);
    free(m->lens);
    free(m->buf);
    free(m->out);
    free(m);
}

void bc_stop_matcher_reset(bc_stop_matcher *m) {
    m->len = 0;
    m->stopped = false;
}

/* Copies n bytes of buf to the out buffer. Returns false on OOM. */
static bool release(bc_stop_matcher *m, size_t n, const char **out, size_t *out_len) {
    if (n + 1 > m->out_cap) {
        size_t cap = (n + 1) * 2;
        char *p = realloc(m->out, cap);
        if (p == NULL) return false;
        m->out = p;
        m->out_cap = cap;
    }
    memcpy(m->out, m->buf, n);
    m->out[n] = '\0';
    *out = m->out;
    *out_len = n;
    return true;
}

bool bc_stop_matcher_push(bc_stop_matcher *m, const char *text, size_t len, const char **out, size_t *out_len) {
    static const char empty[] = "";
    *out = empty;
    *out_len = 0;
    if (m->stopped) return true;
    if (m->len + len > m->cap) {
        size_t cap = (m->len + len) * 2 + 16;
        char *p = realloc(m->buf, cap);
        if (p == NULL) return false; /* text lost only under OOM */
        m->buf = p;
        m->cap = cap;
    }
    if (len > 0) memcpy(m->buf + m->len, text, len);
    m->len += len;

    /* The earliest complete stop string. */
    size_t first = SIZE_MAX;
    for (size_t i = 0; i < m->n; i++)
        for (size_t at = 0; at + m->lens[i] <= m->len && at < first; at++)
            if (memcmp(m->buf + at, m->stops[i], m->lens[i]) == 0) {
                first = at;
                break;
            }
    if (first != SIZE_MAX) {
        m->stopped = true;
        release(m, first, out, out_len);
        m->len = 0;
        return true;
    }
    /* The longest suffix that is a proper prefix of some stop. */
    size_t hold = 0;
    for (size_t i = 0; i < m->n; i++)
        for (size_t k = m->lens[i] - 1; k > hold; k--)
            if (k <= m->len && memcmp(m->buf + m->len - k, m->stops[i], k) == 0) {
                hold = k;
                break;
            }
    size_t emit = m->len - hold;
    if (release(m, emit, out, out_len)) {
        memmove(m->buf, m->buf + emit, hold);
        m->len = hold;
    }
    return false;
}

void bc_stop_matcher_flush(bc_stop_matcher *m, const char **out, size_t *out_len) {
    static const char empty[] = "";
    *out = empty;
    *out_len = 0;
    if (!m->stopped && release(m, m->len, out, out_len)) m->len = 0;
}

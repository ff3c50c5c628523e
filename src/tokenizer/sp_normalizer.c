/*
 * sp_normalizer.c - SentencePiece's normalizer, byte for byte.
 *
 *   UTF-8          SentencePiece's strict decoder (a malformed byte becomes
 *                  U+FFFD and consumes one byte)
 *   byte trie      the user-defined symbols' longest-prefix matcher
 *   charsmap       precompiled_charsmap: a Darts-clone double-array trie of
 *                  source strings whose values index NUL-terminated
 *                  replacement strings (nmt_nfkc and friends)
 *   normalize      dummy prefix, extra-whitespace removal, U+2581 escaping
 *
 * Normalization, per SentencePiece: the text is consumed one "prefix" at a
 * time: a user-defined symbol (taken as is), else the longest charsmap
 * entry (replaced), else one UTF-8 character (or one malformed byte, which
 * becomes U+FFFD). With remove_extra_whitespaces, leading spaces are
 * dropped, runs of spaces collapse to one, trailing spaces are dropped.
 * With escape_whitespaces every ' ' becomes U+2581. add_dummy_prefix puts
 * one U+2581 before the text (after it when treat_whitespace_as_suffix).
 * An empty text (or, with remove_extra_whitespaces, all spaces) normalizes
 * to nothing, without a dummy prefix.
 */
#include "tokenizer/sp_normalizer.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Byte trie                                                                */
/* ------------------------------------------------------------------------ */

static inline size_t trie_hash(uint64_t key) {
    key *= 0x9e3779b97f4a7c15ull;
    return (size_t)(key ^ (key >> 29));
}

static uint32_t trie_child(const bc__trie *t, uint32_t node, uint8_t byte) {
    if (t->n_slots == 0) return 0;
    uint64_t key = ((uint64_t)node << 8 | byte) + 1;
    size_t mask = t->n_slots - 1;
    for (size_t i = trie_hash(key) & mask;; i = (i + 1) & mask) {
        if (t->slot_keys[i] == key) return t->slots[i];
        if (t->slot_keys[i] == 0) return 0;
    }
}

size_t bc__trie_longest_prefix(const bc__trie *t, const char *s, size_t n) {
    if (t->n_keys == 0 || n == 0 || !t->first_byte[(uint8_t)s[0]]) return 0;
    uint32_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        node = trie_child(t, node, (uint8_t)s[i]);
        if (node == 0) break;
        if (t->terminal[node]) best = i + 1;
    }
    return best;
}

/* Grows the slot table to hold at least `want` edges at load factor 1/2. */
static int trie_grow(bc__trie *t, size_t want) {
    if (t->n_slots >= want * 2) return 0;
    size_t n = t->n_slots ? t->n_slots : 64;
    while (n < want * 2) n *= 2;
    uint32_t *slots = calloc(n, sizeof *slots);
    uint64_t *keys = calloc(n, sizeof *keys);
    if (slots == NULL || keys == NULL) {
        free(slots);
        free(keys);
        return -1;
    }
    for (size_t i = 0; i < t->n_slots; i++) {
        if (t->slot_keys[i] == 0) continue;
        size_t j = trie_hash(t->slot_keys[i]) & (n - 1);
        while (keys[j] != 0) j = (j + 1) & (n - 1);
        keys[j] = t->slot_keys[i];
        slots[j] = t->slots[i];
    }
    free(t->slots);
    free(t->slot_keys);
    t->slots = slots;
    t->slot_keys = keys;
    t->n_slots = n;
    return 0;
}

int bc__trie_insert(bc__trie *t, const char *s, size_t n) {
    if (n == 0) return 0;
    if (t->cap_nodes == 0) {
        t->terminal = calloc(64, 1);
        if (t->terminal == NULL) return -1;
        t->cap_nodes = 64;
        t->n_nodes = 1;
    }
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t byte = (uint8_t)s[i];
        uint32_t child = trie_child(t, node, byte);
        if (child == 0) {
            if (t->n_nodes == UINT32_MAX || trie_grow(t, t->n_nodes) != 0) return -1;
            if (t->n_nodes == t->cap_nodes) {
                uint8_t *g = realloc(t->terminal, t->cap_nodes * 2);
                if (g == NULL) return -1;
                memset(g + t->cap_nodes, 0, t->cap_nodes);
                t->terminal = g;
                t->cap_nodes *= 2;
            }
            child = t->n_nodes++;
            uint64_t key = ((uint64_t)node << 8 | byte) + 1;
            size_t mask = t->n_slots - 1, j = trie_hash(key) & mask;
            while (t->slot_keys[j] != 0) j = (j + 1) & mask;
            t->slot_keys[j] = key;
            t->slots[j] = child;
        }
        node = child;
    }
    if (!t->terminal[node]) t->n_keys++;
    t->terminal[node] = 1;
    t->first_byte[(uint8_t)s[0]] = true;
    return 0;
}

void bc__trie_free(bc__trie *t) {
    free(t->slots);
    free(t->slot_keys);
    free(t->terminal);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------------ */
/* precompiled_charsmap                                                     */
/* ------------------------------------------------------------------------ */

/* Blob layout: u32 little-endian trie size in bytes, the double array
 * (32-bit units), then the replacement strings. A unit holds: bit 8
 * has_leaf, bit 9 offset scale, bits 10.. offset, low 8 bits label (bit 31
 * set on leaf units, whose low 31 bits are the value). */
static inline uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
static inline uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xff); }
static inline int unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }

/* Longest charsmap key that is a prefix of s[0, n): its length, and the
 * offset of its replacement. 0 when none matches. A unit index outside the
 * array ends the search, as a mismatch would. */
static size_t charsmap_longest(const bc__normalizer *nz, const uint8_t *s, size_t n, uint32_t *value) {
    const uint32_t *units = nz->trie_units;
    size_t n_units = nz->n_trie_units;
    size_t best = 0;
    size_t pos = unit_offset(units[0]);
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= n_units) break;
        uint32_t u = units[pos];
        if (unit_label(u) != s[i]) break;
        pos ^= unit_offset(u);
        if (unit_has_leaf(u)) {
            if (pos >= n_units) break;
            best = i + 1;
            *value = unit_value(units[pos]);
        }
    }
    return best;
}

int bc__normalizer_init(bc__normalizer *nz, const bc__sp_normalizer_spec *spec, bool treat_ws_as_suffix,
                        const bc__trie *user_trie, const char *file, bc__err *err) {
    memset(nz, 0, sizeof *nz);
    nz->add_dummy_prefix = spec->add_dummy_prefix;
    nz->remove_extra_whitespaces = spec->remove_extra_whitespaces;
    nz->escape_whitespaces = spec->escape_whitespaces;
    nz->treat_whitespace_as_suffix = treat_ws_as_suffix;
    nz->user_trie = user_trie;
    const bc__span *blob = &spec->precompiled_charsmap;
    if (blob->len == 0) return 0;
    uint32_t trie_size;
    if (blob->len <= 4) goto broken;
    memcpy(&trie_size, blob->ptr, 4);
    if (trie_size > blob->len - 4) goto broken;
    size_t n_units = trie_size / 4;
    if (n_units == 0) goto broken;
    nz->trie_copy = malloc(n_units * 4);
    if (nz->trie_copy == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", file);
    memcpy(nz->trie_copy, blob->ptr + 4, n_units * 4);
    nz->trie_units = nz->trie_copy;
    nz->n_trie_units = n_units;
    nz->replacements = blob->ptr + 4 + trie_size;
    nz->replacements_len = blob->len - 4 - trie_size;
    return 0;
broken:
    return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                      "%s: normalizer_spec.precompiled_charsmap is broken (%zu bytes; its trie size does not fit)",
                      file, blob->len);
}

void bc__normalizer_free(bc__normalizer *nz) {
    free(nz->trie_copy);
    memset(nz, 0, sizeof *nz);
}

/* ------------------------------------------------------------------------ */
/* Normalize                                                                */
/* ------------------------------------------------------------------------ */

/* One step of NormalizePrefix: how many input bytes it consumes and what
 * it turns them into. */
static size_t normalize_prefix(const bc__normalizer *nz, const uint8_t *s, size_t n, const char **out,
                               size_t *out_len) {
    static const char replacement_char[] = "\xef\xbf\xbd";
    if (nz->user_trie != NULL) {
        size_t m = bc__trie_longest_prefix(nz->user_trie, (const char *)s, n);
        if (m > 0) {
            *out = (const char *)s;
            *out_len = m;
            return m;
        }
    }
    if (nz->trie_units != NULL) {
        uint32_t value = 0;
        size_t m = charsmap_longest(nz, s, n, &value);
        /* A value must index a NUL-terminated string inside the blob;
         * one that does not is treated as no match. */
        if (m > 0 && value < nz->replacements_len) {
            const char *r = nz->replacements + value;
            const char *nul = memchr(r, '\0', nz->replacements_len - value);
            if (nul != NULL) {
                *out = r;
                *out_len = (size_t)(nul - r);
                return m;
            }
        }
    }
    size_t len = bc__utf8_valid_len(s, n);
    if (len == 0) {
        *out = replacement_char;
        *out_len = 3;
        return 1;
    }
    *out = (const char *)s;
    *out_len = len;
    return len;
}

static int add_ws(const bc__normalizer *nz, bc__buf *out) {
    if (nz->escape_whitespaces) return bc__buf_append(out, BC__SPACE_SYMBOL, BC__SPACE_SYMBOL_LEN);
    return bc__buf_append(out, " ", 1);
}

/* The identity normalizer without user-defined symbols and without
 * whitespace removal, the Baichuan and LLaMA case: one pass. */
static int normalize_fast(const bc__normalizer *nz, const uint8_t *s, size_t n, bc__buf *out) {
    /* Worst case: every byte becomes 3 (a space as U+2581, a bad byte as
     * U+FFFD), plus the dummy prefix. */
    if (n > (SIZE_MAX - 3) / 3 || bc__buf_reserve(out, n * 3 + 3) != 0) return -1;
    char *o = out->data + out->len;
    const bool escape = nz->escape_whitespaces;
    const bool dummy = nz->add_dummy_prefix;
    if (dummy && !nz->treat_whitespace_as_suffix) {
        if (escape) {
            memcpy(o, BC__SPACE_SYMBOL, 3);
            o += 3;
        } else {
            *o++ = ' ';
        }
    }
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == ' ' && escape) {
                memcpy(o, BC__SPACE_SYMBOL, 3);
                o += 3;
            } else {
                *o++ = (char)c;
            }
            i++;
            continue;
        }
        size_t len = bc__utf8_valid_len(s + i, n - i);
        if (len == 0) {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(o, s + i, len);
            o += len;
            i += len;
        }
    }
    if (dummy && nz->treat_whitespace_as_suffix) {
        if (escape) {
            memcpy(o, BC__SPACE_SYMBOL, 3);
            o += 3;
        } else {
            *o++ = ' ';
        }
    }
    out->len = (size_t)(o - out->data);
    return 0;
}

int bc__normalize(const bc__normalizer *nz, const char *text, size_t len, bc__buf *out) {
    out->len = 0;
    const uint8_t *s = (const uint8_t *)text;
    size_t n = len;
    if (n == 0) return 0;
    bool has_user = nz->user_trie != NULL && nz->user_trie->n_keys > 0;
    if (nz->trie_units == NULL && !has_user && !nz->remove_extra_whitespaces) return normalize_fast(nz, s, n, out);

    const char *p;
    size_t plen;
    /* Leading spaces. */
    if (nz->remove_extra_whitespaces) {
        while (n > 0) {
            size_t used = normalize_prefix(nz, s, n, &p, &plen);
            if (!(plen == 1 && p[0] == ' ')) break;
            s += used;
            n -= used;
        }
    }
    if (n == 0) return 0;
    if (bc__buf_reserve(out, n + n / 2 + 8) != 0) return -1;

    if (!nz->treat_whitespace_as_suffix && nz->add_dummy_prefix && add_ws(nz, out) != 0) return -1;

    bool is_prev_space = nz->remove_extra_whitespaces;
    while (n > 0) {
        size_t used = normalize_prefix(nz, s, n, &p, &plen);
        /* A piece that follows a space loses its leading spaces. */
        while (is_prev_space && plen > 0 && p[0] == ' ') {
            p++;
            plen--;
        }
        if (plen > 0) {
            if (nz->escape_whitespaces) {
                size_t start = 0;
                for (size_t k = 0; k < plen; k++) {
                    if (p[k] != ' ') continue;
                    if (bc__buf_append(out, p + start, k - start) != 0 ||
                        bc__buf_append(out, BC__SPACE_SYMBOL, BC__SPACE_SYMBOL_LEN) != 0)
                        return -1;
                    start = k + 1;
                }
                if (bc__buf_append(out, p + start, plen - start) != 0) return -1;
            } else if (bc__buf_append(out, p, plen) != 0) {
                return -1;
            }
            is_prev_space = p[plen - 1] == ' ';
        }
        s += used;
        n -= used;
        if (!nz->remove_extra_whitespaces) is_prev_space = false;
    }

    /* Trailing spaces (escaped or not, as they were written). */
    if (nz->remove_extra_whitespaces) {
        const char *space = nz->escape_whitespaces ? BC__SPACE_SYMBOL : " ";
        size_t sl = nz->escape_whitespaces ? BC__SPACE_SYMBOL_LEN : 1;
        while (out->len >= sl && memcmp(out->data + out->len - sl, space, sl) == 0) out->len -= sl;
    }
    if (nz->treat_whitespace_as_suffix && nz->add_dummy_prefix && add_ws(nz, out) != 0) return -1;
    return 0;
}

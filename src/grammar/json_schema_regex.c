/*
 * json_schema_regex.c - pattern: a regular expression (ECMA 262 subset) over
 * a string's characters, written as GBNF over their JSON text: classes
 * (with \d \w \s and negations) as sets of code points, groups,
 * alternation, the quantifiers * + ? {m,n}, the anchors ^ and $ at the ends.
 */
#include "grammar/json_schema_regex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A set of code points: sorted, disjoint ranges. */
enum { RX_MAX_RANGES = 128 };
typedef struct rx_set {
    uint32_t lo[RX_MAX_RANGES], hi[RX_MAX_RANGES];
    int n;
} rx_set;

typedef struct rx_parser {
    js_conv *c;
    const char *s;
    size_t len, pos;
    int depth;
} rx_parser;

static void rx_fail(rx_parser *p, const char *what) {
    bc__js_fail(p->c, "pattern '%.*s': %s at offset %zu", (int)(p->len > 200 ? 200 : p->len), p->s, what, p->pos);
}

static void rx_set_add(rx_parser *p, rx_set *set, uint32_t lo, uint32_t hi) {
    if (set->n == RX_MAX_RANGES) {
        rx_fail(p, "character class too large");
        return;
    }
    set->lo[set->n] = lo, set->hi[set->n] = hi, set->n++;
}

/* Sorts and merges the ranges. */
static void rx_set_normalize(rx_set *set) {
    for (int i = 1; i < set->n; i++)
        for (int j = i; j > 0 && set->lo[j] < set->lo[j - 1]; j--) {
            uint32_t t = set->lo[j];
            set->lo[j] = set->lo[j - 1], set->lo[j - 1] = t;
            t = set->hi[j], set->hi[j] = set->hi[j - 1], set->hi[j - 1] = t;
        }
    int n = 0;
    for (int i = 0; i < set->n; i++) {
        if (n > 0 && set->lo[i] <= set->hi[n - 1] + 1) {
            if (set->hi[i] > set->hi[n - 1]) set->hi[n - 1] = set->hi[i];
        } else
            set->lo[n] = set->lo[i], set->hi[n] = set->hi[i], n++;
    }
    set->n = n;
}

/* The complement within all code points but the surrogates. */
static void rx_set_negate(rx_parser *p, rx_set *set) {
    rx_set_normalize(set);
    rx_set in = *set;
    set->n = 0;
    uint32_t next = 0;
    for (int i = 0; i < in.n; i++) {
        if (in.lo[i] > next) rx_set_add(p, set, next, in.lo[i] - 1);
        next = in.hi[i] + 1;
    }
    if (next <= 0x10FFFF) rx_set_add(p, set, next, 0x10FFFF);
}

/* Adds the class escape \d \w \s (or their negations) named by ch; 0 if ch is none. */
static int rx_class_escape(rx_parser *p, rx_set *set, char ch) {
    rx_set t = {.n = 0};
    char lower = (char)(ch | 0x20);
    if (lower == 'd') {
        rx_set_add(p, &t, '0', '9');
    } else if (lower == 'w') {
        rx_set_add(p, &t, '0', '9'), rx_set_add(p, &t, 'A', 'Z'), rx_set_add(p, &t, '_', '_');
        rx_set_add(p, &t, 'a', 'z');
    } else if (lower == 's') {
        static const uint32_t ws[][2] = {{0x09, 0x0D},     {0x20, 0x20},     {0xA0, 0xA0},     {0x1680, 0x1680},
                                         {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F},
                                         {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) rx_set_add(p, &t, ws[i][0], ws[i][1]);
    } else
        return 0;
    if (ch != lower) rx_set_negate(p, &t);
    for (int i = 0; i < t.n; i++) rx_set_add(p, set, t.lo[i], t.hi[i]);
    return 1;
}

static int rx_hex(rx_parser *p, int n, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        if (p->pos >= p->len) return 0;
        char ch = p->s[p->pos];
        int d = ch >= '0' && ch <= '9'                     ? ch - '0'
                : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10
                                                           : -1;
        if (d < 0) return 0;
        v = v * 16 + (uint32_t)d, p->pos++;
    }
    *out = v;
    return 1;
}

/* After a backslash: a single escaped character into *cp (returns 1), or a
 * class escape added to set (returns 2); 0 after an error. */
static int rx_escape(rx_parser *p, rx_set *set, uint32_t *cp) {
    if (p->pos >= p->len) {
        rx_fail(p, "a backslash at the end");
        return 0;
    }
    char ch = p->s[p->pos++];
    if (rx_class_escape(p, set, ch)) return 2;
    switch (ch) {
    case 'n': *cp = '\n'; return 1;
    case 'r': *cp = '\r'; return 1;
    case 't': *cp = '\t'; return 1;
    case 'f': *cp = '\f'; return 1;
    case 'v': *cp = '\v'; return 1;
    case '0': *cp = 0; return 1;
    case 'x':
        if (!rx_hex(p, 2, cp)) break;
        return 1;
    case 'u':
        if (!rx_hex(p, 4, cp) || (*cp >= 0xD800 && *cp <= 0xDFFF)) break;
        return 1;
    default:
        if (strchr("^$\\.*+?()[]{}|/-", ch) != NULL) {
            *cp = (unsigned char)ch;
            return 1;
        }
        p->pos--;
        rx_fail(p, "unsupported escape (supported: \\d \\w \\s \\D \\W \\S \\n \\r \\t \\f \\v \\0 \\xHH \\uHHHH "
                   "and escaped punctuation)");
        return 0;
    }
    rx_fail(p, "a bad \\x or \\u escape");
    return 0;
}

/* The next code point of the pattern (UTF-8). */
static uint32_t rx_next_cp(rx_parser *p) { return bc__js_utf8_next(p->s, p->len, &p->pos); }

/* A [class]; p->pos is past the '['. */
static void rx_class(rx_parser *p, rx_set *set) {
    int negate = p->pos < p->len && p->s[p->pos] == '^';
    if (negate) p->pos++;
    int first = 1;
    while (p->c->status == BC_STATUS_OK) {
        if (p->pos >= p->len) {
            rx_fail(p, "an unterminated [class]");
            return;
        }
        if (p->s[p->pos] == ']' && !first) {
            p->pos++;
            break;
        }
        first = 0;
        uint32_t lo;
        if (p->s[p->pos] == '\\') {
            p->pos++;
            int k = rx_escape(p, set, &lo);
            if (k != 1) continue;
        } else
            lo = rx_next_cp(p);
        uint32_t hi = lo;
        if (p->pos + 1 < p->len && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
            p->pos++;
            if (p->s[p->pos] == '\\') {
                p->pos++;
                rx_set dummy = {.n = 0};
                if (rx_escape(p, &dummy, &hi) != 1) {
                    if (p->c->status == BC_STATUS_OK) rx_fail(p, "a class escape as the end of a range");
                    return;
                }
            } else
                hi = rx_next_cp(p);
            if (hi < lo) {
                rx_fail(p, "a range out of order");
                return;
            }
        }
        rx_set_add(p, set, lo, hi);
    }
    if (negate) rx_set_negate(p, set);
}

/* Appends one JSON-string character of set, as GBNF: the raw characters (not
 * '"', '\' or controls) in one class, and the escapes of those three kinds. */
static void rx_put_set(rx_parser *p, js_buf *b, rx_set *set) {
    js_conv *c = p->c;
    rx_set_normalize(set);
    uint32_t one = set->lo[0];
    if (set->n == 1 && one == set->hi[0] && one >= 0x20 && one != '"' && one != '\\' &&
        !(one >= 0xD800 && one <= 0xDFFF)) {
        char text[5] = {0};
        size_t k = 0;
        if (one < 0x80)
            text[k++] = (char)one;
        else if (one < 0x800)
            text[k++] = (char)(0xC0 | (one >> 6)), text[k++] = (char)(0x80 | (one & 0x3F));
        else if (one < 0x10000)
            text[k++] = (char)(0xE0 | (one >> 12)), text[k++] = (char)(0x80 | ((one >> 6) & 0x3F)),
            text[k++] = (char)(0x80 | (one & 0x3F));
        else
            text[k++] = (char)(0xF0 | (one >> 18)), text[k++] = (char)(0x80 | ((one >> 12) & 0x3F)),
            text[k++] = (char)(0x80 | ((one >> 6) & 0x3F)), text[k++] = (char)(0x80 | (one & 0x3F));
        bc__js_put_literal(c, b, text);
        return;
    }
    js_buf raw = {0};
    int n_alt = 0;
    js_buf alts = {0};
    for (int i = 0; i < set->n; i++) {
        uint32_t lo = set->lo[i], hi = set->hi[i];
        /* Escapes for the characters JSON must escape. */
        for (uint32_t ch = lo; ch <= hi && ch < 0x20; ch++) {
            static const char *const short_esc[0x20] = {
                ['\b'] = "b", ['\f'] = "f", ['\n'] = "n", ['\r'] = "r", ['\t'] = "t"};
            if (n_alt++) bc__js_put(c, &alts, " | ");
            if (short_esc[ch])
                bc__js_putf(c, &alts, "\"\\\\%s\"", short_esc[ch]);
            else
                bc__js_putf(c, &alts, "\"\\\\u%04x\"", (unsigned)ch);
        }
        if (lo <= '"' && '"' <= hi) bc__js_put(c, &alts, n_alt++ ? " | \"\\\\\\\"\"" : "\"\\\\\\\"\"");
        if (lo <= '\\' && '\\' <= hi) bc__js_put(c, &alts, n_alt++ ? " | \"\\\\\\\\\"" : "\"\\\\\\\\\"");
        /* The raw characters: the range less controls, '"', '\' and surrogates. */
        uint32_t pieces[4][2];
        int n_pieces = 0;
        uint32_t from = lo < 0x20 ? 0x20 : lo;
        const uint32_t cuts[3][2] = {{'"', '"'}, {'\\', '\\'}, {0xD800, 0xDFFF}};
        for (int k = 0; k < 3 && from <= hi; k++) {
            if (cuts[k][1] < from) continue;
            if (cuts[k][0] > hi) break;
            if (cuts[k][0] > from) pieces[n_pieces][0] = from, pieces[n_pieces][1] = cuts[k][0] - 1, n_pieces++;
            from = cuts[k][1] + 1;
        }
        if (from <= hi) pieces[n_pieces][0] = from, pieces[n_pieces][1] = hi, n_pieces++;
        for (int k = 0; k < n_pieces; k++) {
            bc__js_put_class_cp(c, &raw, pieces[k][0]);
            if (pieces[k][1] != pieces[k][0]) {
                bc__js_put(c, &raw, "-");
                bc__js_put_class_cp(c, &raw, pieces[k][1]);
            }
        }
    }
    int n = n_alt + (raw.n > 0);
    if (n == 0) {
        rx_fail(p, "an empty character class");
    } else {
        if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') bc__js_put(c, b, " ");
        if (n > 1) bc__js_put(c, b, "( ");
        if (raw.n > 0) {
            bc__js_elements(c, JS_CLASS_ELEMENTS);
            bc__js_put(c, b, "[");
            bc__js_putn(c, b, raw.p, raw.n);
            bc__js_put(c, b, "]");
            if (n_alt) bc__js_put(c, b, " | ");
        }
        if (n_alt) bc__js_putn(c, b, alts.p, alts.n);
        if (n > 1) bc__js_put(c, b, " )");
    }
    bc__js_buf_free(&raw);
    bc__js_buf_free(&alts);
}

static void rx_alternation(rx_parser *p, js_buf *b);

/* One quantifier after an atom, if any. */
static void rx_quantifier(rx_parser *p, js_buf *b) {
    if (p->pos >= p->len) return;
    char ch = p->s[p->pos];
    long lo, hi;
    if (ch == '*' || ch == '+' || ch == '?') {
        p->pos++;
        lo = ch == '+', hi = ch == '?' ? 1 : -1;
    } else if (ch == '{') {
        size_t start = p->pos++;
        lo = 0, hi = -1;
        int digits = 0;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            lo = lo > JS_MAX_REPEAT ? lo : lo * 10 + (p->s[p->pos] - '0');
            p->pos++, digits++;
        }
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            if (p->pos < p->len && p->s[p->pos] != '}') {
                hi = 0;
                while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
                    hi = hi > JS_MAX_REPEAT ? hi : hi * 10 + (p->s[p->pos] - '0');
                    p->pos++;
                }
            }
        } else
            hi = lo;
        if (digits == 0 || p->pos >= p->len || p->s[p->pos] != '}') {
            p->pos = start;
            rx_fail(p, "a malformed {m,n} quantifier");
            return;
        }
        p->pos++;
        if (lo > JS_MAX_REPEAT || hi > JS_MAX_REPEAT) {
            p->pos = start;
            rx_fail(p, "a repetition count over 1000");
            return;
        }
        if (hi >= 0 && hi < lo) {
            p->pos = start;
            rx_fail(p, "a {m,n} quantifier with n < m");
            return;
        }
    } else
        return;
    if (p->pos < p->len && p->s[p->pos] == '?') p->pos++; /* lazy: the same language */
    if (p->pos < p->len && strchr("*+?{", p->s[p->pos]) != NULL) {
        rx_fail(p, "a quantifier after a quantifier");
        return;
    }
    /* A group or a class compiles to one reference; a literal to its bytes. */
    bc__js_put_repeat(p->c, b, lo, hi, b->n > 2 && b->p[0] == '"' ? b->n - 2 : 1);
}

/* A sequence of quantified atoms up to '|' or ')' or the end. */
static void rx_sequence(rx_parser *p, js_buf *b) {
    int items = 0;
    while (p->pos < p->len && p->c->status == BC_STATUS_OK) {
        char ch = p->s[p->pos];
        if (ch == '|' || ch == ')') break;
        if (ch == '^' || ch == '$') {
            rx_fail(p, "an anchor (^ or $) inside the pattern (only at its start and end)");
            return;
        }
        js_buf atom = {0};
        if (ch == '(') {
            p->pos++;
            if (p->pos < p->len && p->s[p->pos] == '?') {
                if (p->pos + 1 < p->len && p->s[p->pos + 1] == ':')
                    p->pos += 2;
                else {
                    rx_fail(p, "lookaround or named groups are not supported");
                    bc__js_buf_free(&atom);
                    return;
                }
            }
            if (++p->depth > 32) {
                rx_fail(p, "groups nested deeper than 32");
                bc__js_buf_free(&atom);
                return;
            }
            bc__js_put(p->c, &atom, "( ");
            rx_alternation(p, &atom);
            p->depth--;
            if (p->pos >= p->len || p->s[p->pos] != ')') {
                if (p->c->status == BC_STATUS_OK) rx_fail(p, "an unclosed group");
                bc__js_buf_free(&atom);
                return;
            }
            p->pos++;
            bc__js_put(p->c, &atom, " )");
        } else if (ch == '[') {
            p->pos++;
            rx_set set = {.n = 0};
            rx_class(p, &set);
            if (p->c->status == BC_STATUS_OK) rx_put_set(p, &atom, &set);
        } else if (ch == '.') {
            p->pos++;
            rx_set set = {.n = 0};
            rx_set_add(p, &set, '\n', '\n'), rx_set_add(p, &set, '\r', '\r');
            rx_set_add(p, &set, 0x2028, 0x2029);
            rx_set_negate(p, &set);
            rx_put_set(p, &atom, &set);
        } else if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
            rx_fail(p, "a quantifier with nothing to repeat");
            return;
        } else {
            uint32_t cp;
            rx_set set = {.n = 0};
            int k = 1;
            if (ch == '\\') {
                p->pos++;
                if (p->pos < p->len && (p->s[p->pos] == 'b' || p->s[p->pos] == 'B')) {
                    rx_fail(p, "word boundaries are not supported");
                    return;
                }
                if (p->pos < p->len && p->s[p->pos] >= '1' && p->s[p->pos] <= '9') {
                    rx_fail(p, "backreferences are not supported");
                    return;
                }
                k = rx_escape(p, &set, &cp);
                if (k == 0) return;
            } else
                cp = rx_next_cp(p);
            if (k == 1) rx_set_add(p, &set, cp, cp);
            rx_put_set(p, &atom, &set);
        }
        if (p->c->status == BC_STATUS_OK) rx_quantifier(p, &atom);
        if (p->c->status == BC_STATUS_OK && atom.n > 0) {
            if (items++) bc__js_put(p->c, b, " ");
            bc__js_putn(p->c, b, atom.p, atom.n);
        }
        bc__js_buf_free(&atom);
    }
    if (items == 0) bc__js_put(p->c, b, "\"\"");
}

static void rx_alternation(rx_parser *p, js_buf *b) {
    rx_sequence(p, b);
    while (p->c->status == BC_STATUS_OK && p->pos < p->len && p->s[p->pos] == '|') {
        p->pos++;
        bc__js_put(p->c, b, " | ");
        rx_sequence(p, b);
    }
}

/* A string matching the pattern: JSON Schema patterns search, so an end
 * without its anchor (^ or $) may have any characters beyond it. */
void bc__js_pattern(js_conv *c, const char *pattern, size_t len, js_buf *out) {
    if (len > JS_MAX_PATTERN) {
        bc__js_fail(c, "a pattern of %zu bytes passes the limit of %d", len, JS_MAX_PATTERN);
        return;
    }
    rx_parser p = {c, pattern, len, 0, 0};
    int start = len > 0 && pattern[0] == '^';
    size_t end_len = len;
    /* A trailing '$' not escaped (an even run of backslashes before it). */
    int end = 0;
    if (len > (size_t)start && pattern[len - 1] == '$') {
        size_t k = 0;
        while (k + 1 < len && pattern[len - 2 - k] == '\\') k++;
        if (k % 2 == 0) end = 1, end_len = len - 1;
    }
    p.pos = (size_t)start;
    p.len = end_len;
    js_buf b = {0};
    bc__js_put(c, &b, "\"\\\"\"");
    if (!start) bc__js_use(c, &b, FX_CHAR), bc__js_put(c, &b, "*");
    bc__js_put(c, &b, " ( ");
    rx_alternation(&p, &b);
    if (c->status == BC_STATUS_OK && p.pos < p.len) rx_fail(&p, "an unmatched ')'");
    bc__js_put(c, &b, " )");
    if (!end) bc__js_use(c, &b, FX_CHAR), bc__js_put(c, &b, "*");
    bc__js_put(c, &b, " \"\\\"\"");
    bc__js_rule_add(c, "pattern", &b, out);
}

/*
 * json_schema.c - a JSON Schema to the GBNF grammar of the JSON texts that
 * validate against it (bc_json_schema_to_gbnf; the subset is in baichuan.h).
 *
 * Map of the file:
 *   limits, buffers and errors     the output is capped, every error names a JSON pointer
 *   rules                          named rules, made as the schema is walked; fixed ones on demand
 *   literals                       GBNF literals and classes for JSON text
 *   integers                       digit-range decomposition of [lo, hi]
 *   numbers                        bounded integers; numbers compared digit by digit with the bounds
 *   strings                        lengths, formats, patterns (a regular-expression subset)
 *   arrays, objects                items/prefixItems chains, property chains, extra keys (a trie)
 *   enum, const                    scalars as a trie of their texts, arrays and objects with whitespace
 *   schemas                        keyword checks, $ref, anyOf, type dispatch
 *   entry point
 *
 * The grammar never left-recurses: every rule reference that can start a
 * rule's text is a schema ($ref, anyOf) reached without consuming a token,
 * and a $ref cycle that consumes nothing is refused.
 */
#include "baichuan.h"

#include <jansson.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Limits, buffers and errors                                               */
/* ======================================================================== */

enum {
    JS_MAX_DEPTH = 64,        /* schemas nested in schemas (and JSON values in enum/const) */
    JS_MAX_OUTPUT = 1 << 20,  /* bytes of grammar text */
    JS_MAX_ELEMENTS = 60000,  /* elements the compiled grammar will have, estimated (the engine takes 65,536) */
    JS_CLASS_ELEMENTS = 64,   /* the estimate for one character class (its UTF-8 byte sequences) */
    JS_MAX_ENUM = 1000,       /* values of one enum */
    JS_MAX_REPEAT = 1000,     /* minLength, maxLength, minItems, maxItems, regex {m,n} */
    JS_MAX_PROPERTIES = 1000, /* properties of one object, items of one prefixItems */
    JS_MAX_BRANCHES = 32,     /* schemas of one anyOf/oneOf: each a live parse for the matcher */
    JS_MAX_PATTERN = 1000,    /* bytes of one pattern */
    JS_MAX_NAME = 80,         /* bytes of a rule name */
    JS_MAX_PATH = 512,        /* bytes of a JSON pointer kept for messages */
    JS_MAX_NAME_BYTES = 1000, /* bytes of a property name */
    JS_MAX_OPTIONAL_RUN = 64, /* optional properties in a row (the matcher's 256 live parses) */
};
/* Bounds of numbers are kept exact in a double up to 10^15. */
#define JS_MAX_BOUND 1e15

typedef struct js_buf {
    char *p; /* NUL-terminated once anything is written */
    size_t n, cap;
} js_buf;

typedef struct js_rule {
    char name[JS_MAX_NAME];
    js_buf body;
    const json_t *target; /* the schema a $ref names, for rules made for one; else NULL */
} js_rule;

typedef struct js_conv {
    const json_t *root;
    js_rule *rules;
    size_t n_rules, cap_rules;
    size_t total; /* bytes written to every buffer so far */
    /* The compiled grammar's elements, estimated from above: a byte of a
     * rule's text is at most one, a class JS_CLASS_ELEMENTS, a repetition its
     * copies. */
    size_t elements;
    long string_rules[16][3]; /* rules made for strings of lengths [lo, hi]: {lo, hi, rule} */
    int n_string_rules;
    uint32_t fixed_used;                 /* bit i: fixed rule i is referenced */
    const json_t *entered[JS_MAX_DEPTH]; /* $ref targets entered since the last token */
    int n_entered;
    int depth;
    char path[JS_MAX_PATH]; /* JSON pointer of the schema being converted */
    size_t path_len;
    bc_status status; /* BC_STATUS_OK until the first error */
    char *err;
    size_t err_size;
} js_conv;

static void js_fail(js_conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first error wins; it ends with the path of the schema where it was found. */
static void js_fail(js_conv *c, const char *fmt, ...) {
    if (c->status != BC_STATUS_OK) return;
    c->status = BC_STATUS_ERROR_ARGUMENT;
    if (c->err == NULL || c->err_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(c->err, c->err_size, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < c->err_size)
        snprintf(c->err + k, c->err_size - (size_t)k, " at %s", c->path_len ? c->path : "/");
}

static void js_fail_memory(js_conv *c) {
    if (c->status != BC_STATUS_OK) return;
    c->status = BC_STATUS_ERROR_MEMORY;
    if (c->err != NULL && c->err_size > 0) snprintf(c->err, c->err_size, "out of memory writing the grammar");
}

/* Counts n more elements of the compiled grammar against the limit. */
static void js_elements(js_conv *c, size_t n) {
    c->elements += n;
    if (c->elements > JS_MAX_ELEMENTS)
        js_fail(c, "the grammar passes the limit of %d elements (its text, classes and repeated copies, as estimated)",
                JS_MAX_ELEMENTS);
}

static void js_putn(js_conv *c, js_buf *b, const char *s, size_t n) {
    if (c->status != BC_STATUS_OK) return;
    if (n > JS_MAX_OUTPUT - c->total) {
        js_fail(c, "the grammar passes the limit of %d bytes", JS_MAX_OUTPUT);
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            js_fail_memory(c);
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    c->total += n;
}

static void js_put(js_conv *c, js_buf *b, const char *s) { js_putn(c, b, s, strlen(s)); }

static void js_putf(js_conv *c, js_buf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void js_putf(js_conv *c, js_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof tmp) {
        js_fail(c, "internal: formatted piece too long");
        return;
    }
    js_putn(c, b, tmp, (size_t)k);
}

/* Appends expression e, a space before it unless b ends a word already. */
static void js_put_expr(js_conv *c, js_buf *b, const js_buf *e) {
    if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') js_put(c, b, " ");
    js_putn(c, b, e->p, e->n);
}

static void js_buf_free(js_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Appends one JSON pointer segment (~ and / escaped); returns the old length to restore. */
static size_t js_path_push(js_conv *c, const char *seg) {
    size_t old = c->path_len;
    char *p = c->path;
    size_t n = c->path_len, cap = sizeof c->path;
    if (n + 1 < cap) p[n++] = '/';
    for (const char *s = seg; *s && n + 3 < cap; s++) {
        if (*s == '~' || *s == '/') {
            p[n++] = '~';
            p[n++] = *s == '~' ? '0' : '1';
        } else
            p[n++] = *s;
    }
    p[n] = '\0';
    c->path_len = n;
    return old;
}

static size_t js_path_push_index(js_conv *c, const char *seg, size_t i) {
    char num[32];
    snprintf(num, sizeof num, "%zu", i);
    size_t old = js_path_push(c, seg);
    js_path_push(c, num);
    return old;
}

static void js_path_pop(js_conv *c, size_t old) {
    c->path_len = old;
    c->path[old] = '\0';
}

/* ======================================================================== */
/* Rules                                                                    */
/* ======================================================================== */

/* Fixed rules, written once at the end when referenced. */
enum {
    FX_WS,
    FX_VALUE,
    FX_OBJECT,
    FX_ARRAY,
    FX_STRING,
    FX_CHAR,
    FX_NUMBER,
    FX_INTEGER,
    FX_BOOLEAN,
    FX_NULL,
    FX_FRACTION,
    FX_DATE,
    FX_TIME,
    FX_DATE_TIME,
    FX_EMAIL,
    FX_EMAIL_ATOM,
    FX_EMAIL_LABEL,
    FX_UUID,
    FX_HEX,
    FX_COUNT
};

typedef struct js_fixed {
    const char *name;
    const char *body;
    uint32_t uses; /* the fixed rules the body references */
} js_fixed;

#define B(x) (1u << (x))
static const js_fixed js_fixed_rules[FX_COUNT] = {
    /* At most one newline and 20 spaces or tabs between two tokens. */
    [FX_WS] = {"ws", "\"\\n\"? [ \\t]{0,20}", 0},
    [FX_VALUE] = {"value", "object | array | string | number | boolean | null",
                  B(FX_OBJECT) | B(FX_ARRAY) | B(FX_STRING) | B(FX_NUMBER) | B(FX_BOOLEAN) | B(FX_NULL)},
    [FX_OBJECT] = {"object",
                   "\"{\" ws ( string ws \":\" ws value ( ws \",\" ws string ws \":\" ws value )* ws )? \"}\"",
                   B(FX_WS) | B(FX_STRING) | B(FX_VALUE)},
    [FX_ARRAY] = {"array", "\"[\" ws ( value ( ws \",\" ws value )* ws )? \"]\"", B(FX_WS) | B(FX_VALUE)},
    [FX_STRING] = {"string", "\"\\\"\" char* \"\\\"\"", B(FX_CHAR)},
    [FX_CHAR] = {"char", "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" hex hex hex hex )", B(FX_HEX)},
    [FX_NUMBER] = {"number", "\"-\"? ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [\\x2D+]? [0-9]+ )?", 0},
    [FX_INTEGER] = {"integer", "\"-\"? ( \"0\" | [1-9] [0-9]* )", 0},
    [FX_BOOLEAN] = {"boolean", "\"true\" | \"false\"", 0},
    [FX_NULL] = {"null", "\"null\"", 0},
    [FX_FRACTION] = {"fraction", "( \".\" [0-9]+ )?", 0},
    [FX_DATE] = {"date",
                 "[0-9]{4} \"-\" ( ( \"0\" [13578] | \"1\" [02] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )"
                 " | ( \"0\" [469] | \"11\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" )"
                 " | \"02-\" ( \"0\" [1-9] | [12] [0-9] ) )",
                 0},
    [FX_TIME] = {"time",
                 "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" ( [0-5] [0-9] | \"60\" ) ( \".\" [0-9]+ )?"
                 " ( [Zz] | [+\\x2D] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )",
                 0},
    [FX_DATE_TIME] = {"date-time", "date [Tt] time", B(FX_DATE) | B(FX_TIME)},
    [FX_EMAIL] = {"email", "email-atom ( \".\" email-atom )* \"@\" email-label ( \".\" email-label )+",
                  B(FX_EMAIL_ATOM) | B(FX_EMAIL_LABEL)},
    [FX_EMAIL_ATOM] = {"email-atom", "[A-Za-z0-9\\x21\\x23-\\x27\\x2A\\x2B\\x2D\\x2F\\x3D\\x3F\\x5E-\\x60\\x7B-\\x7E]+",
                       0},
    [FX_EMAIL_LABEL] = {"email-label", "[A-Za-z0-9] [A-Za-z0-9\\x2D]*", 0},
    [FX_UUID] = {"uuid", "hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}", B(FX_HEX)},
    [FX_HEX] = {"hex", "[0-9a-fA-F]", 0},
};
#undef B

/* Appends the name of fixed rule i (with a leading space when b is not empty). */
static void js_use(js_conv *c, js_buf *b, int i) {
    c->fixed_used |= 1u << i;
    if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') js_put(c, b, " ");
    js_put(c, b, js_fixed_rules[i].name);
}

/* A new rule named after hint (letters and digits kept, the rest '-'),
 * made unique by its index; returns its index, or -1. */
static long js_rule_new(js_conv *c, const char *hint) {
    if (c->status != BC_STATUS_OK) return -1;
    if (c->n_rules == c->cap_rules) {
        size_t cap = c->cap_rules ? c->cap_rules * 2 : 32;
        js_rule *r = realloc(c->rules, cap * sizeof *r);
        if (r == NULL) {
            js_fail_memory(c);
            return -1;
        }
        c->rules = r, c->cap_rules = cap;
    }
    js_rule *r = &c->rules[c->n_rules];
    memset(r, 0, sizeof *r);
    size_t n = 0;
    for (const char *h = hint; *h && n < 40; h++) {
        char ch = *h;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!ok && (n == 0 || r->name[n - 1] == '-')) continue;
        r->name[n++] = ok ? ch : '-';
    }
    if (n > 0 && r->name[n - 1] == '-') n--;
    if (n == 0) n = (size_t)snprintf(r->name, sizeof r->name, "schema");
    snprintf(r->name + n, sizeof r->name - n, "-%zu", c->n_rules);
    c->total += strlen(r->name) + 6;
    return (long)c->n_rules++;
}

/* Gives the body (moved out of *body) to rule i and appends its name to out. */
static void js_rule_set(js_conv *c, long i, js_buf *body, js_buf *out) {
    if (c->status != BC_STATUS_OK || i < 0) {
        js_buf_free(body);
        return;
    }
    js_elements(c, body->n); /* a rule's text, counted once whatever was copied into it */
    c->rules[i].body = *body;
    memset(body, 0, sizeof *body);
    if (out != NULL) {
        if (out->n > 0 && out->p[out->n - 1] != ' ' && out->p[out->n - 1] != '(') js_put(c, out, " ");
        js_put(c, out, c->rules[i].name);
    }
}

/* A rule with this body, named after hint; its name goes to out. */
static void js_rule_add(js_conv *c, const char *hint, js_buf *body, js_buf *out) {
    long i = js_rule_new(c, hint);
    js_rule_set(c, i, body, out);
}

/* The hint for a rule: the path's last segment (and the one before a number). */
static const char *js_hint(const js_conv *c) {
    const char *last = strrchr(c->path, '/');
    if (last == NULL) return "root";
    if (last[1] >= '0' && last[1] <= '9') {
        for (const char *p = last - 1; p >= c->path; p--)
            if (*p == '/') return p + 1;
    }
    return last[1] ? last + 1 : "root";
}

/* ======================================================================== */
/* Literals                                                                 */
/* ======================================================================== */

/* One byte inside a GBNF "literal". */
static void js_put_lit_byte(js_conv *c, js_buf *b, unsigned char ch) {
    char tmp[8];
    if (ch == '"' || ch == '\\') {
        tmp[0] = '\\', tmp[1] = (char)ch, tmp[2] = '\0';
    } else if (ch < 0x20 || ch == 0x7F) {
        snprintf(tmp, sizeof tmp, "\\x%02X", ch);
    } else {
        tmp[0] = (char)ch, tmp[1] = '\0';
    }
    js_put(c, b, tmp);
}

/* The GBNF literal of a JSON string's text: its quotes and its escapes as
 * Python's json.dumps(ensure_ascii=False) writes them. */
static void js_put_string_literal(js_conv *c, js_buf *b, const char *s, size_t len) {
    if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') js_put(c, b, " ");
    js_put(c, b, "\"\\\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        switch (ch) {
        case '"': esc = "\\\\\\\""; break;  /* \" */
        case '\\': esc = "\\\\\\\\"; break; /* \\ */
        case '\b': esc = "\\\\b"; break;
        case '\f': esc = "\\\\f"; break;
        case '\n': esc = "\\\\n"; break;
        case '\r': esc = "\\\\r"; break;
        case '\t': esc = "\\\\t"; break;
        default: break;
        }
        if (esc != NULL)
            js_put(c, b, esc);
        else if (ch < 0x20)
            js_putf(c, b, "\\\\u%04x", ch);
        else
            js_put_lit_byte(c, b, ch);
    }
    js_put(c, b, "\\\"\"");
}

/* A literal of plain text (no JSON escaping). */
static void js_put_literal(js_conv *c, js_buf *b, const char *s) {
    if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') js_put(c, b, " ");
    js_put(c, b, "\"");
    for (; *s; s++) js_put_lit_byte(c, b, (unsigned char)*s);
    js_put(c, b, "\"");
}

/* One code point inside a GBNF [class]: letters and digits as they are,
 * other ASCII as \xHH, the rest as its UTF-8 bytes. */
static void js_put_class_cp(js_conv *c, js_buf *b, uint32_t cp) {
    char tmp[8];
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9')) {
        tmp[0] = (char)cp, tmp[1] = '\0';
    } else if (cp < 0x80) {
        snprintf(tmp, sizeof tmp, "\\x%02X", (unsigned)cp);
    } else if (cp < 0x800) {
        tmp[0] = (char)(0xC0 | (cp >> 6)), tmp[1] = (char)(0x80 | (cp & 0x3F)), tmp[2] = '\0';
    } else if (cp < 0x10000) {
        tmp[0] = (char)(0xE0 | (cp >> 12)), tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        tmp[2] = (char)(0x80 | (cp & 0x3F)), tmp[3] = '\0';
    } else {
        tmp[0] = (char)(0xF0 | (cp >> 18)), tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), tmp[3] = (char)(0x80 | (cp & 0x3F)), tmp[4] = '\0';
    }
    js_put(c, b, tmp);
}

/* Decodes one UTF-8 code point of s[*i..len) (jansson gives valid UTF-8). */
static uint32_t js_utf8_next(const char *s, size_t len, size_t *i) {
    unsigned char b0 = (unsigned char)s[*i];
    int n = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? b0 : n == 2 ? b0 & 0x1Fu : n == 3 ? b0 & 0x0Fu : b0 & 0x07u;
    size_t k = 1;
    for (; k < (size_t)n && *i + k < len; k++) cp = (cp << 6) | ((unsigned char)s[*i + k] & 0x3Fu);
    *i += k;
    return cp;
}

/* ======================================================================== */
/* Integers: [lo, hi] as digit strings                                      */
/* ======================================================================== */

/* The numbers of n digits from lo to hi (digit strings of one length),
 * as disjoint alternatives on the first digit where lo and hi differ. */
static void js_same_length(js_conv *c, js_buf *b, const char *lo, const char *hi, size_t n) {
    size_t i = 0;
    while (i < n && lo[i] == hi[i]) i++;
    if (i > 0) {
        char tmp[32];
        memcpy(tmp, lo, i);
        tmp[i] = '\0';
        js_put_literal(c, b, tmp);
    }
    if (i == n) return;
    lo += i, hi += i, n -= i;
    size_t rest = n - 1;
    int lo_zeros = 1, hi_nines = 1;
    for (size_t k = 1; k < n; k++) {
        if (lo[k] != '0') lo_zeros = 0;
        if (hi[k] != '9') hi_nines = 0;
    }
    char nines[32], zeros[32];
    memset(nines, '9', rest), memset(zeros, '0', rest);
    char first = lo_zeros ? lo[0] : (char)(lo[0] + 1), last = hi_nines ? hi[0] : (char)(hi[0] - 1);
    js_put(c, b, b->n > 0 && b->p[b->n - 1] != ' ' ? " ( " : "( ");
    int alts = 0;
    if (!lo_zeros) {
        char d[2] = {lo[0], '\0'};
        js_put_literal(c, b, d);
        js_same_length(c, b, lo + 1, nines, rest);
        alts++;
    }
    if (first <= last) {
        if (alts++) js_put(c, b, " | ");
        if (first == last)
            js_putf(c, b, "\"%c\"", first);
        else
            js_putf(c, b, "[%c-%c]", first, last);
        if (rest == 1) js_put(c, b, " [0-9]");
        if (rest > 1) js_putf(c, b, " [0-9]{%zu}", rest);
    }
    if (!hi_nines) {
        if (alts++) js_put(c, b, " | ");
        char d[2] = {hi[0], '\0'};
        js_put_literal(c, b, d);
        js_same_length(c, b, zeros, hi + 1, rest);
    }
    js_put(c, b, " )");
}

/* The decimal numbers (no sign, no leading zeros) in [lo, hi]; hi < 0 is no
 * upper bound. Appends a parenthesised group of alternatives. */
static void js_range(js_conv *c, js_buf *b, int64_t lo, int64_t hi) {
    char los[32], his[32];
    int nlo = snprintf(los, sizeof los, "%lld", (long long)lo);
    int nhi = hi >= 0 ? snprintf(his, sizeof his, "%lld", (long long)hi) : nlo;
    js_put(c, b, b->n > 0 && b->p[b->n - 1] != ' ' ? " ( " : "( ");
    for (int len = nlo; len <= nhi; len++) {
        char a[32], z[32];
        if (len == nlo)
            memcpy(a, los, (size_t)len);
        else
            a[0] = '1', memset(a + 1, '0', (size_t)len - 1);
        if (hi >= 0 && len == nhi)
            memcpy(z, his, (size_t)len);
        else
            memset(z, '9', (size_t)len);
        if (len > nlo) js_put(c, b, " | ");
        js_same_length(c, b, a, z, (size_t)len);
    }
    if (hi < 0) js_putf(c, b, " | [1-9] [0-9]{%d,}", nlo);
    js_put(c, b, " )");
}

/* ======================================================================== */
/* Numbers                                                                  */
/* ======================================================================== */

typedef struct js_bound {
    int present;
    double v;
    int exclusive;
} js_bound;

/* Reads minimum/exclusiveMinimum (or the maximum pair) into one bound, the
 * tighter of the two. */
static void js_read_bound(js_conv *c, const json_t *s, const char *incl, const char *excl, int upper, js_bound *out) {
    memset(out, 0, sizeof *out);
    const char *keys[2] = {incl, excl};
    for (int k = 0; k < 2; k++) {
        const json_t *v = json_object_get(s, keys[k]);
        if (v == NULL) continue;
        if (!json_is_number(v)) {
            js_fail(c, "'%s' must be a number", keys[k]);
            return;
        }
        double x = json_number_value(v);
        if (!(fabs(x) <= JS_MAX_BOUND)) {
            js_fail(c, "'%s' %g is out of the supported range [-1e15, 1e15]", keys[k], x);
            return;
        }
        int tighter = !out->present || (upper ? x < out->v : x > out->v) || (x == out->v && k == 1);
        if (tighter) out->present = 1, out->v = x, out->exclusive = k == 1;
    }
}

/* A non-negative decimal: integer part and exactly k fraction digits. */
typedef struct js_dec {
    int64_t ip;
    char frac[20];
} js_dec;

/* The fraction digits x needs to be written exactly (shortest round trip), or -1. */
static int js_frac_digits(double x) {
    char tmp[64];
    for (int k = 0; k <= 17; k++) {
        snprintf(tmp, sizeof tmp, "%.*f", k, fabs(x));
        if (strtod(tmp, NULL) == fabs(x)) return k;
    }
    return -1;
}

/* |x| with k fraction digits (k at least js_frac_digits(x)). */
static void js_dec_of(double x, int k, js_dec *d) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*f", k, fabs(x));
    d->ip = strtoll(tmp, NULL, 10);
    const char *dot = strchr(tmp, '.');
    snprintf(d->frac, sizeof d->frac, "%s", dot ? dot + 1 : "");
}

/* The fraction's text after the integer part, when the digits so far equal
 * lo's (lt) and hi's (ht): one state of a digit-by-digit comparison of the
 * first k fraction digits (missing ones are zeros), then the digits past k
 * decide only where the value sits exactly on a bound. */
typedef struct js_frac {
    const char *lo, *hi; /* k digits each, or NULL: no bound on that side */
    int lo_excl, hi_excl, k;
    long memo[20][2][2]; /* rule of each state from digit 1 on: -2 not made, -1 empty */
} js_frac;

static int js_frac_state(js_conv *c, js_frac *f, js_buf *b, int pos, int lt, int ht, int need_digit);

/* Appends the rule of state (pos, lt, ht), ending allowed, made once; 0 when it matches nothing. */
static int js_frac_ref(js_conv *c, js_frac *f, js_buf *b, int pos, int lt, int ht) {
    if (!lt && !ht) { /* no bound left: any digits */
        js_put(c, b, " [0-9]*");
        return 1;
    }
    long *m = &f->memo[pos][lt][ht];
    if (*m == -2) {
        js_buf sub = {0};
        int n = js_frac_state(c, f, &sub, pos, lt, ht, 0);
        if (n == 0 || c->status != BC_STATUS_OK) {
            js_buf_free(&sub);
            *m = -1;
        } else {
            *m = js_rule_new(c, "fraction");
            js_rule_set(c, *m, &sub, NULL);
        }
    }
    if (*m < 0) return 0;
    js_put(c, b, " ");
    js_put(c, b, c->rules[*m].name);
    return 1;
}

static int js_frac_state(js_conv *c, js_frac *f, js_buf *b, int pos, int lt, int ht, int need_digit) {
    int alts = 0;
    if (pos == f->k) { /* past the compared digits: zero or not is all that counts */
        int zero_ok = !(lt && f->lo_excl) && !(ht && f->hi_excl), nonzero_ok = !ht;
        const char *g = NULL;
        if (zero_ok && nonzero_ok)
            g = need_digit ? "[0-9]+" : "[0-9]*";
        else if (nonzero_ok)
            g = "\"0\"* [1-9] [0-9]*";
        else if (zero_ok)
            g = need_digit ? "\"0\"+" : "\"0\"*";
        if (g != NULL) js_put(c, b, g), alts++;
        return alts;
    }
    /* Ending here: the rest are zeros. */
    int lo_rest_zero = 1, hi_rest_zero = 1;
    for (int i = pos; i < f->k; i++) {
        if (lt && f->lo[i] != '0') lo_rest_zero = 0;
        if (ht && f->hi[i] != '0') hi_rest_zero = 0;
    }
    int end_ok = !need_digit && (!lt || (lo_rest_zero && !f->lo_excl)) && (!ht || !hi_rest_zero || !f->hi_excl);
    if (end_ok) js_put(c, b, "\"\""), alts++;
    char d_lo = lt ? f->lo[pos] : '0', d_hi = ht ? f->hi[pos] : '9';
    if (lt && ht && d_lo == d_hi) {
        js_buf alt = {0};
        js_putf(c, &alt, "\"%c\"", d_lo);
        if (js_frac_ref(c, f, &alt, pos + 1, 1, 1)) {
            if (alts++) js_put(c, b, " | ");
            js_put_expr(c, b, &alt);
        }
        js_buf_free(&alt);
        return alts;
    }
    char mid_lo = lt ? (char)(d_lo + 1) : '0', mid_hi = ht ? (char)(d_hi - 1) : '9';
    if (mid_lo <= mid_hi) {
        if (alts++) js_put(c, b, " | ");
        js_putf(c, b, "[%c-%c] [0-9]*", mid_lo, mid_hi);
    }
    for (int side = 0; side < 2; side++) {
        if (!(side == 0 ? lt : ht)) continue;
        js_buf alt = {0};
        js_putf(c, &alt, "\"%c\"", side == 0 ? d_lo : d_hi);
        if (js_frac_ref(c, f, &alt, pos + 1, side == 0, side == 1)) {
            if (alts++) js_put(c, b, " | ");
            js_put_expr(c, b, &alt);
        }
        js_buf_free(&alt);
    }
    return alts;
}

/* After integer part ip: nothing, or "." and the digits of state (0, lt, ht). */
static int js_fraction(js_conv *c, js_buf *b, int64_t ip, const js_dec *lo, int lo_excl, const js_dec *hi, int hi_excl,
                       int k) {
    js_frac f = {lo ? lo->frac : NULL, hi ? hi->frac : NULL, lo_excl, hi_excl, k, {{{0}}}};
    for (int i = 0; i < 20; i++) f.memo[i][0][0] = f.memo[i][0][1] = f.memo[i][1][0] = f.memo[i][1][1] = -2;
    js_buf alts = {0}, digits = {0};
    int n = 0;
    /* No fraction is the value ip exactly: as ending at digit 0. */
    int lo_zero = 1, hi_zero = 1;
    for (int i = 0; i < k; i++) {
        if (lo && lo->frac[i] != '0') lo_zero = 0;
        if (hi && hi->frac[i] != '0') hi_zero = 0;
    }
    if ((!lo || (lo_zero && !lo_excl)) && (!hi || !hi_zero || !hi_excl)) js_put(c, &alts, "\"\""), n++;
    if (js_frac_state(c, &f, &digits, 0, lo != NULL, hi != NULL, 1) > 0) {
        if (n++) js_put(c, &alts, " | ");
        js_put(c, &alts, "\".\" ( ");
        js_putn(c, &alts, digits.p, digits.n);
        js_put(c, &alts, " )");
    }
    if (n > 0) {
        if (b->n > 0 && b->p[b->n - 1] != ' ') js_put(c, b, " | ");
        js_range(c, b, ip, ip);
        js_put(c, b, " ( ");
        js_putn(c, b, alts.p, alts.n);
        js_put(c, b, " )");
    }
    js_buf_free(&alts);
    js_buf_free(&digits);
    return n > 0;
}

/* Numbers written m or m.fff (magnitude m >= 0, no sign, no exponent) in
 * [lo, hi] (hi NULL: no upper bound) with exclusive ends where said.
 * Appends alternatives separated by " | "; returns how many. */
static int js_magnitude(js_conv *c, js_buf *b, const js_dec *lo, int lo_excl, const js_dec *hi, int hi_excl, int k) {
    if (hi != NULL && (hi->ip < lo->ip || (hi->ip == lo->ip && strcmp(hi->frac, lo->frac) < 0))) return 0;
    if (hi != NULL && hi->ip == lo->ip) return js_fraction(c, b, lo->ip, lo, lo_excl, hi, hi_excl, k);
    int alts = js_fraction(c, b, lo->ip, lo, lo_excl, NULL, 0, k);
    if (hi == NULL || lo->ip + 1 <= hi->ip - 1) { /* integer parts strictly between: any fraction */
        if (alts++) js_put(c, b, " | ");
        js_range(c, b, lo->ip + 1, hi ? hi->ip - 1 : -1);
        js_use(c, b, FX_FRACTION);
    }
    if (hi != NULL) alts += js_fraction(c, b, hi->ip, NULL, 0, hi, hi_excl, k);
    return alts;
}

static void js_number(js_conv *c, const json_t *s, int integer, js_buf *out) {
    js_bound lo, hi;
    js_read_bound(c, s, "minimum", "exclusiveMinimum", 0, &lo);
    js_read_bound(c, s, "maximum", "exclusiveMaximum", 1, &hi);
    if (c->status != BC_STATUS_OK) return;
    if (!lo.present && !hi.present) {
        js_use(c, out, integer ? FX_INTEGER : FX_NUMBER);
        return;
    }
    js_buf b = {0};
    int alts = 0;
    if (integer) {
        /* Integral bounds; then the non-negative side m in [max(lo, 0), hi]
         * and the negative side "-" m with m in [max(-hi, 0), -lo]. */
        int64_t ilo = 0, ihi = 0;
        if (lo.present) ilo = (int64_t)(lo.exclusive ? floor(lo.v) + 1 : ceil(lo.v));
        if (hi.present) ihi = (int64_t)(hi.exclusive ? ceil(hi.v) - 1 : floor(hi.v));
        if (!hi.present || ihi >= 0) {
            int64_t a = lo.present && ilo > 0 ? ilo : 0;
            if (!hi.present || a <= ihi) {
                js_range(c, &b, a, hi.present ? ihi : -1);
                alts++;
            }
        }
        if (!lo.present || ilo <= 0) {
            int64_t a = hi.present && ihi < 0 ? -ihi : 0;
            if (!lo.present || a <= -ilo) {
                if (alts++) js_put(c, &b, " | ");
                js_put(c, &b, "\"-\"");
                js_range(c, &b, a, lo.present ? -ilo : -1);
            }
        }
    } else {
        /* Both bounds written with the same k fraction digits. */
        int k = 0;
        const js_bound *bounds[2] = {&lo, &hi};
        for (int i = 0; i < 2; i++) {
            if (!bounds[i]->present) continue;
            int d = js_frac_digits(bounds[i]->v);
            if (d < 0) {
                js_fail(c, "the bound %.17g has no exact decimal form", bounds[i]->v);
                js_buf_free(&b);
                return;
            }
            if (d > k) k = d;
        }
        js_dec L, U, zero = {0, ""};
        memset(zero.frac, '0', (size_t)k);
        zero.frac[k] = '\0';
        if (lo.present) js_dec_of(lo.v, k, &L);
        if (hi.present) js_dec_of(hi.v, k, &U);
        /* Non-negative side: m = x in [max(lo, 0), hi]. */
        if (!hi.present || hi.v >= 0) {
            int from_lo = lo.present && lo.v >= 0;
            alts += js_magnitude(c, &b, from_lo ? &L : &zero, from_lo && lo.exclusive, hi.present ? &U : NULL,
                                 hi.exclusive, k);
        }
        /* Negative side: x = -m with m in [max(-hi, 0), -lo]. */
        if (!lo.present || lo.v <= 0) {
            int from_hi = hi.present && hi.v <= 0;
            js_buf neg = {0};
            int n = js_magnitude(c, &neg, from_hi ? &U : &zero, from_hi && hi.exclusive, lo.present ? &L : NULL,
                                 lo.exclusive, k);
            if (n > 0) {
                if (alts++) js_put(c, &b, " | ");
                js_put(c, &b, "\"-\" ( ");
                js_putn(c, &b, neg.p, neg.n);
                js_put(c, &b, " )");
            }
            js_buf_free(&neg);
        }
    }
    if (alts == 0) {
        js_fail(c, "no %s lies between the minimum and the maximum", integer ? "integer" : "number");
        js_buf_free(&b);
        return;
    }
    js_rule_add(c, integer ? "integer" : "number", &b, out);
}

/* ======================================================================== */
/* Strings                                                                  */
/* ======================================================================== */

/* A count keyword (minLength, maxItems, ...): a non-negative integer up to
 * JS_MAX_REPEAT. Returns 1 when present, 0 when absent, -1 on error. */
static int js_count(js_conv *c, const json_t *s, const char *key, long *out) {
    const json_t *v = json_object_get(s, key);
    if (v == NULL) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        js_fail(c, "'%s' must be a non-negative integer", key);
        return -1;
    }
    if (json_integer_value(v) > JS_MAX_REPEAT) {
        js_fail(c, "'%s' %lld passes the limit of %d", key, (long long)json_integer_value(v), JS_MAX_REPEAT);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 1;
}

/* Appends a postfix repetition {lo,hi} (hi < 0: unbounded) of the item just
 * written, which compiles to item_elements elements per copy. */
static void js_put_repeat(js_conv *c, js_buf *b, long lo, long hi, size_t item_elements) {
    /* As the engine expands it: lo copies, then a rule of two alternatives
     * (the item and a reference, or nothing) per optional copy. */
    js_elements(c, item_elements * (size_t)lo + (item_elements + 3) * (size_t)(hi < 0 ? 1 : hi - lo));
    if (lo == 0 && hi < 0)
        js_put(c, b, "*");
    else if (lo == 1 && hi < 0)
        js_put(c, b, "+");
    else if (lo == 0 && hi == 1)
        js_put(c, b, "?");
    else if (hi < 0)
        js_putf(c, b, "{%ld,}", lo);
    else if (lo == hi)
        js_putf(c, b, "{%ld}", lo);
    else
        js_putf(c, b, "{%ld,%ld}", lo, hi);
}

static void js_pattern(js_conv *c, const char *pattern, size_t len, js_buf *out);

static void js_string(js_conv *c, const json_t *s, js_buf *out) {
    const json_t *pattern = json_object_get(s, "pattern"), *format = json_object_get(s, "format");
    long lo = 0, hi = -1;
    int has_lo = js_count(c, s, "minLength", &lo), has_hi = js_count(c, s, "maxLength", &hi);
    if (has_lo < 0 || has_hi < 0) return;
    if (has_hi && hi < lo) {
        js_fail(c, "'maxLength' %ld is below 'minLength' %ld", hi, lo);
        return;
    }
    int n_kinds = (pattern != NULL) + (format != NULL) + (has_lo || has_hi);
    if (n_kinds > 1) {
        js_fail(c, "'%s' together with '%s' is not supported", pattern ? "pattern" : "format",
                format && pattern ? "format" : "minLength/maxLength");
        return;
    }
    if (pattern != NULL) {
        if (!json_is_string(pattern)) {
            js_fail(c, "'pattern' must be a string");
            return;
        }
        size_t old = js_path_push(c, "pattern");
        js_pattern(c, json_string_value(pattern), json_string_length(pattern), out);
        js_path_pop(c, old);
        return;
    }
    if (format != NULL) {
        static const struct {
            const char *name;
            int rule;
        } formats[] = {
            {"date-time", FX_DATE_TIME}, {"date", FX_DATE}, {"time", FX_TIME}, {"email", FX_EMAIL}, {"uuid", FX_UUID}};
        const char *f = json_is_string(format) ? json_string_value(format) : NULL;
        for (size_t i = 0; f != NULL && i < sizeof formats / sizeof formats[0]; i++) {
            if (strcmp(f, formats[i].name) != 0) continue;
            js_buf b = {0};
            js_put(c, &b, "\"\\\"\"");
            js_use(c, &b, formats[i].rule);
            js_put(c, &b, " \"\\\"\"");
            js_rule_add(c, formats[i].name, &b, out);
            return;
        }
        size_t old = js_path_push(c, "format");
        if (f == NULL)
            js_fail(c, "'format' must be a string");
        else
            js_fail(c, "unsupported format '%s' (supported: date-time, date, time, email, uuid)", f);
        js_path_pop(c, old);
        return;
    }
    if (!has_lo && !has_hi) {
        js_use(c, out, FX_STRING);
        return;
    }
    for (int i = 0; i < c->n_string_rules; i++)
        if (c->string_rules[i][0] == lo && c->string_rules[i][1] == hi) {
            js_put_expr(
                c, out,
                &(js_buf){c->rules[c->string_rules[i][2]].name, strlen(c->rules[c->string_rules[i][2]].name), 0});
            return;
        }
    js_buf b = {0};
    js_put(c, &b, "\"\\\"\"");
    js_use(c, &b, FX_CHAR);
    js_put_repeat(c, &b, lo, hi, 1);
    js_put(c, &b, " \"\\\"\"");
    long r = js_rule_new(c, "string");
    js_rule_set(c, r, &b, out);
    if (r >= 0 && c->n_string_rules < 16)
        c->string_rules[c->n_string_rules][0] = lo, c->string_rules[c->n_string_rules][1] = hi,
        c->string_rules[c->n_string_rules++][2] = r;
}

/* ------------------------------------------------------------------------ */
/* pattern: a regular expression (ECMA 262 subset) over the string's       */
/* characters, written over their JSON text                                 */
/* ------------------------------------------------------------------------ */

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
    js_fail(p->c, "pattern '%.*s': %s at offset %zu", (int)(p->len > 200 ? 200 : p->len), p->s, what, p->pos);
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
static uint32_t rx_next_cp(rx_parser *p) { return js_utf8_next(p->s, p->len, &p->pos); }

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
        js_put_literal(c, b, text);
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
            if (n_alt++) js_put(c, &alts, " | ");
            if (short_esc[ch])
                js_putf(c, &alts, "\"\\\\%s\"", short_esc[ch]);
            else
                js_putf(c, &alts, "\"\\\\u%04x\"", (unsigned)ch);
        }
        if (lo <= '"' && '"' <= hi) js_put(c, &alts, n_alt++ ? " | \"\\\\\\\"\"" : "\"\\\\\\\"\"");
        if (lo <= '\\' && '\\' <= hi) js_put(c, &alts, n_alt++ ? " | \"\\\\\\\\\"" : "\"\\\\\\\\\"");
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
            js_put_class_cp(c, &raw, pieces[k][0]);
            if (pieces[k][1] != pieces[k][0]) {
                js_put(c, &raw, "-");
                js_put_class_cp(c, &raw, pieces[k][1]);
            }
        }
    }
    int n = n_alt + (raw.n > 0);
    if (n == 0) {
        rx_fail(p, "an empty character class");
    } else {
        if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') js_put(c, b, " ");
        if (n > 1) js_put(c, b, "( ");
        if (raw.n > 0) {
            js_elements(c, JS_CLASS_ELEMENTS);
            js_put(c, b, "[");
            js_putn(c, b, raw.p, raw.n);
            js_put(c, b, "]");
            if (n_alt) js_put(c, b, " | ");
        }
        if (n_alt) js_putn(c, b, alts.p, alts.n);
        if (n > 1) js_put(c, b, " )");
    }
    js_buf_free(&raw);
    js_buf_free(&alts);
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
    js_put_repeat(p->c, b, lo, hi, b->n > 2 && b->p[0] == '"' ? b->n - 2 : 1);
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
                    js_buf_free(&atom);
                    return;
                }
            }
            if (++p->depth > 32) {
                rx_fail(p, "groups nested deeper than 32");
                js_buf_free(&atom);
                return;
            }
            js_put(p->c, &atom, "( ");
            rx_alternation(p, &atom);
            p->depth--;
            if (p->pos >= p->len || p->s[p->pos] != ')') {
                if (p->c->status == BC_STATUS_OK) rx_fail(p, "an unclosed group");
                js_buf_free(&atom);
                return;
            }
            p->pos++;
            js_put(p->c, &atom, " )");
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
            if (items++) js_put(p->c, b, " ");
            js_putn(p->c, b, atom.p, atom.n);
        }
        js_buf_free(&atom);
    }
    if (items == 0) js_put(p->c, b, "\"\"");
}

static void rx_alternation(rx_parser *p, js_buf *b) {
    rx_sequence(p, b);
    while (p->c->status == BC_STATUS_OK && p->pos < p->len && p->s[p->pos] == '|') {
        p->pos++;
        js_put(p->c, b, " | ");
        rx_sequence(p, b);
    }
}

/* A string matching the pattern: JSON Schema patterns search, so an end
 * without its anchor (^ or $) may have any characters beyond it. */
static void js_pattern(js_conv *c, const char *pattern, size_t len, js_buf *out) {
    if (len > JS_MAX_PATTERN) {
        js_fail(c, "a pattern of %zu bytes passes the limit of %d", len, JS_MAX_PATTERN);
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
    js_put(c, &b, "\"\\\"\"");
    if (!start) js_use(c, &b, FX_CHAR), js_put(c, &b, "*");
    js_put(c, &b, " ( ");
    rx_alternation(&p, &b);
    if (c->status == BC_STATUS_OK && p.pos < p.len) rx_fail(&p, "an unmatched ')'");
    js_put(c, &b, " )");
    if (!end) js_use(c, &b, FX_CHAR), js_put(c, &b, "*");
    js_put(c, &b, " \"\\\"\"");
    js_rule_add(c, "pattern", &b, out);
}

/* ======================================================================== */
/* enum, const                                                              */
/* ======================================================================== */

/* The shortest decimal that reads back as x, with ".0" on integral values. */
static void js_real_text(double x, char tmp[40]) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, 40, "%.*g", prec, x);
        if (strtod(tmp, NULL) == x) break;
    }
    if (strpbrk(tmp, ".eEn") == NULL) strcat(tmp, ".0");
}

static void js_put_real(js_conv *c, js_buf *b, double x) {
    char tmp[40];
    js_real_text(x, tmp);
    js_put_literal(c, b, tmp);
}

/* A JSON value as the texts that write it: its tokens with whitespace between. */
static void js_value_literal(js_conv *c, const json_t *v, js_buf *b) {
    if (c->status != BC_STATUS_OK) return;
    if (++c->depth > JS_MAX_DEPTH) {
        js_fail(c, "a value nested deeper than %d", JS_MAX_DEPTH);
        c->depth--;
        return;
    }
    char tmp[40];
    switch (json_typeof(v)) {
    case JSON_NULL: js_put_literal(c, b, "null"); break;
    case JSON_TRUE: js_put_literal(c, b, "true"); break;
    case JSON_FALSE: js_put_literal(c, b, "false"); break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        js_put_literal(c, b, tmp);
        break;
    case JSON_REAL: js_put_real(c, b, json_real_value(v)); break;
    case JSON_STRING: js_put_string_literal(c, b, json_string_value(v), json_string_length(v)); break;
    case JSON_ARRAY: {
        js_put_literal(c, b, "[");
        js_use(c, b, FX_WS);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0) js_use(c, b, FX_WS), js_put_literal(c, b, ","), js_use(c, b, FX_WS);
            js_value_literal(c, json_array_get(v, i), b);
        }
        if (json_array_size(v) > 0) js_use(c, b, FX_WS);
        js_put_literal(c, b, "]");
        break;
    }
    case JSON_OBJECT: {
        js_put_literal(c, b, "{");
        js_use(c, b, FX_WS);
        const char *key;
        const json_t *item;
        size_t i = 0;
        json_object_foreach((json_t *)v, key, item) {
            if (i++ > 0) js_use(c, b, FX_WS), js_put_literal(c, b, ","), js_use(c, b, FX_WS);
            js_put_string_literal(c, b, key, strlen(key));
            js_use(c, b, FX_WS), js_put_literal(c, b, ":"), js_use(c, b, FX_WS);
            js_value_literal(c, item, b);
        }
        if (i > 0) js_use(c, b, FX_WS);
        js_put_literal(c, b, "}");
        break;
    }
    }
    c->depth--;
}

/* ======================================================================== */
/* Schemas                                                                  */
/* ======================================================================== */

enum { T_NULL = 1, T_BOOLEAN = 2, T_OBJECT = 4, T_ARRAY = 8, T_NUMBER = 16, T_INTEGER = 32, T_STRING = 64 };
static const struct {
    const char *name;
    int bit;
} js_types[] = {{"null", T_NULL},     {"boolean", T_BOOLEAN}, {"object", T_OBJECT}, {"array", T_ARRAY},
                {"number", T_NUMBER}, {"integer", T_INTEGER}, {"string", T_STRING}};

/* Keywords that only annotate, and those that only hold other schemas. */
static const char *const js_annotations[] = {"title",     "description", "default",  "examples",
                                             "$schema",   "$id",         "$comment", "readOnly",
                                             "writeOnly", "deprecated",  "$defs",    "definitions"};
static const char *const js_assertions[] = {"type",
                                            "properties",
                                            "required",
                                            "additionalProperties",
                                            "enum",
                                            "const",
                                            "items",
                                            "prefixItems",
                                            "minItems",
                                            "maxItems",
                                            "anyOf",
                                            "oneOf",
                                            "allOf",
                                            "$ref",
                                            "pattern",
                                            "format",
                                            "minLength",
                                            "maxLength",
                                            "minimum",
                                            "maximum",
                                            "exclusiveMinimum",
                                            "exclusiveMaximum"};

static int js_in(const char *key, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0) return 1;
    return 0;
}
#define JS_IN(key, list) js_in(key, list, sizeof list / sizeof list[0])

static void js_schema(js_conv *c, const json_t *s, js_buf *out);

/* A subschema at path seg (and index i when i >= 0). */
static void js_sub(js_conv *c, const json_t *s, const char *seg, long i, js_buf *out) {
    size_t old = i >= 0 ? js_path_push_index(c, seg, (size_t)i) : js_path_push(c, seg);
    js_schema(c, s, out);
    js_path_pop(c, old);
}

/* A subschema after a token: $ref cycles through it consume text. */
static void js_sub_consumed(js_conv *c, const json_t *s, const char *seg, long i, js_buf *out) {
    int saved = c->n_entered;
    c->n_entered = 0;
    js_sub(c, s, seg, i, out);
    c->n_entered = saved;
}

static void js_array(js_conv *c, const json_t *s, js_buf *out) {
    const json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    long lo = 0, hi = -1;
    if (js_count(c, s, "minItems", &lo) < 0 || js_count(c, s, "maxItems", &hi) < 0) return;
    if (hi >= 0 && hi < lo) {
        js_fail(c, "'maxItems' %ld is below 'minItems' %ld", hi, lo);
        return;
    }
    if (prefix != NULL && (!json_is_array(prefix) || json_array_size(prefix) > JS_MAX_PROPERTIES)) {
        js_fail(c, "'prefixItems' must be an array of at most %d schemas", JS_MAX_PROPERTIES);
        return;
    }
    long k = prefix ? (long)json_array_size(prefix) : 0;
    int no_more = items != NULL && json_is_false(items);
    if (no_more && hi < 0) hi = k;
    if (hi >= 0 && hi < k) k = hi; /* prefix items past maxItems never appear */
    if (lo > k && no_more) {
        js_fail(c, "'minItems' %ld asks for more items than 'prefixItems' with 'items' false allows", lo);
        return;
    }
    /* The element schemas: the prefix, then the rest. */
    js_buf rest = {0};
    if (!no_more && (hi < 0 || hi > k)) {
        if (items == NULL || json_is_true(items))
            js_use(c, &rest, FX_VALUE);
        else
            js_sub_consumed(c, items, "items", -1, &rest);
    }
    js_buf *pre = k > 0 ? calloc((size_t)k, sizeof *pre) : NULL;
    if (k > 0 && pre == NULL) js_fail_memory(c);
    for (long i = 0; i < k && c->status == BC_STATUS_OK; i++)
        js_sub_consumed(c, json_array_get(prefix, (size_t)i), "prefixItems", i, &pre[i]);

    js_buf b = {0};
    js_put_literal(c, &b, "[");
    js_use(c, &b, FX_WS);
    if (hi == 0) {
        js_put_literal(c, &b, "]");
    } else {
        /* tail: the elements from index k on, each after a comma. */
        js_buf tail = {0};
        if (rest.n > 0) {
            long t_lo = lo > k ? lo - k : 0, t_hi = hi >= 0 ? hi - k : -1;
            if (k == 0) t_lo = t_lo > 0 ? t_lo - 1 : 0, t_hi = t_hi > 0 ? t_hi - 1 : t_hi;
            if (t_hi != 0) {
                js_put(c, &tail, "( ");
                js_use(c, &tail, FX_WS), js_put_literal(c, &tail, ","), js_use(c, &tail, FX_WS);
                js_put_expr(c, &tail, &rest);
                js_put(c, &tail, " )");
                js_put_repeat(c, &tail, t_lo, t_hi, 1);
            }
        }
        /* Going back from the end: element i (i >= 1) after a comma, then
         * the rest; optional from index lo on. */
        for (long i = k - 1; i >= 1 && c->status == BC_STATUS_OK; i--) {
            js_buf step = {0};
            js_put(c, &step, "( ");
            js_use(c, &step, FX_WS), js_put_literal(c, &step, ","), js_use(c, &step, FX_WS);
            js_put_expr(c, &step, &pre[i]);
            if (tail.n > 0) js_put(c, &step, " "), js_putn(c, &step, tail.p, tail.n);
            js_put(c, &step, i >= lo ? " )?" : " )");
            js_buf_free(&tail);
            if (i > 1) {
                js_rule_add(c, "items-from", &step, &tail);
            } else
                tail = step;
        }
        js_buf first = {0};
        js_put_expr(c, &first, k > 0 ? &pre[0] : &rest);
        if (tail.n > 0) js_put(c, &first, " "), js_putn(c, &first, tail.p, tail.n);
        js_use(c, &first, FX_WS);
        if (lo == 0) js_put(c, &b, " ( ");
        js_put_expr(c, &b, &first);
        if (lo == 0) js_put(c, &b, " )?");
        js_put_literal(c, &b, "]");
        js_buf_free(&first);
        js_buf_free(&tail);
    }
    for (long i = 0; i < k && pre != NULL; i++) js_buf_free(&pre[i]);
    free(pre);
    js_buf_free(&rest);
    js_rule_add(c, "array", &b, out);
}

/* ------------------------------------------------------------------------ */
/* Extra keys: any JSON string but the declared names, by a trie of their   */
/* texts. Names holding characters JSON escapes are caught only as written */
/* canonically; an escape the trie does not hold is a different key.      */
/* ------------------------------------------------------------------------ */

typedef struct js_trie {
    uint32_t cp;         /* the code point on the edge into this node */
    long child, sibling; /* first child and next sibling, -1 for none */
    int terminal;        /* a text (a declared name, a value) ends here */
} js_trie;

/* The rule of the rest of a key that is not a declared name, given the
 * prefix up to node: the end (unless a name ends here), a child's character
 * and its rule, or any other character and then anything. */
static long js_trie_key(js_conv *c, const js_trie *t, long node) {
    js_buf b = {0};
    int alts = 0;
    if (!t[node].terminal) {
        js_put(c, &b, "\"\"");
        alts++;
    }
    js_buf cls = {0};
    for (long ch = t[node].child; ch >= 0; ch = t[ch].sibling) {
        if (alts++) js_put(c, &b, " | ");
        uint32_t cp = t[ch].cp;
        char one[8] = {0};
        size_t n = 0;
        if (cp < 0x80)
            one[n++] = (char)cp;
        else if (cp < 0x800)
            one[n++] = (char)(0xC0 | (cp >> 6)), one[n++] = (char)(0x80 | (cp & 0x3F));
        else if (cp < 0x10000)
            one[n++] = (char)(0xE0 | (cp >> 12)), one[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)),
            one[n++] = (char)(0x80 | (cp & 0x3F));
        else
            one[n++] = (char)(0xF0 | (cp >> 18)), one[n++] = (char)(0x80 | ((cp >> 12) & 0x3F)),
            one[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)), one[n++] = (char)(0x80 | (cp & 0x3F));
        /* The string literal helper adds quotes; write the character's JSON text as a literal. */
        js_buf lit = {0};
        js_put_string_literal(c, &lit, one, n);
        /* The literal of the character's JSON text: "\"X\"" less its quotes. */
        if (lit.n >= 6) {
            js_put(c, &b, "\"");
            js_putn(c, &b, lit.p + 3, lit.n - 6);
            js_put(c, &b, "\"");
        }
        js_buf_free(&lit);
        long sub = js_trie_key(c, t, ch);
        if (sub >= 0) js_put(c, &b, " "), js_put(c, &b, c->rules[sub].name);
        if (cp >= 0x20 && cp != '"' && cp != '\\') js_put_class_cp(c, &cls, cp);
    }
    /* Any other first character, then anything. */
    if (alts++) js_put(c, &b, " | ");
    js_elements(c, JS_CLASS_ELEMENTS);
    js_put(c, &b, "[^\"\\\\\\x00-\\x1F");
    if (cls.n > 0) js_putn(c, &b, cls.p, cls.n);
    js_put(c, &b, "]");
    js_use(c, &b, FX_CHAR), js_put(c, &b, "*");
    js_put(c, &b, " | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\"");
    js_use(c, &b, FX_HEX), js_use(c, &b, FX_HEX), js_use(c, &b, FX_HEX), js_use(c, &b, FX_HEX);
    js_put(c, &b, " )");
    js_use(c, &b, FX_CHAR), js_put(c, &b, "*");
    js_buf_free(&cls);
    long r = js_rule_new(c, "key-rest");
    js_rule_set(c, r, &b, NULL);
    return c->status == BC_STATUS_OK ? r : -1;
}

/* Appends the rule of a key that is none of the properties' names. */
static void js_extra_key(js_conv *c, const json_t *props, js_buf *out) {
    size_t cap = 1;
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)props, name, v) cap += strlen(name);
    js_trie *t = malloc(cap * sizeof *t);
    if (t == NULL) {
        js_fail_memory(c);
        return;
    }
    size_t n = 1;
    t[0] = (js_trie){0, -1, -1, 0};
    json_object_foreach((json_t *)props, name, v) {
        long node = 0;
        size_t len = strlen(name);
        for (size_t i = 0; i < len;) {
            uint32_t cp = js_utf8_next(name, len, &i);
            long ch = t[node].child;
            while (ch >= 0 && t[ch].cp != cp) ch = t[ch].sibling;
            if (ch < 0) {
                ch = (long)n++;
                t[ch] = (js_trie){cp, -1, t[node].child, 0};
                t[node].child = ch;
            }
            node = ch;
        }
        t[node].terminal = 1;
    }
    /* The escapes JSON requires are not followed by the trie: a name with one
     * stays reachable through the escape branch (documented). */
    long r = js_trie_key(c, t, 0);
    free(t);
    if (r < 0) return;
    js_buf b = {0};
    js_put(c, &b, "\"\\\"\" ");
    js_put(c, &b, c->rules[r].name);
    js_put(c, &b, " \"\\\"\"");
    js_rule_add(c, "extra-key", &b, out);
}

static void js_object(js_conv *c, const json_t *s, js_buf *out) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    const json_t *extra = json_object_get(s, "additionalProperties");
    if (props != NULL && (!json_is_object(props) || json_object_size(props) > JS_MAX_PROPERTIES)) {
        js_fail(c, "'properties' must be an object of at most %d properties", JS_MAX_PROPERTIES);
        return;
    }
    if (req != NULL && !json_is_array(req)) {
        js_fail(c, "'required' must be an array of property names");
        return;
    }
    const char *pname;
    const json_t *pv;
    if (props != NULL) json_object_foreach((json_t *)props, pname, pv) {
            if (strlen(pname) > JS_MAX_NAME_BYTES) {
                js_fail(c, "a property name of %zu bytes passes the limit of %d", strlen(pname), JS_MAX_NAME_BYTES);
                return;
            }
        }
    for (size_t i = 0; req != NULL && i < json_array_size(req); i++) {
        const json_t *r = json_array_get(req, i);
        size_t old = js_path_push_index(c, "required", i);
        if (!json_is_string(r))
            js_fail(c, "'required' must hold strings");
        else if (props == NULL || json_object_get(props, json_string_value(r)) == NULL)
            js_fail(c, "required property '%s' is not in 'properties'", json_string_value(r));
        for (size_t j = 0; j < i && c->status == BC_STATUS_OK; j++)
            if (json_equal((json_t *)json_array_get(req, j), (json_t *)r))
                js_fail(c, "property '%s' is required twice", json_string_value(r));
        js_path_pop(c, old);
    }
    if (c->status != BC_STATUS_OK) return;
    size_t n = props ? json_object_size(props) : 0;

    /* Extra members: key ws ":" ws value. */
    js_buf extra_kv = {0};
    if (extra == NULL || !json_is_false(extra)) {
        if (n > 0)
            js_extra_key(c, props, &extra_kv);
        else
            js_use(c, &extra_kv, FX_STRING);
        js_use(c, &extra_kv, FX_WS), js_put_literal(c, &extra_kv, ":"), js_use(c, &extra_kv, FX_WS);
        if (extra == NULL || json_is_true(extra))
            js_use(c, &extra_kv, FX_VALUE);
        else
            js_sub_consumed(c, extra, "additionalProperties", -1, &extra_kv);
    }

    /* Each declared member: "name" ws ":" ws value. */
    js_buf *kv = n > 0 ? calloc(n, sizeof *kv) : NULL;
    int *required = n > 0 ? calloc(n, sizeof *required) : NULL; /* 1 required, 0 optional, -1 never (false) */
    if (n > 0 && (kv == NULL || required == NULL)) js_fail_memory(c);
    const char *name;
    const json_t *sub;
    size_t i = 0;
    if (c->status == BC_STATUS_OK) json_object_foreach((json_t *)props, name, sub) {
            for (size_t j = 0; req != NULL && j < json_array_size(req); j++)
                if (strcmp(json_string_value(json_array_get(req, j)), name) == 0) required[i] = 1;
            size_t old = js_path_push(c, "properties");
            if (json_is_false(sub)) { /* the key may not appear (nor as an extra one: the trie has its name) */
                js_path_push(c, name);
                if (required[i]) js_fail(c, "a required property with the schema false matches nothing");
                required[i] = -1;
            } else {
                js_put_string_literal(c, &kv[i], name, strlen(name));
                js_use(c, &kv[i], FX_WS), js_put_literal(c, &kv[i], ":"), js_use(c, &kv[i], FX_WS);
                js_sub_consumed(c, sub, name, -1, &kv[i]);
            }
            js_path_pop(c, old);
            i++;
        }
    /* Where a property may be left out, the matcher follows every one that
     * may come next as a live parse: the runs of optional ones are bounded. */
    size_t run = 0;
    i = 0;
    if (c->status == BC_STATUS_OK) json_object_foreach((json_t *)props, name, sub) {
            int r = required[i++];
            if (r < 0) continue;
            run = r ? 0 : run + 1;
            if (run > JS_MAX_OPTIONAL_RUN) {
                js_fail(c,
                        "more than %d optional properties in a row (up to '%s'): the matcher follows each as a live "
                        "parse; make some of them required",
                        JS_MAX_OPTIONAL_RUN, name);
                break;
            }
        }

    /* tail[i]: members i.. after one already written (each after a comma);
     * head[i]: members i.., at least one, none written yet. Built from the end. */
    js_buf tail = {0}, head = {0};
    int any_required = 0;
    if (extra_kv.n > 0) {
        js_put(c, &tail, "( ");
        js_use(c, &tail, FX_WS), js_put_literal(c, &tail, ","), js_use(c, &tail, FX_WS);
        js_put_expr(c, &tail, &extra_kv);
        js_put(c, &tail, " )*");
        js_putn(c, &head, extra_kv.p, extra_kv.n);
        js_put(c, &head, " "), js_putn(c, &head, tail.p, tail.n);
        js_buf named = {0};
        js_rule_add(c, "members-extra", &tail, &named);
        tail = named;
    }
    for (size_t k = n; k-- > 0 && c->status == BC_STATUS_OK;) {
        if (required[k] < 0) continue; /* never present */
        /* head[k] = kv tail[k+1] (| head[k+1] when optional) */
        js_buf h = {0};
        js_put_expr(c, &h, &kv[k]);
        if (tail.n > 0) js_put(c, &h, " "), js_putn(c, &h, tail.p, tail.n);
        if (!required[k] && head.n > 0) {
            js_buf named = {0};
            js_rule_add(c, "members", &head, &named);
            js_put(c, &h, " | "), js_putn(c, &h, named.p, named.n);
            js_buf_free(&named);
        }
        any_required |= required[k];
        js_buf_free(&head);
        head = h;
        /* tail[k] = ws "," ws kv tail[k+1], optional unless required */
        js_buf t = {0};
        js_put(c, &t, "( ");
        js_use(c, &t, FX_WS), js_put_literal(c, &t, ","), js_use(c, &t, FX_WS);
        js_put_expr(c, &t, &kv[k]);
        js_put(c, &t, required[k] ? " )" : " )?");
        if (tail.n > 0) js_put(c, &t, " "), js_putn(c, &t, tail.p, tail.n);
        js_buf_free(&tail);
        if (k > 0) {
            js_rule_add(c, "members-after", &t, &tail);
        } else
            tail = t;
    }
    js_buf b = {0};
    js_put_literal(c, &b, "{");
    js_use(c, &b, FX_WS);
    if (head.n > 0) {
        js_put(c, &b, any_required ? " ( " : " ( ( ");
        js_putn(c, &b, head.p, head.n);
        js_put(c, &b, any_required ? " )" : " )");
        js_use(c, &b, FX_WS);
        if (!any_required) js_put(c, &b, " )?");
    }
    js_put_literal(c, &b, "}");
    js_rule_add(c, "object", &b, out);

    for (size_t k = 0; kv != NULL && k < n; k++) js_buf_free(&kv[k]);
    free(kv);
    free(required);
    js_buf_free(&head);
    js_buf_free(&tail);
    js_buf_free(&extra_kv);
}

/* The type keyword as a set of T_ bits (all of them when absent). */
static int js_type_mask(js_conv *c, const json_t *s) {
    const json_t *t = json_object_get(s, "type");
    if (t == NULL) return T_NULL | T_BOOLEAN | T_OBJECT | T_ARRAY | T_NUMBER | T_STRING;
    int mask = 0;
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *name = json_is_array(t) ? json_array_get(t, i) : t;
        int bit = 0;
        for (size_t k = 0; json_is_string(name) && k < sizeof js_types / sizeof js_types[0]; k++)
            if (strcmp(json_string_value(name), js_types[k].name) == 0) bit = js_types[k].bit;
        if (bit == 0) {
            size_t old = js_path_push(c, "type");
            if (json_is_string(name))
                js_fail(c, "unknown type '%s'", json_string_value(name));
            else
                js_fail(c, "'type' must be a type name or an array of them");
            js_path_pop(c, old);
            return 0;
        }
        mask |= bit;
    }
    if (mask == 0) js_fail(c, "'type' is an empty array");
    if (mask & T_NUMBER) mask &= ~T_INTEGER; /* every integer is a number */
    return mask;
}

/* Whether JSON value v has a type in mask. */
static int js_value_has_type(const json_t *v, int mask) {
    switch (json_typeof(v)) {
    case JSON_NULL: return mask & T_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return mask & T_BOOLEAN;
    case JSON_OBJECT: return mask & T_OBJECT;
    case JSON_ARRAY: return mask & T_ARRAY;
    case JSON_INTEGER: return mask & (T_NUMBER | T_INTEGER);
    case JSON_REAL: return (mask & T_NUMBER) || ((mask & T_INTEGER) && json_real_value(v) == floor(json_real_value(v)));
    case JSON_STRING: return mask & T_STRING;
    }
    return 0;
}

/* The JSON text of a scalar as json.dumps writes it (2.0 as 2 when only
 * integers are allowed). */
static void js_scalar_text(js_conv *c, const json_t *v, int integer_only, js_buf *t) {
    char tmp[40];
    switch (json_typeof(v)) {
    case JSON_NULL: js_put(c, t, "null"); return;
    case JSON_TRUE: js_put(c, t, "true"); return;
    case JSON_FALSE: js_put(c, t, "false"); return;
    case JSON_INTEGER: js_putf(c, t, "%lld", (long long)json_integer_value(v)); return;
    case JSON_REAL:
        if (integer_only)
            snprintf(tmp, sizeof tmp, "%.0f", json_real_value(v));
        else
            js_real_text(json_real_value(v), tmp);
        js_put(c, t, tmp);
        return;
    case JSON_STRING: break;
    default: return;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    js_put(c, t, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        static const char *const esc[0x20] = {
            ['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t"};
        if (ch == '"')
            js_put(c, t, "\\\"");
        else if (ch == '\\')
            js_put(c, t, "\\\\");
        else if (ch < 0x20 && esc[ch] != NULL)
            js_put(c, t, esc[ch]);
        else if (ch < 0x20)
            js_putf(c, t, "\\u%04x", ch);
        else
            js_putn(c, t, (const char *)&s[i], 1);
    }
    js_put(c, t, "\"");
}

/* A trie of texts over code points: node 0 is the root. */
typedef struct js_text_trie {
    js_trie *nodes;
    size_t n, cap;
} js_text_trie;

static void js_text_trie_insert(js_conv *c, js_text_trie *t, const char *text, size_t len) {
    if (t->n == 0 || t->n + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap < t->n + len + 2) cap *= 2;
        js_trie *p = realloc(t->nodes, cap * sizeof *p);
        if (p == NULL) {
            js_fail_memory(c);
            return;
        }
        t->nodes = p, t->cap = cap;
        if (t->n == 0) t->nodes[t->n++] = (js_trie){0, -1, -1, 0};
    }
    long node = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = js_utf8_next(text, len, &i);
        long ch = t->nodes[node].child;
        while (ch >= 0 && t->nodes[ch].cp != cp) ch = t->nodes[ch].sibling;
        if (ch < 0) {
            ch = (long)t->n++;
            t->nodes[ch] = (js_trie){cp, -1, t->nodes[node].child, 0};
            t->nodes[node].child = ch;
        }
        node = ch;
    }
    t->nodes[node].terminal = 1;
}

/* Appends the alternatives of node's texts: each child's run of single
 * characters as one literal, then a rule for where the texts part. */
static void js_text_trie_emit(js_conv *c, const js_text_trie *t, long node, js_buf *b) {
    int alts = 0;
    if (t->nodes[node].terminal) {
        js_put(c, b, "\"\"");
        alts++;
    }
    for (long ch = t->nodes[node].child; ch >= 0 && c->status == BC_STATUS_OK; ch = t->nodes[ch].sibling) {
        if (alts++) js_put(c, b, " | ");
        char run[256];
        size_t n = 0;
        long at = ch;
        for (;;) {
            uint32_t cp = t->nodes[at].cp;
            char tmp[5] = {0};
            size_t k = 0;
            if (cp < 0x80)
                tmp[k++] = (char)cp;
            else if (cp < 0x800)
                tmp[k++] = (char)(0xC0 | (cp >> 6)), tmp[k++] = (char)(0x80 | (cp & 0x3F));
            else if (cp < 0x10000)
                tmp[k++] = (char)(0xE0 | (cp >> 12)), tmp[k++] = (char)(0x80 | ((cp >> 6) & 0x3F)),
                tmp[k++] = (char)(0x80 | (cp & 0x3F));
            else
                tmp[k++] = (char)(0xF0 | (cp >> 18)), tmp[k++] = (char)(0x80 | ((cp >> 12) & 0x3F)),
                tmp[k++] = (char)(0x80 | ((cp >> 6) & 0x3F)), tmp[k++] = (char)(0x80 | (cp & 0x3F));
            memcpy(run + n, tmp, k);
            n += k;
            const js_trie *x = &t->nodes[at];
            if (x->terminal || x->child < 0 || t->nodes[x->child].sibling >= 0 || n + 4 >= sizeof run - 1) break;
            at = x->child;
        }
        run[n] = '\0';
        js_put_literal(c, b, run);
        const js_trie *x = &t->nodes[at];
        if (x->child < 0) continue; /* a leaf: the text ends here */
        js_buf sub = {0};
        js_text_trie_emit(c, t, at, &sub);
        js_rule_add(c, "enum-rest", &sub, b);
    }
}

static void js_enum(js_conv *c, const json_t *s, js_buf *out) {
    const json_t *list = json_object_get(s, "enum"), *one = json_object_get(s, "const");
    if (list != NULL && one != NULL) {
        js_fail(c, "'enum' together with 'const' is not supported");
        return;
    }
    if (list != NULL && (!json_is_array(list) || json_array_size(list) == 0)) {
        js_fail(c, "'enum' must be a non-empty array");
        return;
    }
    if (list != NULL && json_array_size(list) > JS_MAX_ENUM) {
        js_fail(c, "'enum' of %zu values passes the limit of %d", json_array_size(list), JS_MAX_ENUM);
        return;
    }
    int mask = json_object_get(s, "type") ? js_type_mask(c, s) : 0x7F;
    if (c->status != BC_STATUS_OK) return;
    /* Scalars go into a trie of their texts, so that values sharing a
     * prefix are one parse until they part; arrays and objects are
     * alternatives of their own. */
    js_text_trie trie = {0};
    js_buf b = {0};
    size_t n = list ? json_array_size(list) : 1, kept = 0;
    for (size_t i = 0; i < n && c->status == BC_STATUS_OK; i++) {
        const json_t *v = list ? json_array_get(list, i) : one;
        if (!js_value_has_type(v, mask)) continue;
        kept++;
        size_t old = list ? js_path_push_index(c, "enum", i) : js_path_push(c, "const");
        if (!json_is_array(v) && !json_is_object(v)) {
            js_buf text = {0};
            js_scalar_text(c, v, (mask & T_NUMBER) == 0, &text);
            if (c->status == BC_STATUS_OK) js_text_trie_insert(c, &trie, text.p, text.n);
            js_buf_free(&text);
        } else {
            if (b.n > 0) js_put(c, &b, " | ");
            js_value_literal(c, v, &b);
        }
        js_path_pop(c, old);
    }
    if (kept == 0 && c->status == BC_STATUS_OK)
        js_fail(c, "no value of '%s' has the schema's type", list ? "enum" : "const");
    if (trie.n > 0 && c->status == BC_STATUS_OK) {
        if (b.n > 0) js_put(c, &b, " | ");
        size_t old = js_path_push(c, list ? "enum" : "const");
        js_text_trie_emit(c, &trie, 0, &b);
        js_path_pop(c, old);
    }
    free(trie.nodes);
    js_rule_add(c, list ? "enum" : "const", &b, out);
}

/* Resolves a local $ref (a JSON pointer into the root: "#", "#/$defs/x"). */
static const json_t *js_resolve(js_conv *c, const char *ref) {
    if (ref[0] != '#') {
        js_fail(c, "'$ref' '%s' is not local (only '#...' references are supported)", ref);
        return NULL;
    }
    const json_t *at = c->root;
    const char *p = ref + 1;
    if (*p != '\0' && *p != '/') {
        js_fail(c, "'$ref' '%s' is not a JSON pointer (anchors are not supported)", ref);
        return NULL;
    }
    while (*p == '/' && at != NULL) {
        p++;
        char seg[256];
        size_t n = 0;
        for (; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~' && (p[1] == '0' || p[1] == '1')) ch = *++p == '0' ? '~' : '/';
            if (n + 1 < sizeof seg) seg[n++] = ch;
        }
        seg[n] = '\0';
        if (json_is_object(at))
            at = json_object_get(at, seg);
        else if (json_is_array(at)) {
            char *end;
            unsigned long i = strtoul(seg, &end, 10);
            at = *end == '\0' && n > 0 ? json_array_get(at, i) : NULL;
        } else
            at = NULL;
    }
    if (at == NULL) js_fail(c, "'$ref' '%s' names nothing in the schema", ref);
    return at;
}

static void js_ref(js_conv *c, const json_t *s, js_buf *out) {
    const json_t *ref = json_object_get(s, "$ref");
    if (!json_is_string(ref)) {
        js_fail(c, "'$ref' must be a string");
        return;
    }
    const json_t *target = js_resolve(c, json_string_value(ref));
    if (target == NULL) return;
    for (int i = 0; i < c->n_entered; i++)
        if (c->entered[i] == target) {
            js_fail(c, "'$ref' '%s' recurses without consuming any text", json_string_value(ref));
            return;
        }
    for (size_t i = 0; i < c->n_rules; i++)
        if (c->rules[i].target == target) { /* made, or being made higher up */
            js_put(c, out, out->n > 0 && out->p[out->n - 1] != ' ' ? " " : "");
            js_put(c, out, c->rules[i].name);
            return;
        }
    if (c->n_entered == JS_MAX_DEPTH) {
        js_fail(c, "'$ref' chains deeper than %d", JS_MAX_DEPTH);
        return;
    }
    const char *hint = strrchr(json_string_value(ref), '/');
    long r = js_rule_new(c, hint ? hint + 1 : "root");
    if (r < 0) return;
    c->rules[r].target = target;
    c->entered[c->n_entered++] = target;
    /* The target's own path, for messages. */
    char saved[JS_MAX_PATH];
    size_t saved_len = c->path_len;
    memcpy(saved, c->path, saved_len + 1);
    const char *ptr = json_string_value(ref) + 1;
    snprintf(c->path, sizeof c->path, "%s", ptr);
    c->path_len = strlen(c->path);
    js_buf body = {0};
    js_schema(c, target, &body);
    memcpy(c->path, saved, saved_len + 1);
    c->path_len = saved_len;
    c->n_entered--;
    js_rule_set(c, r, &body, out);
}

static void js_schema(js_conv *c, const json_t *s, js_buf *out) {
    if (c->status != BC_STATUS_OK) return;
    if (json_is_true(s)) {
        js_use(c, out, FX_VALUE);
        return;
    }
    if (json_is_false(s)) {
        js_fail(c, "the schema false matches nothing");
        return;
    }
    if (!json_is_object(s)) {
        js_fail(c, "a schema must be an object or a boolean");
        return;
    }
    if (c->depth >= JS_MAX_DEPTH) {
        js_fail(c, "schemas nested deeper than %d", JS_MAX_DEPTH);
        return;
    }
    c->depth++;
    /* combinator: $ref, anyOf, oneOf or allOf, alone; enum/const: beside
     * type at most (it filters the values); the rest by type. */
    const char *key, *combinator = NULL, *enum_kw = NULL, *other = NULL, *other_not_type = NULL;
    const json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        if (JS_IN(key, js_annotations)) continue;
        if (!JS_IN(key, js_assertions)) {
            js_fail(c, "unsupported keyword '%s'", key);
            c->depth--;
            return;
        }
        if (strcmp(key, "$ref") == 0 || strcmp(key, "anyOf") == 0 || strcmp(key, "oneOf") == 0 ||
            strcmp(key, "allOf") == 0) {
            if (combinator == NULL)
                combinator = key;
            else if (other == NULL)
                other = key;
        } else if (strcmp(key, "enum") == 0 || strcmp(key, "const") == 0) {
            if (enum_kw == NULL)
                enum_kw = key;
            else if (other == NULL)
                other = key;
        } else {
            if (other == NULL) other = key;
            if (other_not_type == NULL && strcmp(key, "type") != 0) other_not_type = key;
        }
    }
    const json_t *defs[2] = {json_object_get(s, "$defs"), json_object_get(s, "definitions")};
    for (int i = 0; i < 2; i++)
        if (defs[i] != NULL && !json_is_object(defs[i]))
            js_fail(c, "'%s' must be an object of schemas", i == 0 ? "$defs" : "definitions");
    if (combinator != NULL && (enum_kw != NULL || other != NULL))
        js_fail(c, "'%s' together with '%s' is not supported", combinator, enum_kw ? enum_kw : other);
    else if (enum_kw != NULL && other_not_type != NULL)
        js_fail(c, "'%s' together with '%s' is not supported", enum_kw, other_not_type);
    else if (enum_kw != NULL)
        js_enum(c, s, out);
    else if (combinator != NULL && strcmp(combinator, "$ref") == 0)
        js_ref(c, s, out);
    else if (combinator != NULL) {
        const json_t *list = json_object_get(s, combinator);
        size_t n = json_is_array(list) ? json_array_size(list) : 0;
        if (n == 0 || n > JS_MAX_BRANCHES)
            js_fail(c, "'%s' must be an array of 1 to %d schemas (the matcher follows each as a live parse)",
                    combinator, JS_MAX_BRANCHES);
        else if (strcmp(combinator, "allOf") == 0 && n > 1)
            js_fail(c, "'allOf' of more than one schema is not supported");
        else if (n == 1)
            js_sub(c, json_array_get(list, 0), combinator, 0, out);
        else {
            js_buf b = {0};
            for (size_t i = 0; i < n && c->status == BC_STATUS_OK; i++) {
                if (i > 0) js_put(c, &b, " | ");
                js_sub(c, json_array_get(list, i), combinator, (long)i, &b);
            }
            js_rule_add(c, js_hint(c), &b, out);
        }
    } else {
        int mask = js_type_mask(c, s);
        js_buf b = {0};
        int alts = 0;
        for (size_t i = 0; i < sizeof js_types / sizeof js_types[0] && c->status == BC_STATUS_OK; i++) {
            int bit = js_types[i].bit;
            if (!(mask & bit)) continue;
            if (alts++) js_put(c, &b, " | ");
            switch (bit) {
            case T_NULL: js_use(c, &b, FX_NULL); break;
            case T_BOOLEAN: js_use(c, &b, FX_BOOLEAN); break;
            case T_OBJECT: js_object(c, s, &b); break;
            case T_ARRAY: js_array(c, s, &b); break;
            case T_NUMBER: js_number(c, s, 0, &b); break;
            case T_INTEGER: js_number(c, s, 1, &b); break;
            case T_STRING: js_string(c, s, &b); break;
            }
        }
        /* One name needs no rule of its own. */
        if (alts == 1 && b.n > 0 && strpbrk(b.p, " \"") == NULL) {
            if (out->n > 0 && out->p[out->n - 1] != ' ' && out->p[out->n - 1] != '(') js_put(c, out, " ");
            js_putn(c, out, b.p, b.n);
            js_buf_free(&b);
        } else
            js_rule_add(c, js_hint(c), &b, out);
    }
    c->depth--;
}

/* ======================================================================== */
/* Entry point                                                              */
/* ======================================================================== */

bc_status bc_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, char *err, size_t err_size) {
    *gbnf = NULL;
    if (err != NULL && err_size > 0) err[0] = '\0';
    js_conv c = {0};
    c.err = err, c.err_size = err_size;
    json_t *root = NULL;
    js_buf body = {0};
    if (schema == NULL || len == 0) {
        js_use(&c, &body, FX_OBJECT); /* json_object: any object */
    } else {
        json_error_t jerr;
        root = json_loadb(schema, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (root == NULL) {
            if (err != NULL && err_size > 0)
                snprintf(err, err_size, "malformed JSON Schema at line %d, column %d: %s", jerr.line, jerr.column,
                         jerr.text);
            return BC_STATUS_ERROR_ARGUMENT;
        }
        c.root = root;
        js_schema(&c, root, &body);
        js_elements(&c, body.n);
    }
    js_buf outb = {0};
    if (c.status == BC_STATUS_OK) {
        js_put(&c, &outb, "root ::= ");
        js_putn(&c, &outb, body.p, body.n);
        js_put(&c, &outb, "\n");
        for (size_t i = 0; i < c.n_rules; i++)
            js_putf(&c, &outb, "%s ::= ", c.rules[i].name), js_putn(&c, &outb, c.rules[i].body.p, c.rules[i].body.n),
                js_put(&c, &outb, "\n");
        /* Fixed rules pull in the ones they use. */
        for (int changed = 1; changed;) {
            changed = 0;
            for (int i = 0; i < FX_COUNT; i++)
                if ((c.fixed_used >> i & 1) && (c.fixed_used | js_fixed_rules[i].uses) != c.fixed_used)
                    c.fixed_used |= js_fixed_rules[i].uses, changed = 1;
        }
        for (int i = 0; i < FX_COUNT; i++)
            if (c.fixed_used >> i & 1)
                js_putf(&c, &outb, "%s ::= ", js_fixed_rules[i].name), js_put(&c, &outb, js_fixed_rules[i].body),
                    js_put(&c, &outb, "\n");
    }
    for (size_t i = 0; i < c.n_rules; i++) js_buf_free(&c.rules[i].body);
    free(c.rules);
    js_buf_free(&body);
    json_decref(root);
    if (c.status != BC_STATUS_OK) {
        js_buf_free(&outb);
        return c.status;
    }
    *gbnf = outb.p;
    return BC_STATUS_OK;
}

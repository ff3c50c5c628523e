/*
 * json_schema_gbnf.c - the GBNF text the JSON Schema converter writes:
 * buffers with the output's limits, errors that name a JSON pointer, named
 * rules and the fixed ones (ws, value, string, date, ...) written once at
 * the end when referenced, literals of JSON text.
 *
 *   limits, buffers and errors     the output is capped, every error names a JSON pointer
 *   rules                          named rules, made as the schema is walked; fixed ones on demand
 *   literals                       GBNF literals and classes for JSON text; repetitions
 */
#include "grammar/json_schema_gbnf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Limits, buffers and errors                                               */
/* ======================================================================== */

/* The first error wins; it ends with the path of the schema where it was found. */
void bc__js_fail(js_conv *c, const char *fmt, ...) {
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

void bc__js_fail_memory(js_conv *c) {
    if (c->status != BC_STATUS_OK) return;
    c->status = BC_STATUS_ERROR_MEMORY;
    if (c->err != NULL && c->err_size > 0) snprintf(c->err, c->err_size, "out of memory writing the grammar");
}

/* Counts n more elements of the compiled grammar against the limit. */
void bc__js_elements(js_conv *c, size_t n) {
    c->elements += n;
    if (c->elements > JS_MAX_ELEMENTS)
        bc__js_fail(c,
                    "the grammar passes the limit of %d elements (its text, classes and repeated copies, as estimated)",
                    JS_MAX_ELEMENTS);
}

void bc__js_putn(js_conv *c, js_buf *b, const char *s, size_t n) {
    if (c->status != BC_STATUS_OK) return;
    if (n > JS_MAX_OUTPUT - c->total) {
        bc__js_fail(c, "the grammar passes the limit of %d bytes", JS_MAX_OUTPUT);
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            bc__js_fail_memory(c);
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    c->total += n;
}

void bc__js_put(js_conv *c, js_buf *b, const char *s) { bc__js_putn(c, b, s, strlen(s)); }

void bc__js_putf(js_conv *c, js_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof tmp) {
        bc__js_fail(c, "internal: formatted piece too long");
        return;
    }
    bc__js_putn(c, b, tmp, (size_t)k);
}

/* Appends expression e, a space before it unless b ends a word already. */
void bc__js_put_expr(js_conv *c, js_buf *b, const js_buf *e) {
    if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') bc__js_put(c, b, " ");
    bc__js_putn(c, b, e->p, e->n);
}

void bc__js_buf_free(js_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Appends one JSON pointer segment (~ and / escaped); returns the old length to restore. */
size_t bc__js_path_push(js_conv *c, const char *seg) {
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

size_t bc__js_path_push_index(js_conv *c, const char *seg, size_t i) {
    char num[32];
    snprintf(num, sizeof num, "%zu", i);
    size_t old = bc__js_path_push(c, seg);
    bc__js_path_push(c, num);
    return old;
}

void bc__js_path_pop(js_conv *c, size_t old) {
    c->path_len = old;
    c->path[old] = '\0';
}

/* ======================================================================== */
/* Rules                                                                    */
/* ======================================================================== */

/* A fixed rule (FX_ in json_schema_gbnf.h): written once at the end when
 * referenced, with the fixed rules its body references. */
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
void bc__js_use(js_conv *c, js_buf *b, int i) {
    c->fixed_used |= 1u << i;
    if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') bc__js_put(c, b, " ");
    bc__js_put(c, b, js_fixed_rules[i].name);
}

/* A new rule named after hint (letters and digits kept, the rest '-'),
 * made unique by its index; returns its index, or -1. */
long bc__js_rule_new(js_conv *c, const char *hint) {
    if (c->status != BC_STATUS_OK) return -1;
    if (c->n_rules == c->cap_rules) {
        size_t cap = c->cap_rules ? c->cap_rules * 2 : 32;
        js_rule *r = realloc(c->rules, cap * sizeof *r);
        if (r == NULL) {
            bc__js_fail_memory(c);
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
void bc__js_rule_set(js_conv *c, long i, js_buf *body, js_buf *out) {
    if (c->status != BC_STATUS_OK || i < 0) {
        bc__js_buf_free(body);
        return;
    }
    bc__js_elements(c, body->n); /* a rule's text, counted once whatever was copied into it */
    c->rules[i].body = *body;
    memset(body, 0, sizeof *body);
    if (out != NULL) {
        if (out->n > 0 && out->p[out->n - 1] != ' ' && out->p[out->n - 1] != '(') bc__js_put(c, out, " ");
        bc__js_put(c, out, c->rules[i].name);
    }
}

/* A rule with this body, named after hint; its name goes to out. */
void bc__js_rule_add(js_conv *c, const char *hint, js_buf *body, js_buf *out) {
    long i = bc__js_rule_new(c, hint);
    bc__js_rule_set(c, i, body, out);
}

/* The hint for a rule: the path's last segment (and the one before a number). */
const char *bc__js_hint(const js_conv *c) {
    const char *last = strrchr(c->path, '/');
    if (last == NULL) return "root";
    if (last[1] >= '0' && last[1] <= '9') {
        for (const char *p = last - 1; p >= c->path; p--)
            if (*p == '/') return p + 1;
    }
    return last[1] ? last + 1 : "root";
}

/* Appends the fixed rules referenced so far, with those they use, one per
 * line, in their order. */
void bc__js_put_fixed_rules(js_conv *c, js_buf *out) {
    /* Fixed rules pull in the ones they use. */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < FX_COUNT; i++)
            if ((c->fixed_used >> i & 1) && (c->fixed_used | js_fixed_rules[i].uses) != c->fixed_used)
                c->fixed_used |= js_fixed_rules[i].uses, changed = 1;
    }
    for (int i = 0; i < FX_COUNT; i++)
        if (c->fixed_used >> i & 1)
            bc__js_putf(c, out, "%s ::= ", js_fixed_rules[i].name), bc__js_put(c, out, js_fixed_rules[i].body),
                bc__js_put(c, out, "\n");
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
    bc__js_put(c, b, tmp);
}

/* The GBNF literal of a JSON string's text: its quotes and its escapes as
 * Python's json.dumps(ensure_ascii=False) writes them. */
void bc__js_put_string_literal(js_conv *c, js_buf *b, const char *s, size_t len) {
    if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') bc__js_put(c, b, " ");
    bc__js_put(c, b, "\"\\\"");
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
            bc__js_put(c, b, esc);
        else if (ch < 0x20)
            bc__js_putf(c, b, "\\\\u%04x", ch);
        else
            js_put_lit_byte(c, b, ch);
    }
    bc__js_put(c, b, "\\\"\"");
}

/* A literal of plain text (no JSON escaping). */
void bc__js_put_literal(js_conv *c, js_buf *b, const char *s) {
    if (b->n > 0 && b->p[b->n - 1] != ' ' && b->p[b->n - 1] != '(') bc__js_put(c, b, " ");
    bc__js_put(c, b, "\"");
    for (; *s; s++) js_put_lit_byte(c, b, (unsigned char)*s);
    bc__js_put(c, b, "\"");
}

/* One code point inside a GBNF [class]: letters and digits as they are,
 * other ASCII as \xHH, the rest as its UTF-8 bytes. */
void bc__js_put_class_cp(js_conv *c, js_buf *b, uint32_t cp) {
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
    bc__js_put(c, b, tmp);
}

/* Decodes one UTF-8 code point of s[*i..len) (jansson gives valid UTF-8). */
uint32_t bc__js_utf8_next(const char *s, size_t len, size_t *i) {
    unsigned char b0 = (unsigned char)s[*i];
    int n = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? b0 : n == 2 ? b0 & 0x1Fu : n == 3 ? b0 & 0x0Fu : b0 & 0x07u;
    size_t k = 1;
    for (; k < (size_t)n && *i + k < len; k++) cp = (cp << 6) | ((unsigned char)s[*i + k] & 0x3Fu);
    *i += k;
    return cp;
}

/* Appends a postfix repetition {lo,hi} (hi < 0: unbounded) of the item just
 * written, which compiles to item_elements elements per copy. */
void bc__js_put_repeat(js_conv *c, js_buf *b, long lo, long hi, size_t item_elements) {
    /* As the engine expands it: lo copies, then a rule of two alternatives
     * (the item and a reference, or nothing) per optional copy. */
    bc__js_elements(c, item_elements * (size_t)lo + (item_elements + 3) * (size_t)(hi < 0 ? 1 : hi - lo));
    if (lo == 0 && hi < 0)
        bc__js_put(c, b, "*");
    else if (lo == 1 && hi < 0)
        bc__js_put(c, b, "+");
    else if (lo == 0 && hi == 1)
        bc__js_put(c, b, "?");
    else if (hi < 0)
        bc__js_putf(c, b, "{%ld,}", lo);
    else if (lo == hi)
        bc__js_putf(c, b, "{%ld}", lo);
    else
        bc__js_putf(c, b, "{%ld,%ld}", lo, hi);
}

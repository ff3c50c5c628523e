/*
 * gbnf.c - GBNF text to a compiled grammar (see grammar.h for its shape).
 *
 * The notation is llama.cpp's (grammars/README.md there):
 *
 *   root   ::= object              # a rule; `root` is where matching starts
 *   object ::= "{" ws ( pair ( "," ws pair )* )? "}"
 *   pair   ::= [a-z]+ ":" [^\n]{1,20} | "\u00e9" .
 *
 * Literals and classes take the escapes \n \r \t \\ \" \[ \] \xHH \uHHHH
 * \UHHHHHHHH; a class may be negated ([^...]) and holds characters and
 * ranges; `.` is any character. A rule ends at the end of its line unless
 * a group is open or the line ends (or the next begins) with `|`.
 *
 * Compiling:
 *   - literals become one BYTES element per UTF-8 byte;
 *   - classes become a rule of UTF-8 byte sequences: the code points
 *     (negation taken over U+0000..U+10FFFF less the surrogates) are split
 *     into ranges whose encodings vary byte by byte over whole ranges, each
 *     such range a run of BYTES elements;
 *   - groups become rules; x* is R ::= x R | "", x+ is x R, x? is
 *     R ::= x | "", x{m,n} is m copies of x and then n - m nested optionals.
 * Then every rule must be defined, `root` must exist, no rule may reach
 * itself without consuming a byte (left recursion: the matcher would expand
 * it forever), and root must match some finite text.
 */
#include "grammar/gbnf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Rules while parsing                                                      */
/* ------------------------------------------------------------------------ */

typedef struct seq {
    bc__gelem *e;
    int n, cap;
} seq;

typedef struct prule {
    char *name; /* the written name, or "<what> at L:C" for a generated rule */
    seq *alts;
    int n_alts, cap_alts;
    bool defined, generated;
    int line, col; /* where defined, or first used */
} prule;

typedef struct parser {
    const char *src, *p, *end;
    prule *rules;
    int n_rules, cap_rules;
    uint64_t (*sets)[4];
    int n_sets, cap_sets;
    long n_elems; /* elements in every alternative so far (the size limit) */
    int nesting;
    bc__err *err;
} parser;

static int seq_push(seq *s, uint8_t kind, int32_t arg) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        bc__gelem *e = realloc(s->e, (size_t)cap * sizeof *e);
        if (e == NULL) return -1;
        s->e = e;
        s->cap = cap;
    }
    s->e[s->n++] = (bc__gelem){kind, arg};
    return 0;
}

static int seq_append(seq *s, const seq *t) {
    for (int i = 0; i < t->n; i++)
        if (seq_push(s, t->e[i].kind, t->e[i].arg) != 0) return -1;
    return 0;
}

static void where(const parser *ps, const char *at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *q = ps->src; q < at && q < ps->end; q++) {
        if (*q == '\n') {
            ++*line;
            *col = 1;
        } else if (((unsigned char)*q & 0xC0) != 0x80) {
            ++*col;
        }
    }
}

static int fail_at(parser *ps, const char *at, const char *fmt, const char *arg) {
    int line, col;
    where(ps, at, &line, &col);
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    return bc__errorf(ps->err, BC_STATUS_ERROR_ARGUMENT, "grammar line %d, column %d: %s", line, col, msg);
}

static int oom(parser *ps) { return bc__errorf(ps->err, BC_STATUS_ERROR_MEMORY, "grammar: out of memory"); }

/* The id of rule `name` (n bytes), adding it undefined when new. */
static int rule_id(parser *ps, const char *name, size_t n, const char *at) {
    for (int i = 0; i < ps->n_rules; i++)
        if (!ps->rules[i].generated && strlen(ps->rules[i].name) == n && memcmp(ps->rules[i].name, name, n) == 0)
            return i;
    if (ps->n_rules == ps->cap_rules) {
        int cap = ps->cap_rules ? 2 * ps->cap_rules : 32;
        prule *r = realloc(ps->rules, (size_t)cap * sizeof *r);
        if (r == NULL) return oom(ps);
        ps->rules = r;
        ps->cap_rules = cap;
    }
    prule *r = &ps->rules[ps->n_rules];
    memset(r, 0, sizeof *r);
    r->name = bc__strndup(name, n);
    if (r->name == NULL) return oom(ps);
    where(ps, at, &r->line, &r->col);
    return ps->n_rules++;
}

/* A new generated rule, named after what it was made for and where. */
static int new_rule(parser *ps, const char *what, const char *at) {
    int line, col;
    where(ps, at, &line, &col);
    char name[96];
    snprintf(name, sizeof name, "<%s at %d:%d>", what, line, col);
    int id = rule_id(ps, name, strlen(name), at);
    if (id < 0) return -1;
    ps->rules[id].generated = true;
    ps->rules[id].defined = true;
    return id;
}

static int add_alt(parser *ps, int rule, seq *s) {
    prule *r = &ps->rules[rule];
    if (r->n_alts == r->cap_alts) {
        int cap = r->cap_alts ? 2 * r->cap_alts : 4;
        seq *a = realloc(r->alts, (size_t)cap * sizeof *a);
        if (a == NULL) {
            free(s->e);
            return oom(ps);
        }
        r->alts = a;
        r->cap_alts = cap;
    }
    ps->n_elems += s->n + 1;
    r->alts[r->n_alts++] = *s;
    *s = (seq){0};
    if (ps->n_elems > BC__G_MAX_ELEMS)
        return bc__errorf(ps->err, BC_STATUS_ERROR_ARGUMENT,
                          "grammar: more than %d elements after expanding repetitions and classes", BC__G_MAX_ELEMS);
    return 0;
}

static int byteset_id(parser *ps, const uint64_t set[4]) {
    for (int i = ps->n_sets - 1; i >= 0 && i >= ps->n_sets - 64; i--)
        if (memcmp(ps->sets[i], set, 32) == 0) return i;
    if (ps->n_sets == ps->cap_sets) {
        int cap = ps->cap_sets ? 2 * ps->cap_sets : 64;
        uint64_t(*s)[4] = realloc(ps->sets, (size_t)cap * sizeof *s);
        if (s == NULL) return oom(ps);
        ps->sets = s;
        ps->cap_sets = cap;
    }
    memcpy(ps->sets[ps->n_sets], set, 32);
    return ps->n_sets++;
}

static int push_byte_range(parser *ps, seq *s, unsigned lo, unsigned hi) {
    uint64_t set[4] = {0};
    for (unsigned b = lo; b <= hi; b++) set[b >> 6] |= 1ull << (b & 63);
    int id = byteset_id(ps, set);
    if (id < 0 || seq_push(s, BC__G_BYTES, id) != 0) return id < 0 ? -1 : oom(ps);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Code points to UTF-8 byte sequences                                      */
/* ------------------------------------------------------------------------ */

typedef struct cp_range {
    uint32_t lo, hi;
} cp_range;

static int utf8_encode(uint32_t c, uint8_t out[4]) {
    if (c < 0x80) {
        out[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (uint8_t)(0xC0 | c >> 6);
        out[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (uint8_t)(0xE0 | c >> 12);
        out[1] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | c >> 18);
    out[1] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Adds to rule the byte sequences of the code points [lo, hi], all of one
 * encoded length: while the range is not aligned on the continuation bytes
 * it is split, until every byte position runs over a whole range. */
static int utf8_sequences(parser *ps, int rule, uint32_t lo, uint32_t hi) {
    uint8_t a[4], b[4];
    int n = utf8_encode(lo, a);
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) == (hi & ~m)) continue;
        if ((lo & m) != 0) {
            if (utf8_sequences(ps, rule, lo, lo | m) != 0) return -1;
            return utf8_sequences(ps, rule, (lo | m) + 1, hi);
        }
        if ((hi & m) != m) {
            if (utf8_sequences(ps, rule, lo, (hi & ~m) - 1) != 0) return -1;
            return utf8_sequences(ps, rule, hi & ~m, hi);
        }
    }
    utf8_encode(hi, b);
    seq s = {0};
    for (int i = 0; i < n; i++)
        if (push_byte_range(ps, &s, a[i], b[i]) != 0) {
            free(s.e);
            return -1;
        }
    return add_alt(ps, rule, &s);
}

/* A rule matching one character of the sorted, disjoint ranges (without
 * surrogates). Single-byte characters share one alternative. */
static int class_rule(parser *ps, const cp_range *r, int n, const char *at) {
    int rule = new_rule(ps, "character class", at);
    if (rule < 0) return -1;
    uint64_t ascii[4] = {0};
    bool any_ascii = false;
    for (int i = 0; i < n; i++)
        for (uint32_t c = r[i].lo; c <= r[i].hi && c < 0x80; c++) {
            ascii[c >> 6] |= 1ull << (c & 63);
            any_ascii = true;
        }
    if (any_ascii) {
        seq s = {0};
        int id = byteset_id(ps, ascii);
        if (id < 0 || seq_push(&s, BC__G_BYTES, id) != 0 || add_alt(ps, rule, &s) != 0) {
            free(s.e);
            return id < 0 ? -1 : oom(ps);
        }
    }
    static const uint32_t bounds[][2] = {{0x80, 0x7FF}, {0x800, 0xFFFF}, {0x10000, 0x10FFFF}};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            uint32_t lo = r[i].lo > bounds[k][0] ? r[i].lo : bounds[k][0];
            uint32_t hi = r[i].hi < bounds[k][1] ? r[i].hi : bounds[k][1];
            if (lo <= hi && utf8_sequences(ps, rule, lo, hi) != 0) return -1;
        }
    return rule;
}

/* Appends a class to item: one BYTES element when every character is a
 * single byte (no rule, so no frame to enter: parses inside `[ \t]*` stay
 * a frame shallower), else a reference to its rule. */
static int class_item(parser *ps, const cp_range *r, int n, const char *at, seq *item) {
    if (r[n - 1].hi < 0x80) {
        uint64_t set[4] = {0};
        for (int i = 0; i < n; i++)
            for (uint32_t c = r[i].lo; c <= r[i].hi; c++) set[c >> 6] |= 1ull << (c & 63);
        int id = byteset_id(ps, set);
        if (id < 0 || seq_push(item, BC__G_BYTES, id) != 0) return id < 0 ? -1 : oom(ps);
        return 0;
    }
    int id = class_rule(ps, r, n, at);
    if (id < 0 || seq_push(item, BC__G_REF, id) != 0) return id < 0 ? -1 : oom(ps);
    return 0;
}

/* Sorts and merges ranges, takes the complement when negated, and removes
 * the surrogates. Returns the new count (into out, room for n + 2). */
static int cmp_range(const void *a, const void *b) {
    const cp_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static int normalize_ranges(cp_range *r, int n, bool negate, cp_range *out) {
    qsort(r, (size_t)n, sizeof *r, cmp_range);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m > 0 && r[i].lo <= out[m - 1].hi + 1) {
            if (r[i].hi > out[m - 1].hi) out[m - 1].hi = r[i].hi;
        } else {
            out[m++] = r[i];
        }
    }
    if (negate) {
        cp_range *in = malloc((size_t)(m > 0 ? m : 1) * sizeof *in);
        if (in == NULL) return -1;
        memcpy(in, out, (size_t)m * sizeof *in);
        int k = 0;
        uint32_t next = 0;
        for (int i = 0; i < m; i++) {
            if (in[i].lo > next) out[k++] = (cp_range){next, in[i].lo - 1};
            next = in[i].hi + 1;
        }
        if (next <= 0x10FFFF) out[k++] = (cp_range){next, 0x10FFFF};
        m = k;
        free(in);
    }
    /* Cut out U+D800..U+DFFF (not encodable in UTF-8). */
    int k = 0;
    cp_range *tmp = malloc((size_t)(2 * m + 1) * sizeof *tmp);
    if (tmp == NULL) return -1;
    for (int i = 0; i < m; i++) {
        if (out[i].hi < 0xD800 || out[i].lo > 0xDFFF) {
            tmp[k++] = out[i];
            continue;
        }
        if (out[i].lo < 0xD800) tmp[k++] = (cp_range){out[i].lo, 0xD7FF};
        if (out[i].hi > 0xDFFF) tmp[k++] = (cp_range){0xE000, out[i].hi};
    }
    memcpy(out, tmp, (size_t)k * sizeof *out);
    free(tmp);
    return k;
}

/* ------------------------------------------------------------------------ */
/* The parser                                                               */
/* ------------------------------------------------------------------------ */

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Skips spaces, tabs and comments; newlines too when newlines is set. */
static void skip_space(parser *ps, bool newlines) {
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
            ps->p++;
        } else if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n') ps->p++;
        } else {
            break;
        }
    }
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads one character of a literal or class (escapes decoded, UTF-8 read
 * whole) into *c. */
static int read_char(parser *ps, uint32_t *c) {
    const char *at = ps->p;
    if (ps->p >= ps->end) return fail_at(ps, at, "unexpected end of the grammar%s", "");
    unsigned char b = (unsigned char)*ps->p;
    if (b == '\\') {
        if (++ps->p >= ps->end) return fail_at(ps, at, "unexpected end of the grammar after '\\'%s", "");
        char e = *ps->p++;
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits > 0) {
            uint32_t v = 0;
            for (int i = 0; i < digits; i++) {
                int h = ps->p < ps->end ? hex_value(*ps->p) : -1;
                if (h < 0) return fail_at(ps, at, "escape \\%c needs hexadecimal digits", (char[]){e, 0});
                v = v * 16 + (uint32_t)h;
                ps->p++;
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
                return fail_at(ps, at, "escape names no Unicode character%s", "");
            *c = v;
            return 0;
        }
        switch (e) {
        case 'n': *c = '\n'; return 0;
        case 'r': *c = '\r'; return 0;
        case 't': *c = '\t'; return 0;
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^': *c = (uint32_t)e; return 0;
        default: return fail_at(ps, at, "unknown escape \\%s", (char[]){e, 0});
        }
    }
    int n = b < 0x80 ? 1 : b >= 0xC2 && b < 0xE0 ? 2 : b >= 0xE0 && b < 0xF0 ? 3 : b >= 0xF0 && b < 0xF5 ? 4 : 0;
    if (n == 0 || ps->end - ps->p < n) return fail_at(ps, at, "malformed UTF-8%s", "");
    uint32_t v = n == 1 ? b : n == 2 ? b & 0x1F : n == 3 ? b & 0x0F : b & 0x07;
    for (int i = 1; i < n; i++) {
        unsigned char t = (unsigned char)ps->p[i];
        if ((t & 0xC0) != 0x80) return fail_at(ps, at, "malformed UTF-8%s", "");
        v = v << 6 | (t & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return fail_at(ps, at, "malformed UTF-8%s", "");
    ps->p += n;
    *c = v;
    return 0;
}

static int parse_alternatives(parser *ps, int rule, bool nested);

/* A class after its '[': a rule reference in item. */
static int parse_class(parser *ps, seq *item, const char *at) {
    bool negate = ps->p < ps->end && *ps->p == '^';
    if (negate) ps->p++;
    cp_range *r = NULL;
    int n = 0, cap = 0, rc = -1;
    while (ps->p < ps->end && *ps->p != ']') {
        uint32_t lo, hi;
        if (read_char(ps, &lo) != 0) goto done;
        hi = lo;
        if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
            ps->p++;
            if (read_char(ps, &hi) != 0) goto done;
            if (hi < lo) {
                fail_at(ps, at, "character class range runs backwards%s", "");
                goto done;
            }
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            cp_range *t = realloc(r, (size_t)(cap + 2) * sizeof *t);
            if (t == NULL) {
                oom(ps);
                goto done;
            }
            r = t;
        }
        r[n++] = (cp_range){lo, hi};
    }
    if (ps->p >= ps->end) {
        fail_at(ps, at, "character class is not closed with ']'%s", "");
        goto done;
    }
    ps->p++;
    {
        cp_range *norm = malloc((size_t)(n + 2) * sizeof *norm);
        if (norm == NULL) {
            oom(ps);
            goto done;
        }
        int m = normalize_ranges(r ? r : norm, n, negate, norm);
        if (m < 0) {
            free(norm);
            oom(ps);
            goto done;
        }
        if (m == 0) {
            free(norm);
            fail_at(ps, at, "character class matches no character%s", "");
            goto done;
        }
        int id = class_item(ps, norm, m, at, item);
        free(norm);
        if (id < 0) goto done;
    }
    rc = 0;
done:
    free(r);
    return rc;
}

/* x* (min 0, max -1), x+ (1, -1), x? (0, 1), x{m,n}: replaces item. */
static int repeat(parser *ps, seq *item, long min, long max, const char *at) {
    seq x = *item, out = {0};
    *item = (seq){0};
    int rc = -1;
    if ((long)x.n * (max < 0 ? min + 1 : max) > BC__G_MAX_ELEMS) {
        bc__errorf(ps->err, BC_STATUS_ERROR_ARGUMENT, "grammar: more than %d elements after expanding repetitions",
                   BC__G_MAX_ELEMS);
        goto done;
    }
    for (long i = 0; i < min; i++)
        if (seq_append(&out, &x) != 0) goto nomem;
    if (max < 0) { /* R ::= x R | "" */
        int r = new_rule(ps, "repetition", at);
        if (r < 0) goto done;
        seq a = {0};
        if (seq_append(&a, &x) != 0 || seq_push(&a, BC__G_REF, r) != 0) {
            free(a.e);
            goto nomem;
        }
        seq empty = {0};
        if (add_alt(ps, r, &a) != 0 || add_alt(ps, r, &empty) != 0 || seq_push(&out, BC__G_REF, r) != 0) goto done;
    } else if (max > min) { /* O_1 ::= x | "", O_k ::= x O_{k-1} | "" */
        int prev = -1;
        for (long k = 1; k <= max - min; k++) {
            int r = new_rule(ps, "repetition", at);
            if (r < 0) goto done;
            seq a = {0}, empty = {0};
            if (seq_append(&a, &x) != 0 || (prev >= 0 && seq_push(&a, BC__G_REF, prev) != 0)) {
                free(a.e);
                goto nomem;
            }
            if (add_alt(ps, r, &a) != 0 || add_alt(ps, r, &empty) != 0) goto done;
            prev = r;
        }
        if (seq_push(&out, BC__G_REF, prev) != 0) goto nomem;
    }
    *item = out;
    out = (seq){0};
    rc = 0;
    goto done;
nomem:
    oom(ps);
done:
    free(x.e);
    free(out.e);
    return rc;
}

static int parse_count(parser *ps, long *v) {
    const char *at = ps->p;
    long x = 0;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return fail_at(ps, at, "expected a number%s", "");
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        x = x * 10 + (*ps->p++ - '0');
        if (x > BC__G_MAX_REPEAT) return fail_at(ps, at, "repetition count above 1000%s", "");
    }
    *v = x;
    return 0;
}

/* One alternative: items until '|', ')' or the end of the rule. */
static int parse_sequence(parser *ps, seq *out, bool nested) {
    for (;;) {
        skip_space(ps, nested);
        if (ps->p >= ps->end) return 0;
        const char *at = ps->p;
        char c = *ps->p;
        seq item = {0};
        if (c == '"') {
            ps->p++;
            while (ps->p < ps->end && *ps->p != '"') {
                uint32_t cp;
                uint8_t u[4];
                if (read_char(ps, &cp) != 0) {
                    free(item.e);
                    return -1;
                }
                int n = utf8_encode(cp, u);
                for (int i = 0; i < n; i++)
                    if (push_byte_range(ps, &item, u[i], u[i]) != 0) {
                        free(item.e);
                        return -1;
                    }
            }
            if (ps->p >= ps->end) {
                free(item.e);
                return fail_at(ps, at, "string is not closed with '\"'%s", "");
            }
            ps->p++;
        } else if (c == '[') {
            ps->p++;
            if (parse_class(ps, &item, at) != 0) {
                free(item.e);
                return -1;
            }
        } else if (c == '.') {
            ps->p++;
            cp_range all = {0, 0x10FFFF}, norm[3];
            int m = normalize_ranges(&all, 1, false, norm);
            if (m < 0 || class_item(ps, norm, m, at, &item) != 0) {
                free(item.e);
                return m < 0 ? oom(ps) : -1;
            }
        } else if (c == '(') {
            ps->p++;
            if (++ps->nesting > BC__G_MAX_NESTING) return fail_at(ps, at, "groups nested more than 64 deep%s", "");
            int id = new_rule(ps, "group", at);
            if (id < 0 || parse_alternatives(ps, id, true) != 0) return -1;
            skip_space(ps, true);
            if (ps->p >= ps->end || *ps->p != ')') return fail_at(ps, at, "group is not closed with ')'%s", "");
            ps->p++;
            ps->nesting--;
            if (seq_push(&item, BC__G_REF, id) != 0) return oom(ps);
        } else if (is_name_char(c)) {
            const char *name = ps->p;
            while (ps->p < ps->end && is_name_char(*ps->p)) ps->p++;
            const char *q = ps->p;
            while (q < ps->end && (*q == ' ' || *q == '\t')) q++;
            if (q + 2 < ps->end && q[0] == ':' && q[1] == ':' && q[2] == '=') {
                ps->p = name; /* the next rule's definition: this alternative ends */
                return 0;
            }
            int id = rule_id(ps, name, (size_t)(ps->p - name), name);
            if (id < 0 || seq_push(&item, BC__G_REF, id) != 0) return id < 0 ? -1 : oom(ps);
        } else if (c == '|' || c == ')' || c == '\n') {
            return 0;
        } else if (c == '<') {
            return fail_at(ps, at, "token references (<...>) are not supported%s", "");
        } else {
            return fail_at(ps, at, "unexpected character '%s'", (char[]){c, 0});
        }
        /* Postfix repetition. */
        skip_space(ps, false);
        while (ps->p < ps->end && (*ps->p == '*' || *ps->p == '+' || *ps->p == '?' || *ps->p == '{')) {
            const char *op = ps->p++;
            long min = 0, max = -1;
            if (*op == '+') min = 1;
            if (*op == '?') max = 1;
            if (*op == '{') {
                skip_space(ps, false);
                if (ps->p < ps->end && *ps->p != ',' && parse_count(ps, &min) != 0) goto bad;
                max = min;
                skip_space(ps, false);
                if (ps->p < ps->end && *ps->p == ',') {
                    ps->p++;
                    skip_space(ps, false);
                    max = -1;
                    if (ps->p < ps->end && *ps->p != '}' && parse_count(ps, &max) != 0) goto bad;
                    skip_space(ps, false);
                }
                if (ps->p >= ps->end || *ps->p != '}') {
                    fail_at(ps, op, "repetition is not closed with '}'%s", "");
                    goto bad;
                }
                ps->p++;
                if (max >= 0 && max < min) {
                    fail_at(ps, op, "repetition {m,n} with n < m%s", "");
                    goto bad;
                }
            }
            if (repeat(ps, &item, min, max, op) != 0) goto bad;
            skip_space(ps, false);
        }
        if (seq_append(out, &item) != 0) {
            free(item.e);
            return oom(ps);
        }
        free(item.e);
        continue;
    bad:
        free(item.e);
        return -1;
    }
}

/* Alternatives of rule: sequences separated by '|'. */
static int parse_alternatives(parser *ps, int rule, bool nested) {
    for (;;) {
        seq s = {0};
        if (parse_sequence(ps, &s, nested) != 0) {
            free(s.e);
            return -1;
        }
        if (add_alt(ps, rule, &s) != 0) return -1;
        skip_space(ps, nested);
        /* A line that starts with '|' continues the rule. */
        const char *q = ps->p;
        if (!nested && q < ps->end && *q == '\n') {
            const char *save = ps->p;
            ps->p++;
            skip_space(ps, true);
            if (ps->p < ps->end && *ps->p == '|')
                q = ps->p;
            else
                ps->p = save;
        }
        if (ps->p >= ps->end || *ps->p != '|') return 0;
        ps->p++;
        skip_space(ps, true);
    }
}

static int parse_grammar(parser *ps) {
    for (;;) {
        skip_space(ps, true);
        if (ps->p >= ps->end) return 0;
        const char *at = ps->p;
        if (!is_name_char(*ps->p)) return fail_at(ps, at, "expected a rule name, found '%s'", (char[]){*ps->p, 0});
        while (ps->p < ps->end && is_name_char(*ps->p)) ps->p++;
        size_t n = (size_t)(ps->p - at);
        skip_space(ps, false);
        if (ps->end - ps->p < 3 || memcmp(ps->p, "::=", 3) != 0)
            return fail_at(ps, ps->p, "expected '::=' after the rule name%s", "");
        ps->p += 3;
        int id = rule_id(ps, at, n, at);
        if (id < 0) return -1;
        if (ps->rules[id].defined) {
            char name[80];
            snprintf(name, sizeof name, "%.*s", (int)(n < 64 ? n : 64), at);
            return fail_at(ps, at, "rule '%s' is defined twice", name);
        }
        ps->rules[id].defined = true;
        where(ps, at, &ps->rules[id].line, &ps->rules[id].col);
        skip_space(ps, true);
        if (parse_alternatives(ps, id, false) != 0) return -1;
        skip_space(ps, false);
        if (ps->p < ps->end && *ps->p != '\n' && !is_name_char(*ps->p))
            return fail_at(ps, ps->p, "unexpected '%s' after the rule", (char[]){*ps->p, 0});
    }
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

/* Nullable rules (match ""), and productive ones (match some finite text). */
static void fixpoint(const parser *ps, bool *nullable, bool *productive) {
    bool changed = true;
    while (changed) {
        changed = false;
        for (int r = 0; r < ps->n_rules; r++) {
            for (int a = 0; a < ps->rules[r].n_alts; a++) {
                const seq *s = &ps->rules[r].alts[a];
                bool all_null = true, all_prod = true;
                for (int i = 0; i < s->n; i++) {
                    bool is_ref = s->e[i].kind == BC__G_REF;
                    if (!is_ref || !nullable[s->e[i].arg]) all_null = false;
                    if (is_ref && !productive[s->e[i].arg]) all_prod = false;
                }
                if (all_null && !nullable[r]) nullable[r] = changed = true;
                if (all_prod && !productive[r]) productive[r] = changed = true;
            }
        }
    }
}

/* Depth-first search for a rule that reaches itself through refs each
 * preceded only by nullable elements. state: 0 new, 1 on the path, 2 done. */
static int left_recursion(parser *ps, const bool *nullable, int r, uint8_t *state, int *path, int depth) {
    state[r] = 1;
    path[depth] = r;
    for (int a = 0; a < ps->rules[r].n_alts; a++) {
        const seq *s = &ps->rules[r].alts[a];
        for (int i = 0; i < s->n && s->e[i].kind == BC__G_REF; i++) {
            int t = s->e[i].arg;
            if (state[t] == 1) {
                char chain[400] = "";
                size_t len = 0;
                int from = depth;
                while (from > 0 && path[from] != t) from--;
                for (int k = from; k <= depth && len + 80 < sizeof chain; k++)
                    len += (size_t)snprintf(chain + len, sizeof chain - len, "%s -> ", ps->rules[path[k]].name);
                snprintf(chain + len, sizeof chain - len, "%s", ps->rules[t].name);
                return bc__errorf(ps->err, BC_STATUS_ERROR_ARGUMENT,
                                  "grammar: left recursion (a rule reaches itself before matching a byte): %s", chain);
            }
            if (state[t] == 0 && left_recursion(ps, nullable, t, state, path, depth + 1) != 0) return -1;
            if (!nullable[t]) break;
        }
    }
    state[r] = 2;
    return 0;
}

static int check(parser *ps, int root) {
    for (int r = 0; r < ps->n_rules; r++)
        if (!ps->rules[r].defined)
            return bc__errorf(ps->err, BC_STATUS_ERROR_ARGUMENT, "grammar line %d, column %d: rule '%s' is not defined",
                              ps->rules[r].line, ps->rules[r].col, ps->rules[r].name);
    bool *nullable = calloc((size_t)ps->n_rules, 2 * sizeof(bool));
    uint8_t *state = calloc((size_t)ps->n_rules, 1);
    int *path = malloc((size_t)ps->n_rules * sizeof *path);
    int rc = -1;
    if (nullable == NULL || state == NULL || path == NULL) {
        oom(ps);
        goto done;
    }
    bool *productive = nullable + ps->n_rules;
    fixpoint(ps, nullable, productive);
    if (!productive[root]) {
        bc__errorf(ps->err, BC_STATUS_ERROR_ARGUMENT,
                   "grammar: 'root' matches no text (every alternative needs a rule that never ends)");
        goto done;
    }
    for (int r = 0; r < ps->n_rules; r++)
        if (state[r] == 0 && left_recursion(ps, nullable, r, state, path, 0) != 0) goto done;
    rc = 0;
done:
    free(nullable);
    free(state);
    free(path);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Interface                                                                */
/* ------------------------------------------------------------------------ */

static void parser_free(parser *ps) {
    for (int r = 0; r < ps->n_rules; r++) {
        for (int a = 0; a < ps->rules[r].n_alts; a++) free(ps->rules[r].alts[a].e);
        free(ps->rules[r].alts);
        free(ps->rules[r].name);
    }
    free(ps->rules);
    free(ps->sets);
}

int bc__gbnf_compile(bc_grammar *g, const char *text, size_t len, bc__err *err) {
    if (len > BC__G_MAX_TEXT)
        return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT, "grammar: %zu bytes of text, more than the limit of 1 MiB",
                          len);
    parser ps = {.src = text, .p = text, .end = text + len, .err = err};
    int rc = -1;
    if (parse_grammar(&ps) != 0) goto done;
    int root = -1;
    for (int r = 0; r < ps.n_rules; r++)
        if (!ps.rules[r].generated && strcmp(ps.rules[r].name, "root") == 0) root = r;
    if (root < 0 || !ps.rules[root].defined) {
        bc__errorf(err, BC_STATUS_ERROR_ARGUMENT, "grammar: no 'root' rule (matching starts at root ::= ...)");
        goto done;
    }
    if (check(&ps, root) != 0) goto done;

    /* Lay the alternatives out flat. */
    int n_alts = 0;
    for (int r = 0; r < ps.n_rules; r++) n_alts += ps.rules[r].n_alts;
    g->elems = malloc((size_t)ps.n_elems * sizeof *g->elems);
    g->alt_start = malloc((size_t)n_alts * sizeof *g->alt_start);
    g->rule_alts = malloc((size_t)(ps.n_rules + 1) * sizeof *g->rule_alts);
    if (g->elems == NULL || g->alt_start == NULL || g->rule_alts == NULL) {
        oom(&ps);
        goto done;
    }
    int n = 0, k = 0;
    for (int r = 0; r < ps.n_rules; r++) {
        g->rule_alts[r] = k;
        for (int a = 0; a < ps.rules[r].n_alts; a++) {
            g->alt_start[k++] = n;
            const seq *s = &ps.rules[r].alts[a];
            if (s->n > 0) memcpy(g->elems + n, s->e, (size_t)s->n * sizeof *s->e);
            n += s->n;
            g->elems[n++] = (bc__gelem){BC__G_END, 0};
        }
    }
    g->rule_alts[ps.n_rules] = k;
    g->n_elems = n;
    g->n_rules = ps.n_rules;
    g->root = root;
    g->bytesets = ps.sets;
    g->n_bytesets = ps.n_sets;
    ps.sets = NULL;
    rc = 0;
done:
    parser_free(&ps);
    return rc;
}

void bc__gbnf_free(bc_grammar *g) {
    free(g->elems);
    free(g->alt_start);
    free(g->rule_alts);
    free(g->bytesets);
}

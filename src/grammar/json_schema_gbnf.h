/*
 * json_schema_gbnf.h - what the files of the JSON Schema converter share
 * (json_schema.c walks the schema; json_schema_numbers.c,
 * json_schema_regex.c and json_schema_values.c write the grammar of bounded
 * numbers, patterns, and enum/const values): the converter's state, the
 * limits, and the writing of GBNF text (json_schema_gbnf.c): buffers, errors
 * that name a JSON pointer, named and fixed rules, literals. Private to
 * those files.
 */
#ifndef BC_JSON_SCHEMA_GBNF_H
#define BC_JSON_SCHEMA_GBNF_H

#include "base/base.h"

#include <jansson.h>
#include <stdint.h>

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

/* A trie over code points, node 0 the root: the declared property names
 * (for extra keys) and the texts of enum values. */
typedef struct js_trie {
    uint32_t cp;         /* the code point on the edge into this node */
    long child, sibling; /* first child and next sibling, -1 for none */
    int terminal;        /* a text (a declared name, a value) ends here */
} js_trie;

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

/* Errors: the first wins, and ends with the JSON pointer of the schema
 * being converted (" at /properties/x"). */
BC__HIDDEN void bc__js_fail(js_conv *c, const char *fmt, ...) BC__PRINTF(2, 3);
BC__HIDDEN void bc__js_fail_memory(js_conv *c);

/* Counts n more elements of the compiled grammar against the limit. */
BC__HIDDEN void bc__js_elements(js_conv *c, size_t n);

/* Appending to a buffer, the whole output counted against its limit. */
BC__HIDDEN void bc__js_putn(js_conv *c, js_buf *b, const char *s, size_t n);
BC__HIDDEN void bc__js_put(js_conv *c, js_buf *b, const char *s);
BC__HIDDEN void bc__js_putf(js_conv *c, js_buf *b, const char *fmt, ...) BC__PRINTF(3, 4);
/* Appends expression e, a space before it unless b ends a word already. */
BC__HIDDEN void bc__js_put_expr(js_conv *c, js_buf *b, const js_buf *e);
BC__HIDDEN void bc__js_buf_free(js_buf *b);

/* Appends one JSON pointer segment (~ and / escaped) to the path for
 * messages; returns the old length, for bc__js_path_pop. */
BC__HIDDEN size_t bc__js_path_push(js_conv *c, const char *seg);
/* Appends seg and the index i. */
BC__HIDDEN size_t bc__js_path_push_index(js_conv *c, const char *seg, size_t i);
BC__HIDDEN void bc__js_path_pop(js_conv *c, size_t old);

/* Appends the name of fixed rule i (with a leading space when b is not empty). */
BC__HIDDEN void bc__js_use(js_conv *c, js_buf *b, int i);
/* Appends the fixed rules referenced so far, with those they use, one
 * "name ::= body" line each, in their order. */
BC__HIDDEN void bc__js_put_fixed_rules(js_conv *c, js_buf *out);

/* A new rule named after hint (letters and digits kept, the rest '-'),
 * made unique by its index; returns its index, or -1. */
BC__HIDDEN long bc__js_rule_new(js_conv *c, const char *hint);
/* Gives the body (moved out of *body) to rule i and appends its name to out (when not NULL). */
BC__HIDDEN void bc__js_rule_set(js_conv *c, long i, js_buf *body, js_buf *out);
/* A rule with this body, named after hint; its name goes to out. */
BC__HIDDEN void bc__js_rule_add(js_conv *c, const char *hint, js_buf *body, js_buf *out);
/* The hint for a rule: the path's last segment (and the one before a number). */
BC__HIDDEN const char *bc__js_hint(const js_conv *c);

/* The GBNF literal of a JSON string's text: its quotes and its escapes as
 * Python's json.dumps(ensure_ascii=False) writes them. */
BC__HIDDEN void bc__js_put_string_literal(js_conv *c, js_buf *b, const char *s, size_t len);
/* A literal of plain text (no JSON escaping). */
BC__HIDDEN void bc__js_put_literal(js_conv *c, js_buf *b, const char *s);
/* One code point inside a GBNF [class]. */
BC__HIDDEN void bc__js_put_class_cp(js_conv *c, js_buf *b, uint32_t cp);
/* Decodes one UTF-8 code point of s[*i..len) (jansson gives valid UTF-8). */
BC__HIDDEN uint32_t bc__js_utf8_next(const char *s, size_t len, size_t *i);
/* Appends a postfix repetition {lo,hi} (hi < 0: unbounded) of the item just
 * written, which compiles to item_elements elements per copy. */
BC__HIDDEN void bc__js_put_repeat(js_conv *c, js_buf *b, long lo, long hi, size_t item_elements);

#endif /* BC_JSON_SCHEMA_GBNF_H */

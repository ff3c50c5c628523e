/*
 * json_schema_values.c - JSON values in the grammar: the type keyword, and
 * enum/const: scalars as a trie of their texts (values that share a prefix
 * are one parse until they part), arrays and objects as their tokens with
 * whitespace between.
 */
#include "grammar/json_schema_values.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The type keyword's names. */
static const struct {
    const char *name;
    int bit;
} js_types[] = {{"null", T_NULL},     {"boolean", T_BOOLEAN}, {"object", T_OBJECT}, {"array", T_ARRAY},
                {"number", T_NUMBER}, {"integer", T_INTEGER}, {"string", T_STRING}};

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
    bc__js_put_literal(c, b, tmp);
}

/* A JSON value as the texts that write it: its tokens with whitespace between. */
static void js_value_literal(js_conv *c, const json_t *v, js_buf *b) {
    if (c->status != BC_STATUS_OK) return;
    if (++c->depth > JS_MAX_DEPTH) {
        bc__js_fail(c, "a value nested deeper than %d", JS_MAX_DEPTH);
        c->depth--;
        return;
    }
    char tmp[40];
    switch (json_typeof(v)) {
    case JSON_NULL: bc__js_put_literal(c, b, "null"); break;
    case JSON_TRUE: bc__js_put_literal(c, b, "true"); break;
    case JSON_FALSE: bc__js_put_literal(c, b, "false"); break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        bc__js_put_literal(c, b, tmp);
        break;
    case JSON_REAL: js_put_real(c, b, json_real_value(v)); break;
    case JSON_STRING: bc__js_put_string_literal(c, b, json_string_value(v), json_string_length(v)); break;
    case JSON_ARRAY: {
        bc__js_put_literal(c, b, "[");
        bc__js_use(c, b, FX_WS);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0) bc__js_use(c, b, FX_WS), bc__js_put_literal(c, b, ","), bc__js_use(c, b, FX_WS);
            js_value_literal(c, json_array_get(v, i), b);
        }
        if (json_array_size(v) > 0) bc__js_use(c, b, FX_WS);
        bc__js_put_literal(c, b, "]");
        break;
    }
    case JSON_OBJECT: {
        bc__js_put_literal(c, b, "{");
        bc__js_use(c, b, FX_WS);
        const char *key;
        const json_t *item;
        size_t i = 0;
        json_object_foreach((json_t *)v, key, item) {
            if (i++ > 0) bc__js_use(c, b, FX_WS), bc__js_put_literal(c, b, ","), bc__js_use(c, b, FX_WS);
            bc__js_put_string_literal(c, b, key, strlen(key));
            bc__js_use(c, b, FX_WS), bc__js_put_literal(c, b, ":"), bc__js_use(c, b, FX_WS);
            js_value_literal(c, item, b);
        }
        if (i > 0) bc__js_use(c, b, FX_WS);
        bc__js_put_literal(c, b, "}");
        break;
    }
    }
    c->depth--;
}

/* The type keyword as a set of T_ bits (all of them when absent). */
int bc__js_type_mask(js_conv *c, const json_t *s) {
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
            size_t old = bc__js_path_push(c, "type");
            if (json_is_string(name))
                bc__js_fail(c, "unknown type '%s'", json_string_value(name));
            else
                bc__js_fail(c, "'type' must be a type name or an array of them");
            bc__js_path_pop(c, old);
            return 0;
        }
        mask |= bit;
    }
    if (mask == 0) bc__js_fail(c, "'type' is an empty array");
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
    case JSON_NULL: bc__js_put(c, t, "null"); return;
    case JSON_TRUE: bc__js_put(c, t, "true"); return;
    case JSON_FALSE: bc__js_put(c, t, "false"); return;
    case JSON_INTEGER: bc__js_putf(c, t, "%lld", (long long)json_integer_value(v)); return;
    case JSON_REAL:
        if (integer_only)
            snprintf(tmp, sizeof tmp, "%.0f", json_real_value(v));
        else
            js_real_text(json_real_value(v), tmp);
        bc__js_put(c, t, tmp);
        return;
    case JSON_STRING: break;
    default: return;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    bc__js_put(c, t, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        static const char *const esc[0x20] = {
            ['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t"};
        if (ch == '"')
            bc__js_put(c, t, "\\\"");
        else if (ch == '\\')
            bc__js_put(c, t, "\\\\");
        else if (ch < 0x20 && esc[ch] != NULL)
            bc__js_put(c, t, esc[ch]);
        else if (ch < 0x20)
            bc__js_putf(c, t, "\\u%04x", ch);
        else
            bc__js_putn(c, t, (const char *)&s[i], 1);
    }
    bc__js_put(c, t, "\"");
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
            bc__js_fail_memory(c);
            return;
        }
        t->nodes = p, t->cap = cap;
        if (t->n == 0) t->nodes[t->n++] = (js_trie){0, -1, -1, 0};
    }
    long node = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = bc__js_utf8_next(text, len, &i);
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
        bc__js_put(c, b, "\"\"");
        alts++;
    }
    for (long ch = t->nodes[node].child; ch >= 0 && c->status == BC_STATUS_OK; ch = t->nodes[ch].sibling) {
        if (alts++) bc__js_put(c, b, " | ");
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
        bc__js_put_literal(c, b, run);
        const js_trie *x = &t->nodes[at];
        if (x->child < 0) continue; /* a leaf: the text ends here */
        js_buf sub = {0};
        js_text_trie_emit(c, t, at, &sub);
        bc__js_rule_add(c, "enum-rest", &sub, b);
    }
}

void bc__js_enum(js_conv *c, const json_t *s, js_buf *out) {
    const json_t *list = json_object_get(s, "enum"), *one = json_object_get(s, "const");
    if (list != NULL && one != NULL) {
        bc__js_fail(c, "'enum' together with 'const' is not supported");
        return;
    }
    if (list != NULL && (!json_is_array(list) || json_array_size(list) == 0)) {
        bc__js_fail(c, "'enum' must be a non-empty array");
        return;
    }
    if (list != NULL && json_array_size(list) > JS_MAX_ENUM) {
        bc__js_fail(c, "'enum' of %zu values passes the limit of %d", json_array_size(list), JS_MAX_ENUM);
        return;
    }
    int mask = json_object_get(s, "type") ? bc__js_type_mask(c, s) : 0x7F;
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
        size_t old = list ? bc__js_path_push_index(c, "enum", i) : bc__js_path_push(c, "const");
        if (!json_is_array(v) && !json_is_object(v)) {
            js_buf text = {0};
            js_scalar_text(c, v, (mask & T_NUMBER) == 0, &text);
            if (c->status == BC_STATUS_OK) js_text_trie_insert(c, &trie, text.p, text.n);
            bc__js_buf_free(&text);
        } else {
            if (b.n > 0) bc__js_put(c, &b, " | ");
            js_value_literal(c, v, &b);
        }
        bc__js_path_pop(c, old);
    }
    if (kept == 0 && c->status == BC_STATUS_OK)
        bc__js_fail(c, "no value of '%s' has the schema's type", list ? "enum" : "const");
    if (trie.n > 0 && c->status == BC_STATUS_OK) {
        if (b.n > 0) bc__js_put(c, &b, " | ");
        size_t old = bc__js_path_push(c, list ? "enum" : "const");
        js_text_trie_emit(c, &trie, 0, &b);
        bc__js_path_pop(c, old);
    }
    free(trie.nodes);
    bc__js_rule_add(c, list ? "enum" : "const", &b, out);
}

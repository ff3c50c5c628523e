/*
 * json_schema.c - a JSON Schema to the GBNF grammar of the JSON texts that
 * validate against it (bc_json_schema_to_gbnf; the subset is in baichuan.h).
 *
 * Map of the file:
 *   strings                        lengths, formats; patterns are json_schema_regex.c's
 *   schemas                        keyword checks, $ref, anyOf, type dispatch
 *   arrays, objects                items/prefixItems chains, property chains, extra keys (a trie)
 *   entry point
 * Elsewhere: the output, rules and literals (json_schema_gbnf.c), integer
 * and number bounds (json_schema_numbers.c), enum, const and the type
 * keyword (json_schema_values.c).
 *
 * The grammar never left-recurses: every rule reference that can start a
 * rule's text is a schema ($ref, anyOf) reached without consuming a token,
 * and a $ref cycle that consumes nothing is refused.
 */
#include "grammar/json_schema_gbnf.h"
#include "grammar/json_schema_numbers.h"
#include "grammar/json_schema_regex.h"
#include "grammar/json_schema_values.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Strings                                                                  */
/* ======================================================================== */

/* A count keyword (minLength, maxItems, ...): a non-negative integer up to
 * JS_MAX_REPEAT. Returns 1 when present, 0 when absent, -1 on error. */
static int js_count(js_conv *c, const json_t *s, const char *key, long *out) {
    const json_t *v = json_object_get(s, key);
    if (v == NULL) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        bc__js_fail(c, "'%s' must be a non-negative integer", key);
        return -1;
    }
    if (json_integer_value(v) > JS_MAX_REPEAT) {
        bc__js_fail(c, "'%s' %lld passes the limit of %d", key, (long long)json_integer_value(v), JS_MAX_REPEAT);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 1;
}

static void js_string(js_conv *c, const json_t *s, js_buf *out) {
    const json_t *pattern = json_object_get(s, "pattern"), *format = json_object_get(s, "format");
    long lo = 0, hi = -1;
    int has_lo = js_count(c, s, "minLength", &lo), has_hi = js_count(c, s, "maxLength", &hi);
    if (has_lo < 0 || has_hi < 0) return;
    if (has_hi && hi < lo) {
        bc__js_fail(c, "'maxLength' %ld is below 'minLength' %ld", hi, lo);
        return;
    }
    int n_kinds = (pattern != NULL) + (format != NULL) + (has_lo || has_hi);
    if (n_kinds > 1) {
        bc__js_fail(c, "'%s' together with '%s' is not supported", pattern ? "pattern" : "format",
                    format && pattern ? "format" : "minLength/maxLength");
        return;
    }
    if (pattern != NULL) {
        if (!json_is_string(pattern)) {
            bc__js_fail(c, "'pattern' must be a string");
            return;
        }
        size_t old = bc__js_path_push(c, "pattern");
        bc__js_pattern(c, json_string_value(pattern), json_string_length(pattern), out);
        bc__js_path_pop(c, old);
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
            bc__js_put(c, &b, "\"\\\"\"");
            bc__js_use(c, &b, formats[i].rule);
            bc__js_put(c, &b, " \"\\\"\"");
            bc__js_rule_add(c, formats[i].name, &b, out);
            return;
        }
        size_t old = bc__js_path_push(c, "format");
        if (f == NULL)
            bc__js_fail(c, "'format' must be a string");
        else
            bc__js_fail(c, "unsupported format '%s' (supported: date-time, date, time, email, uuid)", f);
        bc__js_path_pop(c, old);
        return;
    }
    if (!has_lo && !has_hi) {
        bc__js_use(c, out, FX_STRING);
        return;
    }
    for (int i = 0; i < c->n_string_rules; i++)
        if (c->string_rules[i][0] == lo && c->string_rules[i][1] == hi) {
            bc__js_put_expr(
                c, out,
                &(js_buf){c->rules[c->string_rules[i][2]].name, strlen(c->rules[c->string_rules[i][2]].name), 0});
            return;
        }
    js_buf b = {0};
    bc__js_put(c, &b, "\"\\\"\"");
    bc__js_use(c, &b, FX_CHAR);
    bc__js_put_repeat(c, &b, lo, hi, 1);
    bc__js_put(c, &b, " \"\\\"\"");
    long r = bc__js_rule_new(c, "string");
    bc__js_rule_set(c, r, &b, out);
    if (r >= 0 && c->n_string_rules < 16)
        c->string_rules[c->n_string_rules][0] = lo, c->string_rules[c->n_string_rules][1] = hi,
        c->string_rules[c->n_string_rules++][2] = r;
}

/* ======================================================================== */
/* Schemas                                                                  */
/* ======================================================================== */

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
    size_t old = i >= 0 ? bc__js_path_push_index(c, seg, (size_t)i) : bc__js_path_push(c, seg);
    js_schema(c, s, out);
    bc__js_path_pop(c, old);
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
        bc__js_fail(c, "'maxItems' %ld is below 'minItems' %ld", hi, lo);
        return;
    }
    if (prefix != NULL && (!json_is_array(prefix) || json_array_size(prefix) > JS_MAX_PROPERTIES)) {
        bc__js_fail(c, "'prefixItems' must be an array of at most %d schemas", JS_MAX_PROPERTIES);
        return;
    }
    long k = prefix ? (long)json_array_size(prefix) : 0;
    int no_more = items != NULL && json_is_false(items);
    if (no_more && hi < 0) hi = k;
    if (hi >= 0 && hi < k) k = hi; /* prefix items past maxItems never appear */
    if (lo > k && no_more) {
        bc__js_fail(c, "'minItems' %ld asks for more items than 'prefixItems' with 'items' false allows", lo);
        return;
    }
    /* The element schemas: the prefix, then the rest. */
    js_buf rest = {0};
    if (!no_more && (hi < 0 || hi > k)) {
        if (items == NULL || json_is_true(items))
            bc__js_use(c, &rest, FX_VALUE);
        else
            js_sub_consumed(c, items, "items", -1, &rest);
    }
    js_buf *pre = k > 0 ? calloc((size_t)k, sizeof *pre) : NULL;
    if (k > 0 && pre == NULL) bc__js_fail_memory(c);
    for (long i = 0; i < k && c->status == BC_STATUS_OK; i++)
        js_sub_consumed(c, json_array_get(prefix, (size_t)i), "prefixItems", i, &pre[i]);

    js_buf b = {0};
    bc__js_put_literal(c, &b, "[");
    bc__js_use(c, &b, FX_WS);
    if (hi == 0) {
        bc__js_put_literal(c, &b, "]");
    } else {
        /* tail: the elements from index k on, each after a comma. */
        js_buf tail = {0};
        if (rest.n > 0) {
            long t_lo = lo > k ? lo - k : 0, t_hi = hi >= 0 ? hi - k : -1;
            if (k == 0) t_lo = t_lo > 0 ? t_lo - 1 : 0, t_hi = t_hi > 0 ? t_hi - 1 : t_hi;
            if (t_hi != 0) {
                bc__js_put(c, &tail, "( ");
                bc__js_use(c, &tail, FX_WS), bc__js_put_literal(c, &tail, ","), bc__js_use(c, &tail, FX_WS);
                bc__js_put_expr(c, &tail, &rest);
                bc__js_put(c, &tail, " )");
                bc__js_put_repeat(c, &tail, t_lo, t_hi, 1);
            }
        }
        /* Going back from the end: element i (i >= 1) after a comma, then
         * the rest; optional from index lo on. */
        for (long i = k - 1; i >= 1 && c->status == BC_STATUS_OK; i--) {
            js_buf step = {0};
            bc__js_put(c, &step, "( ");
            bc__js_use(c, &step, FX_WS), bc__js_put_literal(c, &step, ","), bc__js_use(c, &step, FX_WS);
            bc__js_put_expr(c, &step, &pre[i]);
            if (tail.n > 0) bc__js_put(c, &step, " "), bc__js_putn(c, &step, tail.p, tail.n);
            bc__js_put(c, &step, i >= lo ? " )?" : " )");
            bc__js_buf_free(&tail);
            if (i > 1) {
                bc__js_rule_add(c, "items-from", &step, &tail);
            } else
                tail = step;
        }
        js_buf first = {0};
        bc__js_put_expr(c, &first, k > 0 ? &pre[0] : &rest);
        if (tail.n > 0) bc__js_put(c, &first, " "), bc__js_putn(c, &first, tail.p, tail.n);
        bc__js_use(c, &first, FX_WS);
        if (lo == 0) bc__js_put(c, &b, " ( ");
        bc__js_put_expr(c, &b, &first);
        if (lo == 0) bc__js_put(c, &b, " )?");
        bc__js_put_literal(c, &b, "]");
        bc__js_buf_free(&first);
        bc__js_buf_free(&tail);
    }
    for (long i = 0; i < k && pre != NULL; i++) bc__js_buf_free(&pre[i]);
    free(pre);
    bc__js_buf_free(&rest);
    bc__js_rule_add(c, "array", &b, out);
}

/* ------------------------------------------------------------------------ */
/* Extra keys: any JSON string but the declared names, by a trie of their   */
/* texts. Names holding characters JSON escapes are caught only as written */
/* canonically; an escape the trie does not hold is a different key.      */
/* ------------------------------------------------------------------------ */

/* The rule of the rest of a key that is not a declared name, given the
 * prefix up to node: the end (unless a name ends here), a child's character
 * and its rule, or any other character and then anything. */
static long js_trie_key(js_conv *c, const js_trie *t, long node) {
    js_buf b = {0};
    int alts = 0;
    if (!t[node].terminal) {
        bc__js_put(c, &b, "\"\"");
        alts++;
    }
    js_buf cls = {0};
    for (long ch = t[node].child; ch >= 0; ch = t[ch].sibling) {
        if (alts++) bc__js_put(c, &b, " | ");
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
        bc__js_put_string_literal(c, &lit, one, n);
        /* The literal of the character's JSON text: "\"X\"" less its quotes. */
        if (lit.n >= 6) {
            bc__js_put(c, &b, "\"");
            bc__js_putn(c, &b, lit.p + 3, lit.n - 6);
            bc__js_put(c, &b, "\"");
        }
        bc__js_buf_free(&lit);
        long sub = js_trie_key(c, t, ch);
        if (sub >= 0) bc__js_put(c, &b, " "), bc__js_put(c, &b, c->rules[sub].name);
        if (cp >= 0x20 && cp != '"' && cp != '\\') bc__js_put_class_cp(c, &cls, cp);
    }
    /* Any other first character, then anything. */
    if (alts++) bc__js_put(c, &b, " | ");
    bc__js_elements(c, JS_CLASS_ELEMENTS);
    bc__js_put(c, &b, "[^\"\\\\\\x00-\\x1F");
    if (cls.n > 0) bc__js_putn(c, &b, cls.p, cls.n);
    bc__js_put(c, &b, "]");
    bc__js_use(c, &b, FX_CHAR), bc__js_put(c, &b, "*");
    bc__js_put(c, &b, " | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\"");
    bc__js_use(c, &b, FX_HEX), bc__js_use(c, &b, FX_HEX), bc__js_use(c, &b, FX_HEX), bc__js_use(c, &b, FX_HEX);
    bc__js_put(c, &b, " )");
    bc__js_use(c, &b, FX_CHAR), bc__js_put(c, &b, "*");
    bc__js_buf_free(&cls);
    long r = bc__js_rule_new(c, "key-rest");
    bc__js_rule_set(c, r, &b, NULL);
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
        bc__js_fail_memory(c);
        return;
    }
    size_t n = 1;
    t[0] = (js_trie){0, -1, -1, 0};
    json_object_foreach((json_t *)props, name, v) {
        long node = 0;
        size_t len = strlen(name);
        for (size_t i = 0; i < len;) {
            uint32_t cp = bc__js_utf8_next(name, len, &i);
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
    bc__js_put(c, &b, "\"\\\"\" ");
    bc__js_put(c, &b, c->rules[r].name);
    bc__js_put(c, &b, " \"\\\"\"");
    bc__js_rule_add(c, "extra-key", &b, out);
}

static void js_object(js_conv *c, const json_t *s, js_buf *out) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    const json_t *extra = json_object_get(s, "additionalProperties");
    if (props != NULL && (!json_is_object(props) || json_object_size(props) > JS_MAX_PROPERTIES)) {
        bc__js_fail(c, "'properties' must be an object of at most %d properties", JS_MAX_PROPERTIES);
        return;
    }
    if (req != NULL && !json_is_array(req)) {
        bc__js_fail(c, "'required' must be an array of property names");
        return;
    }
    const char *pname;
    const json_t *pv;
    if (props != NULL) json_object_foreach((json_t *)props, pname, pv) {
            if (strlen(pname) > JS_MAX_NAME_BYTES) {
                bc__js_fail(c, "a property name of %zu bytes passes the limit of %d", strlen(pname), JS_MAX_NAME_BYTES);
                return;
            }
        }
    for (size_t i = 0; req != NULL && i < json_array_size(req); i++) {
        const json_t *r = json_array_get(req, i);
        size_t old = bc__js_path_push_index(c, "required", i);
        if (!json_is_string(r))
            bc__js_fail(c, "'required' must hold strings");
        else if (props == NULL || json_object_get(props, json_string_value(r)) == NULL)
            bc__js_fail(c, "required property '%s' is not in 'properties'", json_string_value(r));
        for (size_t j = 0; j < i && c->status == BC_STATUS_OK; j++)
            if (json_equal((json_t *)json_array_get(req, j), (json_t *)r))
                bc__js_fail(c, "property '%s' is required twice", json_string_value(r));
        bc__js_path_pop(c, old);
    }
    if (c->status != BC_STATUS_OK) return;
    size_t n = props ? json_object_size(props) : 0;

    /* Extra members: key ws ":" ws value. */
    js_buf extra_kv = {0};
    if (extra == NULL || !json_is_false(extra)) {
        if (n > 0)
            js_extra_key(c, props, &extra_kv);
        else
            bc__js_use(c, &extra_kv, FX_STRING);
        bc__js_use(c, &extra_kv, FX_WS), bc__js_put_literal(c, &extra_kv, ":"), bc__js_use(c, &extra_kv, FX_WS);
        if (extra == NULL || json_is_true(extra))
            bc__js_use(c, &extra_kv, FX_VALUE);
        else
            js_sub_consumed(c, extra, "additionalProperties", -1, &extra_kv);
    }

    /* Each declared member: "name" ws ":" ws value. */
    js_buf *kv = n > 0 ? calloc(n, sizeof *kv) : NULL;
    int *required = n > 0 ? calloc(n, sizeof *required) : NULL; /* 1 required, 0 optional, -1 never (false) */
    if (n > 0 && (kv == NULL || required == NULL)) bc__js_fail_memory(c);
    const char *name;
    const json_t *sub;
    size_t i = 0;
    if (c->status == BC_STATUS_OK) json_object_foreach((json_t *)props, name, sub) {
            for (size_t j = 0; req != NULL && j < json_array_size(req); j++)
                if (strcmp(json_string_value(json_array_get(req, j)), name) == 0) required[i] = 1;
            size_t old = bc__js_path_push(c, "properties");
            if (json_is_false(sub)) { /* the key may not appear (nor as an extra one: the trie has its name) */
                bc__js_path_push(c, name);
                if (required[i]) bc__js_fail(c, "a required property with the schema false matches nothing");
                required[i] = -1;
            } else {
                bc__js_put_string_literal(c, &kv[i], name, strlen(name));
                bc__js_use(c, &kv[i], FX_WS), bc__js_put_literal(c, &kv[i], ":"), bc__js_use(c, &kv[i], FX_WS);
                js_sub_consumed(c, sub, name, -1, &kv[i]);
            }
            bc__js_path_pop(c, old);
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
                bc__js_fail(
                    c,
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
        bc__js_put(c, &tail, "( ");
        bc__js_use(c, &tail, FX_WS), bc__js_put_literal(c, &tail, ","), bc__js_use(c, &tail, FX_WS);
        bc__js_put_expr(c, &tail, &extra_kv);
        bc__js_put(c, &tail, " )*");
        bc__js_putn(c, &head, extra_kv.p, extra_kv.n);
        bc__js_put(c, &head, " "), bc__js_putn(c, &head, tail.p, tail.n);
        js_buf named = {0};
        bc__js_rule_add(c, "members-extra", &tail, &named);
        tail = named;
    }
    for (size_t k = n; k-- > 0 && c->status == BC_STATUS_OK;) {
        if (required[k] < 0) continue; /* never present */
        /* head[k] = kv tail[k+1] (| head[k+1] when optional) */
        js_buf h = {0};
        bc__js_put_expr(c, &h, &kv[k]);
        if (tail.n > 0) bc__js_put(c, &h, " "), bc__js_putn(c, &h, tail.p, tail.n);
        if (!required[k] && head.n > 0) {
            js_buf named = {0};
            bc__js_rule_add(c, "members", &head, &named);
            bc__js_put(c, &h, " | "), bc__js_putn(c, &h, named.p, named.n);
            bc__js_buf_free(&named);
        }
        any_required |= required[k];
        bc__js_buf_free(&head);
        head = h;
        /* tail[k] = ws "," ws kv tail[k+1], optional unless required */
        js_buf t = {0};
        bc__js_put(c, &t, "( ");
        bc__js_use(c, &t, FX_WS), bc__js_put_literal(c, &t, ","), bc__js_use(c, &t, FX_WS);
        bc__js_put_expr(c, &t, &kv[k]);
        bc__js_put(c, &t, required[k] ? " )" : " )?");
        if (tail.n > 0) bc__js_put(c, &t, " "), bc__js_putn(c, &t, tail.p, tail.n);
        bc__js_buf_free(&tail);
        if (k > 0) {
            bc__js_rule_add(c, "members-after", &t, &tail);
        } else
            tail = t;
    }
    js_buf b = {0};
    bc__js_put_literal(c, &b, "{");
    bc__js_use(c, &b, FX_WS);
    if (head.n > 0) {
        bc__js_put(c, &b, any_required ? " ( " : " ( ( ");
        bc__js_putn(c, &b, head.p, head.n);
        bc__js_put(c, &b, any_required ? " )" : " )");
        bc__js_use(c, &b, FX_WS);
        if (!any_required) bc__js_put(c, &b, " )?");
    }
    bc__js_put_literal(c, &b, "}");
    bc__js_rule_add(c, "object", &b, out);

    for (size_t k = 0; kv != NULL && k < n; k++) bc__js_buf_free(&kv[k]);
    free(kv);
    free(required);
    bc__js_buf_free(&head);
    bc__js_buf_free(&tail);
    bc__js_buf_free(&extra_kv);
}

/* Resolves a local $ref (a JSON pointer into the root: "#", "#/$defs/x"). */
static const json_t *js_resolve(js_conv *c, const char *ref) {
    if (ref[0] != '#') {
        bc__js_fail(c, "'$ref' '%s' is not local (only '#...' references are supported)", ref);
        return NULL;
    }
    const json_t *at = c->root;
    const char *p = ref + 1;
    if (*p != '\0' && *p != '/') {
        bc__js_fail(c, "'$ref' '%s' is not a JSON pointer (anchors are not supported)", ref);
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
    if (at == NULL) bc__js_fail(c, "'$ref' '%s' names nothing in the schema", ref);
    return at;
}

static void js_ref(js_conv *c, const json_t *s, js_buf *out) {
    const json_t *ref = json_object_get(s, "$ref");
    if (!json_is_string(ref)) {
        bc__js_fail(c, "'$ref' must be a string");
        return;
    }
    const json_t *target = js_resolve(c, json_string_value(ref));
    if (target == NULL) return;
    for (int i = 0; i < c->n_entered; i++)
        if (c->entered[i] == target) {
            bc__js_fail(c, "'$ref' '%s' recurses without consuming any text", json_string_value(ref));
            return;
        }
    for (size_t i = 0; i < c->n_rules; i++)
        if (c->rules[i].target == target) { /* made, or being made higher up */
            bc__js_put(c, out, out->n > 0 && out->p[out->n - 1] != ' ' ? " " : "");
            bc__js_put(c, out, c->rules[i].name);
            return;
        }
    if (c->n_entered == JS_MAX_DEPTH) {
        bc__js_fail(c, "'$ref' chains deeper than %d", JS_MAX_DEPTH);
        return;
    }
    const char *hint = strrchr(json_string_value(ref), '/');
    long r = bc__js_rule_new(c, hint ? hint + 1 : "root");
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
    bc__js_rule_set(c, r, &body, out);
}

static void js_schema(js_conv *c, const json_t *s, js_buf *out) {
    if (c->status != BC_STATUS_OK) return;
    if (json_is_true(s)) {
        bc__js_use(c, out, FX_VALUE);
        return;
    }
    if (json_is_false(s)) {
        bc__js_fail(c, "the schema false matches nothing");
        return;
    }
    if (!json_is_object(s)) {
        bc__js_fail(c, "a schema must be an object or a boolean");
        return;
    }
    if (c->depth >= JS_MAX_DEPTH) {
        bc__js_fail(c, "schemas nested deeper than %d", JS_MAX_DEPTH);
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
            bc__js_fail(c, "unsupported keyword '%s'", key);
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
            bc__js_fail(c, "'%s' must be an object of schemas", i == 0 ? "$defs" : "definitions");
    if (combinator != NULL && (enum_kw != NULL || other != NULL))
        bc__js_fail(c, "'%s' together with '%s' is not supported", combinator, enum_kw ? enum_kw : other);
    else if (enum_kw != NULL && other_not_type != NULL)
        bc__js_fail(c, "'%s' together with '%s' is not supported", enum_kw, other_not_type);
    else if (enum_kw != NULL)
        bc__js_enum(c, s, out);
    else if (combinator != NULL && strcmp(combinator, "$ref") == 0)
        js_ref(c, s, out);
    else if (combinator != NULL) {
        const json_t *list = json_object_get(s, combinator);
        size_t n = json_is_array(list) ? json_array_size(list) : 0;
        if (n == 0 || n > JS_MAX_BRANCHES)
            bc__js_fail(c, "'%s' must be an array of 1 to %d schemas (the matcher follows each as a live parse)",
                        combinator, JS_MAX_BRANCHES);
        else if (strcmp(combinator, "allOf") == 0 && n > 1)
            bc__js_fail(c, "'allOf' of more than one schema is not supported");
        else if (n == 1)
            js_sub(c, json_array_get(list, 0), combinator, 0, out);
        else {
            js_buf b = {0};
            for (size_t i = 0; i < n && c->status == BC_STATUS_OK; i++) {
                if (i > 0) bc__js_put(c, &b, " | ");
                js_sub(c, json_array_get(list, i), combinator, (long)i, &b);
            }
            bc__js_rule_add(c, bc__js_hint(c), &b, out);
        }
    } else {
        int mask = bc__js_type_mask(c, s);
        js_buf b = {0};
        int alts = 0;
        /* The alternatives in the order of the T_ bits: null, boolean, object, array, number, integer, string. */
        for (int bit = T_NULL; bit <= T_STRING && c->status == BC_STATUS_OK; bit <<= 1) {
            if (!(mask & bit)) continue;
            if (alts++) bc__js_put(c, &b, " | ");
            switch (bit) {
            case T_NULL: bc__js_use(c, &b, FX_NULL); break;
            case T_BOOLEAN: bc__js_use(c, &b, FX_BOOLEAN); break;
            case T_OBJECT: js_object(c, s, &b); break;
            case T_ARRAY: js_array(c, s, &b); break;
            case T_NUMBER: bc__js_number(c, s, 0, &b); break;
            case T_INTEGER: bc__js_number(c, s, 1, &b); break;
            case T_STRING: js_string(c, s, &b); break;
            }
        }
        /* One name needs no rule of its own. */
        if (alts == 1 && b.n > 0 && strpbrk(b.p, " \"") == NULL) {
            if (out->n > 0 && out->p[out->n - 1] != ' ' && out->p[out->n - 1] != '(') bc__js_put(c, out, " ");
            bc__js_putn(c, out, b.p, b.n);
            bc__js_buf_free(&b);
        } else
            bc__js_rule_add(c, bc__js_hint(c), &b, out);
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
        bc__js_use(&c, &body, FX_OBJECT); /* json_object: any object */
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
        bc__js_elements(&c, body.n);
    }
    js_buf outb = {0};
    if (c.status == BC_STATUS_OK) {
        bc__js_put(&c, &outb, "root ::= ");
        bc__js_putn(&c, &outb, body.p, body.n);
        bc__js_put(&c, &outb, "\n");
        for (size_t i = 0; i < c.n_rules; i++)
            bc__js_putf(&c, &outb, "%s ::= ", c.rules[i].name),
                bc__js_putn(&c, &outb, c.rules[i].body.p, c.rules[i].body.n), bc__js_put(&c, &outb, "\n");
        bc__js_put_fixed_rules(&c, &outb);
    }
    for (size_t i = 0; i < c.n_rules; i++) bc__js_buf_free(&c.rules[i].body);
    free(c.rules);
    bc__js_buf_free(&body);
    json_decref(root);
    if (c.status != BC_STATUS_OK) {
        bc__js_buf_free(&outb);
        return c.status;
    }
    *gbnf = outb.p;
    return BC_STATUS_OK;
}

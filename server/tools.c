/*
 * tools.c - OpenAI tool calling for Baichuan models, which have no tool
 * tokens (tools.h has the textual format).
 *
 *   checking      tools, tool_choice, parallel_tool_calls; each tool's
 *                 parameters converted once, so that an unsupported
 *                 keyword is a 400 naming the tool and the JSON pointer
 *   rendering     the system part listing the tools, past calls, results
 *   the grammar   one JSON Schema for the reply {"tool_calls": [...]}:
 *                 each item an anyOf of one object per tool, {"name":
 *                 {"const": NAME}, "arguments": {"$ref": "#/$defs/tN"}},
 *                 the tool's parameters under $defs/tN (its own local
 *                 $refs rewritten to point there), converted by the
 *                 library; for tool_choice auto, that grammar's root
 *                 renamed and made one branch of
 *                     root ::= tool-calls | free-text
 *                     free-text ::= ( [^{] .* )?
 *                 so the first character decides: "{" starts calls, any
 *                 other character text (which then cannot be a call).
 *                 Whitespace between the JSON's tokens is at most one
 *                 space.
 *   scanning      the reply's bytes as they come: text, or each call's
 *                 name and the raw text of its arguments, so that a
 *                 stream can send a call's name first and then its
 *                 arguments in pieces.
 */
#include "tools.h"

#include "baichuan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Checking                                                                 */
/* ------------------------------------------------------------------------ */

/* OpenAI's rule for function names: ^[a-zA-Z0-9_-]{1,64}$. */
static bool valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static const char *tool_name(const srv_tools *t, int i) {
    return json_string_value(json_object_get(json_object_get(json_array_get(t->tools, (size_t)i), "function"), "name"));
}

/* Checks the tools array; -1 with err. */
static int check_tools(json_t *tools, char *err, size_t err_size) {
    if (!json_is_array(tools) || json_array_size(tools) == 0 || json_array_size(tools) > SRV_MAX_TOOLS) {
        snprintf(err, err_size, "'tools' must be a non-empty array of at most %d tools", SRV_MAX_TOOLS);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(tools); i++) {
        json_t *tool = json_array_get(tools, i), *fn = json_object_get(tool, "function"), *v;
        const char *type = json_string_value(json_object_get(tool, "type"));
        if (!json_is_object(tool) || type == NULL || strcmp(type, "function") != 0) {
            snprintf(err, err_size, "tools[%zu] must be an object with 'type': 'function'", i);
            return -1;
        }
        if (!json_is_object(fn)) {
            snprintf(err, err_size, "tools[%zu].function must be an object", i);
            return -1;
        }
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (name == NULL) {
            snprintf(err, err_size, "tools[%zu].function.name is required: a string", i);
            return -1;
        }
        if (!valid_name(name)) {
            snprintf(err, err_size, "tools[%zu].function.name '%.80s' must be 1 to 64 of a-z, A-Z, 0-9, _ and -", i,
                     name);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(name, json_string_value(json_object_get(json_object_get(json_array_get(tools, j), "function"),
                                                               "name"))) == 0) {
                snprintf(err, err_size, "tools[%zu].function.name '%s' is also the name of tools[%zu]", i, name, j);
                return -1;
            }
        if ((v = json_object_get(fn, "description")) != NULL && !json_is_string(v) && !json_is_null(v)) {
            snprintf(err, err_size, "tools[%zu].function.description must be a string", i);
            return -1;
        }
        if ((v = json_object_get(fn, "strict")) != NULL && !json_is_boolean(v) && !json_is_null(v)) {
            snprintf(err, err_size, "tools[%zu].function.strict must be a boolean", i);
            return -1;
        }
        v = json_object_get(fn, "parameters");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_object(v)) {
                snprintf(err, err_size, "tools[%zu].function.parameters must be a JSON Schema object", i);
                return -1;
            }
            char *text = json_dumps(v, JSON_COMPACT), *gbnf = NULL, msg[400];
            if (text == NULL) {
                snprintf(err, err_size, "out of memory");
                return -1;
            }
            bc_status st = bc_json_schema_to_gbnf(text, strlen(text), &gbnf, msg, sizeof msg);
            free(text);
            free(gbnf);
            if (st != BC_STATUS_OK) {
                snprintf(err, err_size, "tools[%zu].function.parameters (function '%s'): %s", i, name, msg);
                return -1;
            }
        }
    }
    return 0;
}

int srv_tools_from_array(json_t *tools, srv_tools *t, char *err, size_t err_size) {
    memset(t, 0, sizeof *t);
    if (check_tools(tools, err, err_size) != 0) return -1;
    t->tools = json_incref(tools);
    t->n_tools = (int)json_array_size(tools);
    t->choice = SRV_TOOL_CHOICE_AUTO;
    t->parallel = true;
    return 0;
}

int srv_tools_read(json_t *body, srv_tools *t, char *err, size_t err_size, const char **param) {
    memset(t, 0, sizeof *t);
    t->parallel = true;
    json_t *tools = json_object_get(body, "tools"), *choice = json_object_get(body, "tool_choice");
    json_t *par = json_object_get(body, "parallel_tool_calls");
    *param = "parallel_tool_calls";
    if (par != NULL && !json_is_null(par)) {
        if (!json_is_boolean(par)) {
            snprintf(err, err_size, "'parallel_tool_calls' must be a boolean");
            return -1;
        }
        t->parallel = json_is_true(par);
    }
    *param = "tools";
    if (tools != NULL && !json_is_null(tools)) {
        if (srv_tools_from_array(tools, t, err, err_size) != 0) return -1;
        t->parallel = par == NULL || json_is_null(par) || json_is_true(par);
    }
    *param = "tool_choice";
    if (choice == NULL || json_is_null(choice)) {
        t->choice = t->tools ? SRV_TOOL_CHOICE_AUTO : SRV_TOOL_CHOICE_NONE;
        return 0;
    }
    const char *s = json_string_value(choice);
    if (s != NULL && strcmp(s, "none") == 0) {
        t->choice = SRV_TOOL_CHOICE_NONE;
        return 0;
    }
    if (s != NULL && strcmp(s, "auto") != 0 && strcmp(s, "required") != 0) {
        snprintf(err, err_size,
                 "'tool_choice' '%.64s' is not supported (none, auto, required or "
                 "{\"type\": \"function\", \"function\": {\"name\": ...}})",
                 s);
        goto fail;
    }
    if (s == NULL) {
        const char *type = json_string_value(json_object_get(choice, "type"));
        const char *name = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
        if (!json_is_object(choice) || type == NULL || strcmp(type, "function") != 0 || name == NULL) {
            snprintf(err, err_size,
                     "'tool_choice' must be none, auto, required or "
                     "{\"type\": \"function\", \"function\": {\"name\": ...}}");
            goto fail;
        }
        if (t->tools == NULL) {
            snprintf(err, err_size, "'tool_choice' names the function '%.80s' but the request has no 'tools'", name);
            goto fail;
        }
        t->named = -1;
        for (int i = 0; i < t->n_tools; i++)
            if (strcmp(tool_name(t, i), name) == 0) t->named = i;
        if (t->named < 0) {
            snprintf(err, err_size, "'tool_choice' names the function '%.80s', which is not one of 'tools'", name);
            goto fail;
        }
        t->choice = SRV_TOOL_CHOICE_NAMED;
        return 0;
    }
    if (t->tools == NULL) {
        snprintf(err, err_size, "'tool_choice' '%s' needs 'tools'", s);
        goto fail;
    }
    t->choice = strcmp(s, "auto") == 0 ? SRV_TOOL_CHOICE_AUTO : SRV_TOOL_CHOICE_REQUIRED;
    return 0;
fail:
    srv_tools_free(t);
    return -1;
}

void srv_tools_free(srv_tools *t) {
    json_decref(t->tools);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------------ */
/* Rendering                                                                */
/* ------------------------------------------------------------------------ */

/* jansson's dump with ", " and ": " between tokens, UTF-8 as is. */
static int append_json(srv_buf *out, const json_t *v) {
    char *s = json_dumps(v, JSON_ENCODE_ANY);
    int rc = s != NULL ? srv_buf_puts(out, s) : -1;
    free(s);
    return rc;
}

int srv_tools_describe(const srv_tools *t, srv_buf *out) {
    if (t->tools == NULL || t->choice == SRV_TOOL_CHOICE_NONE) return 0;
    if (out->len > 0 && srv_buf_puts(out, "\n\n") != 0) return -1;
    if (srv_buf_puts(out, "# Tools\n"
                          "You may call the functions below. To call, reply with only this JSON and nothing else:\n"
                          "{\"tool_calls\": [{\"name\": \"<function name>\", \"arguments\": {<arguments>}}]}\n"
                          "The results come back as {\"tool_results\": [...]}. Otherwise reply in text.\n"
                          "Functions:") != 0)
        return -1;
    for (int i = 0; i < t->n_tools; i++) {
        json_t *fn = json_object_get(json_array_get(t->tools, (size_t)i), "function"), *v;
        json_t *o = json_pack("{s:O}", "name", json_object_get(fn, "name"));
        if (o == NULL) return -1;
        if (json_is_string(v = json_object_get(fn, "description"))) json_object_set(o, "description", v);
        if (json_is_object(v = json_object_get(fn, "parameters"))) json_object_set(o, "parameters", v);
        int rc = srv_buf_puts(out, "\n") != 0 || append_json(out, o) != 0 ? -1 : 0;
        json_decref(o);
        if (rc != 0) return -1;
    }
    return 0;
}

int srv_tools_render_calls(json_t *tool_calls, srv_buf *out, char *err, size_t err_size) {
    if (!json_is_array(tool_calls) || json_array_size(tool_calls) == 0) {
        snprintf(err, err_size, "tool_calls must be a non-empty array");
        return -1;
    }
    json_t *calls = json_array();
    for (size_t i = 0; i < json_array_size(tool_calls); i++) {
        json_t *fn = json_object_get(json_array_get(tool_calls, i), "function");
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_string(name) || (args != NULL && !json_is_string(args) && !json_is_null(args))) {
            snprintf(err, err_size, "tool_calls[%zu] must have function.name and function.arguments strings", i);
            json_decref(calls);
            return -1;
        }
        /* The arguments as JSON when they are JSON (they should be), else as their string. */
        json_t *value = args && json_is_string(args)
                            ? json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY, NULL)
                            : json_object();
        if (value == NULL) value = json_copy(args);
        json_array_append_new(calls, json_pack("{s:O, s:o}", "name", name, "arguments", value));
    }
    json_t *o = json_pack("{s:o}", "tool_calls", calls);
    int rc = append_json(out, o);
    json_decref(o);
    if (rc != 0) snprintf(err, err_size, "out of memory");
    return rc;
}

int srv_tools_render_results(const char *const *ids, const char *const *names, const char *const *contents,
                             const size_t *content_lens, size_t n, srv_buf *out) {
    json_t *results = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_pack("{s:s}", "tool_call_id", ids[i]);
        if (names[i] != NULL) json_object_set_new(r, "name", json_string(names[i]));
        json_object_set_new(r, "content", json_stringn(contents[i], content_lens[i]));
        json_array_append_new(results, r);
    }
    json_t *o = json_pack("{s:o}", "tool_results", results);
    int rc = append_json(out, o);
    json_decref(o);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The grammar                                                              */
/* ------------------------------------------------------------------------ */

/* Rewrites the local $refs of a tool's parameters ("#..." ->
 * "#/$defs/tN...") now that they live at $defs/tN of the reply's schema.
 * Values (const, enum, default, examples) are left alone. */
static void rebase_refs(json_t *v, const char *base) {
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) rebase_refs(json_array_get(v, i), base);
        return;
    }
    if (!json_is_object(v)) return;
    const char *key;
    json_t *child;
    json_object_foreach(v, key, child) {
        if (strcmp(key, "const") == 0 || strcmp(key, "enum") == 0 || strcmp(key, "default") == 0 ||
            strcmp(key, "examples") == 0)
            continue;
        if (strcmp(key, "$ref") == 0 && json_is_string(child) && json_string_value(child)[0] == '#') {
            srv_buf b = {0};
            srv_buf_printf(&b, "%s%s", base, json_string_value(child) + 1);
            if (b.data != NULL) json_string_set(child, b.data);
            srv_buf_free(&b);
        } else if (strcmp(key, "properties") == 0 && json_is_object(child)) {
            const char *k2;
            json_t *c2;
            json_object_foreach(child, k2, c2) rebase_refs(c2, base); /* property names are not keywords */
        } else
            rebase_refs(child, base);
    }
}

/* The reply's JSON Schema (see the top of the file). */
static json_t *reply_schema(const srv_tools *t) {
    json_t *defs = json_object(), *branches = json_array();
    for (int i = 0; i < t->n_tools; i++) {
        if (t->choice == SRV_TOOL_CHOICE_NAMED && i != t->named) continue;
        json_t *fn = json_object_get(json_array_get(t->tools, (size_t)i), "function");
        json_t *params = json_object_get(fn, "parameters");
        char def[32], base[48];
        snprintf(def, sizeof def, "t%d", i);
        snprintf(base, sizeof base, "#/$defs/%s", def);
        /* No parameters: the function takes none, and its arguments are {}. */
        json_t *p = json_is_object(params)
                        ? json_deep_copy(params)
                        : json_pack("{s:s, s:{}, s:b}", "type", "object", "properties", "additionalProperties", 0);
        rebase_refs(p, base);
        json_object_set_new(defs, def, p);
        json_array_append_new(branches,
                              json_pack("{s:s, s:{s:{s:O}, s:{s:s}}, s:[s, s], s:b}", "type", "object", "properties",
                                        "name", "const", json_object_get(fn, "name"), "arguments", "$ref", base,
                                        "required", "name", "arguments", "additionalProperties", 0));
    }
    json_t *items = json_array_size(branches) == 1 ? json_incref(json_array_get(branches, 0))
                                                   : json_pack("{s:O}", "anyOf", branches);
    json_decref(branches);
    return json_pack("{s:s, s:{s:{s:s, s:i, s:i, s:o}}, s:[s], s:b, s:o}", "type", "object", "properties", "tool_calls",
                     "type", "array", "minItems", 1, "maxItems", t->parallel ? SRV_MAX_PARALLEL_CALLS : 1, "items",
                     items, "required", "tool_calls", "additionalProperties", 0, "$defs", defs);
}

char *srv_tools_gbnf(const srv_tools *t, char *err, size_t err_size) {
    if (err_size) err[0] = '\0';
    if (t->tools == NULL || t->choice == SRV_TOOL_CHOICE_NONE) return NULL;
    json_t *schema = reply_schema(t);
    char *text = schema ? json_dumps(schema, JSON_COMPACT) : NULL, *gbnf = NULL;
    json_decref(schema);
    if (text == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    bc_status st = bc_json_schema_to_gbnf(text, strlen(text), &gbnf, err, err_size);
    free(text);
    if (st != BC_STATUS_OK) return NULL;
    /* Whitespace between tokens: at most one space (the converter allows a
     * newline and 20 spaces, which a small model spends its tokens on). */
    char *ws = strstr(gbnf, "\nws ::= ");
    if (ws != NULL) {
        char *end = strchr(ws + 1, '\n');
        static const char one_space[] = "\nws ::= \" \"?";
        size_t tail = end ? strlen(end) : 0;
        if ((size_t)((end ? end : ws + strlen(ws)) - ws) >= sizeof one_space - 1) {
            memcpy(ws, one_space, sizeof one_space - 1);
            memmove(ws + sizeof one_space - 1, end ? end : "", tail + 1);
        }
    }
    if (t->choice != SRV_TOOL_CHOICE_AUTO) return gbnf;
    /* auto: the converter's root becomes one branch. */
    static const char root[] = "root ::= ";
    if (strncmp(gbnf, root, sizeof root - 1) != 0) {
        snprintf(err, err_size, "the tools' grammar does not start with its root rule");
        free(gbnf);
        return NULL;
    }
    srv_buf b = {0};
    srv_buf_printf(&b, "root ::= tool-calls | free-text\nfree-text ::= ( [^{] .* )?\ntool-calls ::= %s",
                   gbnf + sizeof root - 1);
    free(gbnf);
    if (b.data == NULL) snprintf(err, err_size, "out of memory");
    return b.data;
}

/* ------------------------------------------------------------------------ */
/* Scanning a reply                                                         */
/* ------------------------------------------------------------------------ */

/* Where the lexer is inside a call object (depth 3). */
enum {
    AT_KEY = 0,   /* before a key */
    IN_KEY,       /* reading a key */
    AT_VALUE,     /* after ':', before the value */
    IN_NAME,      /* reading the name's string */
    IN_ARGS,      /* inside the arguments' value */
    AFTER_VALUE,  /* after a value, before ',' or '}' */
    IN_OTHER_STR, /* a string value of another key (none in the format) */
};

#define CALL_DEPTH 3 /* {"tool_calls": [ {call} ] } */

static srv_tool_call *new_call(srv_tool_scan *s) {
    if (s->n_calls == s->cap_calls) {
        int cap = s->cap_calls ? 2 * s->cap_calls : 4;
        srv_tool_call *c = realloc(s->calls, (size_t)cap * sizeof *c);
        if (c == NULL) {
            s->failed = true;
            return NULL;
        }
        s->calls = c;
        s->cap_calls = cap;
    }
    srv_tool_call *c = &s->calls[s->n_calls++];
    memset(c, 0, sizeof *c);
    return c;
}

static srv_tool_call *cur(srv_tool_scan *s) { return s->n_calls ? &s->calls[s->n_calls - 1] : NULL; }

static void put(srv_tool_scan *s, srv_buf *b, char ch) {
    if (srv_buf_append(b, &ch, 1) != 0) s->failed = true;
}

static bool is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

/* One byte of the arguments' value; false when it ended before ch (a
 * number or literal), which the caller then reads as the envelope's. */
static bool args_byte(srv_tool_scan *s, srv_tool_call *c, char ch) {
    if (s->in_string) {
        put(s, &c->args, ch);
        if (s->escape)
            s->escape = false;
        else if (ch == '\\')
            s->escape = true;
        else if (ch == '"') {
            s->in_string = false;
            if (s->depth == CALL_DEPTH) c->args_done = true, s->where = AFTER_VALUE;
        }
        return true;
    }
    if (s->scalar && s->depth == CALL_DEPTH && (is_ws(ch) || ch == ',' || ch == '}' || ch == ']')) {
        c->args_done = true;
        s->scalar = false;
        s->where = AFTER_VALUE;
        return false;
    }
    put(s, &c->args, ch);
    if (ch == '"')
        s->in_string = true;
    else if (ch == '{' || ch == '[')
        s->depth++;
    else if (ch == '}' || ch == ']') {
        if (--s->depth == CALL_DEPTH) c->args_done = true, s->where = AFTER_VALUE;
    }
    return true;
}

static void call_byte(srv_tool_scan *s, char ch) {
    srv_tool_call *c = cur(s);
    if (s->where == IN_ARGS && c != NULL && args_byte(s, c, ch)) return;
    if (s->in_string) {
        if (s->escape)
            s->escape = false;
        else if (ch == '\\')
            s->escape = true;
        else if (ch == '"') {
            s->in_string = false;
            if (s->where == IN_KEY) {
                s->key[s->key_len < sizeof s->key ? s->key_len : sizeof s->key - 1] = '\0';
                s->where = AT_KEY; /* the ':' comes next */
            } else if (s->where == IN_NAME) {
                if (c != NULL) c->named = true;
                s->where = AFTER_VALUE;
            } else if (s->where == IN_OTHER_STR)
                s->where = AFTER_VALUE;
            return;
        }
        if (s->where == IN_KEY && s->key_len < sizeof s->key) s->key[s->key_len++] = ch;
        if (s->where == IN_NAME && c != NULL) put(s, &c->name, ch);
        return;
    }
    if (is_ws(ch)) return;
    if (s->depth == CALL_DEPTH && s->where == AT_VALUE) {
        if (strcmp(s->key, "arguments") == 0 && c != NULL) {
            s->where = IN_ARGS;
            s->scalar = !(ch == '{' || ch == '[' || ch == '"');
            args_byte(s, c, ch);
            return;
        }
        if (ch == '"') {
            s->in_string = true;
            s->where = strcmp(s->key, "name") == 0 ? IN_NAME : IN_OTHER_STR;
            return;
        }
    }
    switch (ch) {
    case '"':
        s->in_string = true;
        if (s->depth == CALL_DEPTH && s->where == AT_KEY) {
            s->where = IN_KEY;
            s->key_len = 0;
        }
        break;
    case ':':
        if (s->depth == CALL_DEPTH) s->where = AT_VALUE;
        break;
    case ',':
        if (s->depth == CALL_DEPTH) s->where = AT_KEY;
        break;
    case '{':
    case '[':
        if (++s->depth == CALL_DEPTH && ch == '{') {
            new_call(s);
            s->where = AT_KEY;
            s->key[0] = '\0';
            s->key_len = 0;
        }
        break;
    case '}':
    case ']': s->depth--; break;
    default: break;
    }
}

void srv_tool_scan_feed(srv_tool_scan *s, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s->mode == 0) s->mode = p[i] == '{' ? 2 : 1;
        if (s->mode == 1) {
            if (srv_buf_append(&s->text, p + i, n - i) != 0) s->failed = true;
            return;
        }
        call_byte(s, p[i]);
    }
}

void srv_tool_scan_end(srv_tool_scan *s) {
    srv_tool_call *c = cur(s);
    if (s->mode == 2 && c != NULL && s->where == IN_ARGS && s->scalar && s->depth == CALL_DEPTH) {
        c->args_done = true;
        s->scalar = false;
        s->where = AFTER_VALUE;
    }
}

void srv_tool_scan_free(srv_tool_scan *s) {
    for (int i = 0; i < s->n_calls; i++) {
        srv_buf_free(&s->calls[i].name);
        srv_buf_free(&s->calls[i].args);
    }
    free(s->calls);
    srv_buf_free(&s->text);
    memset(s, 0, sizeof *s);
}

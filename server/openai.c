/*
 * openai.c - the OpenAI API shapes: request bodies of /v1/completions and
 * /v1/chat/completions turned into srv_requests, and the chunks and bodies
 * that go back (text_completion / chat.completion(.chunk), usage, logprobs).
 *
 * Unknown fields are ignored. Logprobs are the log-softmax of the model's
 * raw logits (before penalties, temperature and truncation): the model's own
 * distribution, as OpenAI reports it; each choice's generator computes them.
 */
#include "openai.h"

#include "grammars.h"
#include "tools.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOPS 16

static srv_request *bad(srv_error *e, const char *param, const char *code, const char *fmt, const char *arg) {
    e->status = 400;
    snprintf(e->message, sizeof e->message, fmt, arg);
    e->type = "invalid_request_error";
    e->param = param;
    e->code = code;
    return NULL;
}

/* A number field: absent or null leaves *out; otherwise must lie in [lo, hi]. */
static int get_number(json_t *body, const char *key, double lo, double hi, float *out, srv_error *e) {
    json_t *v = json_object_get(body, key);
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "'%s' must be a number in [%g, %g]", key, lo, hi);
        bad(e, key, NULL, "%s", msg);
        return -1;
    }
    *out = (float)json_number_value(v);
    return 0;
}

static int get_int(json_t *body, const char *key, long long lo, long long hi, long long *out, srv_error *e) {
    json_t *v = json_object_get(body, key);
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "'%s' must be an integer in [%lld, %lld]", key, lo, hi);
        bad(e, key, NULL, "%s", msg);
        return -1;
    }
    *out = json_integer_value(v);
    return 1;
}

/* logit_bias as OpenAI has it: {"<token id>": bias}, ids as decimal strings
 * inside the vocabulary, biases numbers in [-100, 100], at most
 * MAX_LOGIT_BIAS entries. Absent or null: *n = 0. */
#define MAX_LOGIT_BIAS 1024
static int read_logit_bias(json_t *v, int n_vocab, int32_t **ids, float **bias, size_t *n, srv_error *e) {
    *ids = NULL;
    *bias = NULL;
    *n = 0;
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_object(v)) {
        bad(e, "logit_bias", NULL, "%s", "'logit_bias' must be an object of token id -> bias");
        return -1;
    }
    size_t count = json_object_size(v);
    if (count > MAX_LOGIT_BIAS) {
        char msg[96];
        snprintf(msg, sizeof msg, "'logit_bias' has %zu entries (at most %d)", count, MAX_LOGIT_BIAS);
        bad(e, "logit_bias", NULL, "%s", msg);
        return -1;
    }
    if (count == 0) return 0;
    *ids = malloc(count * sizeof **ids);
    *bias = malloc(count * sizeof **bias);
    if (*ids == NULL || *bias == NULL) {
        e->status = 500;
        bad(e, NULL, NULL, "%s", "out of memory");
        return -1;
    }
    const char *key;
    json_t *b;
    json_object_foreach(v, key, b) {
        char msg[200], *end = NULL;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (key[0] < '0' || key[0] > '9' || *end != '\0' || errno != 0 || id >= n_vocab) {
            snprintf(msg, sizeof msg, "'logit_bias' key '%.32s' is not a token id in [0, %d)", key, n_vocab);
            bad(e, "logit_bias", NULL, "%s", msg);
            return -1;
        }
        if (!json_is_number(b) || !(json_number_value(b) >= -100 && json_number_value(b) <= 100)) {
            snprintf(msg, sizeof msg, "'logit_bias' value for token %ld must be a number in [-100, 100]", id);
            bad(e, "logit_bias", NULL, "%s", msg);
            return -1;
        }
        (*ids)[*n] = (int32_t)id;
        (*bias)[(*n)++] = (float)json_number_value(b);
    }
    return 0;
}

/* The text of a message's content: a string, or an array of {"type":"text"} parts. */
static int content_text(json_t *c, srv_buf *out) {
    if (json_is_string(c)) return srv_buf_append(out, json_string_value(c), json_string_length(c)) == 0 ? 0 : -1;
    if (json_is_null(c)) return 0;
    if (!json_is_array(c)) return -1;
    for (size_t i = 0; i < json_array_size(c); i++) {
        json_t *part = json_array_get(c, i), *type = json_object_get(part, "type"), *text;
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0) return -1;
        if (!json_is_string(text = json_object_get(part, "text"))) return -1;
        if (srv_buf_append(out, json_string_value(text), json_string_length(text)) != 0) return -1;
    }
    return 0;
}

/* The name of the call id among the tool_calls of the assistant messages
 * before message i, or NULL. */
static const char *call_name(json_t *messages, size_t i, const char *id) {
    while (i-- > 0) {
        json_t *calls = json_object_get(json_array_get(messages, i), "tool_calls"), *call;
        size_t k;
        json_array_foreach(calls, k, call) {
            const char *cid = json_string_value(json_object_get(call, "id"));
            if (cid != NULL && strcmp(cid, id) == 0)
                return json_string_value(json_object_get(json_object_get(call, "function"), "name"));
        }
    }
    return NULL;
}

/* The chat's messages as the Baichuan format takes them: system, user and
 * assistant as they are; the tools' part (tools.h) at the end of the system
 * message (one is made when there is none); an assistant's tool_calls as
 * the format's call text after its content; a run of tool messages as one
 * user turn of their results. */
static int encode_chat(const srv_model_info *mi, json_t *messages, const srv_tools *tools, srv_request *r,
                       srv_error *e) {
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return bad(e, "messages", NULL, "%s", "'messages' is required: a non-empty array of messages"), -1;
    size_t n = json_array_size(messages);
    if (n > (size_t)mi->max_messages) {
        char msg[96];
        snprintf(msg, sizeof msg, "too many messages: %zu (at most %d)", n, mi->max_messages);
        return bad(e, "messages", NULL, "%s", msg), -1;
    }
    int rc = -1;
    size_t n_msgs = 0;
    bc_chat_message *msgs = calloc(n + 1, sizeof *msgs); /* + the system message the tools may need */
    srv_buf *texts = calloc(n + 1, sizeof *texts);
    const char **ids = calloc(n, sizeof *ids), **names = calloc(n, sizeof *names),
               **contents = calloc(n, sizeof *contents);
    size_t *lens = calloc(n, sizeof *lens);
    srv_buf *tool_texts = calloc(n, sizeof *tool_texts);
    if (msgs == NULL || texts == NULL || ids == NULL || names == NULL || contents == NULL || lens == NULL ||
        tool_texts == NULL) {
        bad(e, NULL, NULL, "%s", "out of memory");
        e->status = 500;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(messages, i), *role = json_object_get(m, "role");
        const char *rs = json_string_value(role);
        if (!json_is_object(m) || rs == NULL) {
            bad(e, "messages", NULL, "%s", "");
            snprintf(e->message, sizeof e->message, "messages[%zu] must be an object with a string 'role'", i);
            goto cleanup;
        }
        if (strcmp(rs, "tool") == 0) {
            /* A run of tool messages: one user turn. */
            size_t k = 0;
            for (; i + k < n; k++) {
                json_t *tm = json_array_get(messages, i + k);
                const char *trs = json_string_value(json_object_get(tm, "role"));
                if (trs == NULL || strcmp(trs, "tool") != 0) break;
                if ((ids[k] = json_string_value(json_object_get(tm, "tool_call_id"))) == NULL) {
                    bad(e, "messages", NULL, "%s", "");
                    snprintf(e->message, sizeof e->message,
                             "messages[%zu].tool_call_id is required (a string) in a message of role 'tool'", i + k);
                    goto cleanup;
                }
                if (content_text(json_object_get(tm, "content"), &tool_texts[k]) != 0) {
                    bad(e, "messages", NULL, "%s", "");
                    snprintf(e->message, sizeof e->message,
                             "messages[%zu].content must be a string or an array of text parts", i + k);
                    goto cleanup;
                }
                names[k] = call_name(messages, i, ids[k]);
                contents[k] = tool_texts[k].data ? tool_texts[k].data : "";
                lens[k] = tool_texts[k].len;
            }
            if (srv_tools_render_results(ids, names, contents, lens, k, &texts[n_msgs]) != 0) goto oom;
            for (size_t j = 0; j < k; j++) srv_buf_free(&tool_texts[j]);
            msgs[n_msgs].role = BC_CHAT_ROLE_USER;
            i += k - 1;
        } else {
            if (strcmp(rs, "system") == 0 || strcmp(rs, "developer") == 0)
                msgs[n_msgs].role = BC_CHAT_ROLE_SYSTEM;
            else if (strcmp(rs, "user") == 0)
                msgs[n_msgs].role = BC_CHAT_ROLE_USER;
            else if (strcmp(rs, "assistant") == 0)
                msgs[n_msgs].role = BC_CHAT_ROLE_ASSISTANT;
            else {
                bad(e, "messages", NULL, "%s", "");
                snprintf(e->message, sizeof e->message,
                         "messages[%zu].role '%.64s' is not supported (system, user, assistant or tool)", i, rs);
                goto cleanup;
            }
            if (content_text(json_object_get(m, "content"), &texts[n_msgs]) != 0) {
                bad(e, "messages", NULL, "%s", "");
                snprintf(e->message, sizeof e->message,
                         "messages[%zu].content must be a string or an array of text parts", i);
                goto cleanup;
            }
            json_t *calls = json_object_get(m, "tool_calls");
            if (msgs[n_msgs].role == BC_CHAT_ROLE_ASSISTANT && calls != NULL && !json_is_null(calls)) {
                char err[200];
                if (texts[n_msgs].len > 0 && srv_buf_puts(&texts[n_msgs], "\n") != 0) goto oom;
                if (srv_tools_render_calls(calls, &texts[n_msgs], err, sizeof err) != 0) {
                    bad(e, "messages", NULL, "%s", "");
                    snprintf(e->message, sizeof e->message, "messages[%zu].%s", i, err);
                    goto cleanup;
                }
            }
        }
        n_msgs++;
    }
    /* The tools' part of the system message. */
    if (tools->tools != NULL && tools->choice != SRV_TOOL_CHOICE_NONE) {
        if (msgs[0].role != BC_CHAT_ROLE_SYSTEM) {
            memmove(msgs + 1, msgs, n_msgs * sizeof *msgs);
            memmove(texts + 1, texts, n_msgs * sizeof *texts);
            memset(&texts[0], 0, sizeof texts[0]);
            msgs[0].role = BC_CHAT_ROLE_SYSTEM;
            n_msgs++;
        }
        if (srv_tools_describe(tools, &texts[0]) != 0) goto oom;
    }
    for (size_t i = 0; i < n_msgs; i++) {
        msgs[i].content = texts[i].data ? texts[i].data : "";
        msgs[i].content_len = texts[i].len;
    }
    /* No truncation of the history: an input over the context is an error. */
    bc_chat_params cp = mi->chat;
    cp.max_length = 1 << 30;
    cp.max_new_tokens = 1;
    char err[256];
    size_t n_ids = 0;
    bc_status st = bc_chat_encode(mi->tok, msgs, n_msgs, cp, NULL, 0, &n_ids, err, sizeof err);
    if (st == BC_STATUS_OK || (st == BC_STATUS_ERROR_ARGUMENT && n_ids > 0)) {
        r->prompt = malloc((n_ids ? n_ids : 1) * sizeof *r->prompt);
        if (r->prompt != NULL)
            st = bc_chat_encode(mi->tok, msgs, n_msgs, cp, r->prompt, n_ids, &n_ids, err, sizeof err);
    }
    if (st != BC_STATUS_OK || r->prompt == NULL) {
        bad(e, "messages", NULL, "messages: %s", r->prompt == NULL && st == BC_STATUS_OK ? "out of memory" : err);
        goto cleanup;
    }
    r->n_prompt = (int)n_ids;
    rc = 0;
    goto cleanup;
oom:
    bad(e, NULL, NULL, "%s", "out of memory");
    e->status = 500;
cleanup:
    for (size_t i = 0; texts != NULL && i < n + 1; i++) srv_buf_free(&texts[i]);
    for (size_t i = 0; tool_texts != NULL && i < n; i++) srv_buf_free(&tool_texts[i]);
    free(texts);
    free(tool_texts);
    free(msgs);
    free(ids);
    free(names);
    free(contents);
    free(lens);
    return rc;
}

static int encode_text(const srv_model_info *mi, const char *text, size_t len, srv_request *r, srv_error *e) {
    size_t n_ids = 0;
    bc_tokenizer_encode(mi->tok, text, len, BC_SWITCH_AUTO, BC_SWITCH_AUTO, NULL, 0, &n_ids);
    r->prompt = malloc((n_ids ? n_ids : 1) * sizeof *r->prompt);
    if (r->prompt == NULL || bc_tokenizer_encode(mi->tok, text, len, BC_SWITCH_AUTO, BC_SWITCH_AUTO, r->prompt, n_ids,
                                                 &n_ids) != BC_STATUS_OK) {
        e->status = 500;
        return bad(e, "prompt", NULL, "%s", "the prompt could not be encoded"), -1;
    }
    r->n_prompt = (int)n_ids;
    return 0;
}

static int encode_completion(const srv_model_info *mi, json_t *prompt, srv_request *r, srv_error *e) {
    if (json_is_array(prompt) && json_array_size(prompt) == 1 && json_is_string(json_array_get(prompt, 0)))
        prompt = json_array_get(prompt, 0);
    if (json_is_string(prompt)) return encode_text(mi, json_string_value(prompt), json_string_length(prompt), r, e);
    if (!json_is_array(prompt) || json_array_size(prompt) == 0)
        return bad(e, "prompt", NULL, "%s",
                   "'prompt' is required: a string, or a non-empty array of token ids (one prompt per request)"),
               -1;
    size_t n = json_array_size(prompt);
    if ((r->prompt = malloc(n * sizeof *r->prompt)) == NULL) {
        e->status = 500;
        return bad(e, "prompt", NULL, "%s", "out of memory"), -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(prompt, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= mi->n_vocab) {
            bad(e, "prompt", NULL, "%s", "");
            snprintf(e->message, sizeof e->message,
                     "prompt[%zu] is not a token id in [0, %d) (one prompt per request: a string or an array of ids)",
                     i, mi->n_vocab);
            return -1;
        }
        r->prompt[i] = (int32_t)json_integer_value(v);
    }
    r->n_prompt = (int)n;
    return 0;
}

static int read_stops(json_t *stop, const char **stops, size_t *n_stops, srv_error *e) {
    *n_stops = 0;
    if (stop == NULL || json_is_null(stop)) return 0;
    if (json_is_string(stop)) {
        if (json_string_length(stop) > 0) stops[(*n_stops)++] = json_string_value(stop);
        return 0;
    }
    if (!json_is_array(stop) || json_array_size(stop) > MAX_STOPS)
        return bad(e, "stop", NULL, "%s", "'stop' must be a string or an array of at most 16 strings"), -1;
    for (size_t i = 0; i < json_array_size(stop); i++) {
        json_t *s = json_array_get(stop, i);
        if (!json_is_string(s)) return bad(e, "stop", NULL, "%s", "'stop' entries must be strings"), -1;
        if (json_string_length(s) > 0) stops[(*n_stops)++] = json_string_value(s);
    }
    return 0;
}

/* A constraint's field name and its compiled grammar. */
typedef struct constraint {
    const char *param; /* the field that gave it, for errors; NULL: none */
    srv_grammar_kind kind;
    char *text; /* malloc'd: the GBNF, or the schema's compact dump as schema_key orders it (NULL: any object) */
    size_t len;
} constraint;

/* A schema with the keywords of every (sub)schema in sorted order, and the
 * names of each `properties` in the order sent (that order is the output's):
 * the grammar cache's key, so that a schema sent again with its keywords in
 * another order is found compiled, while one that lists its properties in
 * another order (another output) is not. Values that are data (enum, const,
 * default, ...) are copied as they are. NULL when out of memory. */
static json_t *schema_key(const json_t *schema);

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Whether keyword `key` of a schema holds a schema, an array of schemas, or
 * an object whose values are schemas. */
static bool holds_schema(const char *key) {
    static const char *const keys[] = {"items",
                                       "additionalProperties",
                                       "not",
                                       "contains",
                                       "propertyNames",
                                       "if",
                                       "then",
                                       "else",
                                       "additionalItems",
                                       "unevaluatedItems",
                                       "unevaluatedProperties"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(key, keys[i]) == 0) return true;
    return false;
}
static bool holds_schema_list(const char *key) {
    return strcmp(key, "anyOf") == 0 || strcmp(key, "oneOf") == 0 || strcmp(key, "allOf") == 0 ||
           strcmp(key, "prefixItems") == 0;
}
static bool holds_schema_map(const char *key) {
    return strcmp(key, "properties") == 0 || strcmp(key, "$defs") == 0 || strcmp(key, "definitions") == 0 ||
           strcmp(key, "patternProperties") == 0 || strcmp(key, "dependentSchemas") == 0;
}

static json_t *schema_key(const json_t *schema) {
    if (!json_is_object(schema)) return json_deep_copy(schema);
    size_t n = json_object_size(schema), k = 0;
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    json_t *out = json_object();
    if (keys == NULL || out == NULL) goto fail;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)schema, key, v) keys[k++] = key;
    qsort(keys, n, sizeof *keys, cmp_str);
    for (k = 0; k < n; k++) {
        v = json_object_get(schema, keys[k]);
        json_t *copy = NULL;
        if (holds_schema(keys[k])) {
            copy = schema_key(v);
        } else if (holds_schema_list(keys[k]) && json_is_array(v)) {
            copy = json_array();
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item) {
                if (copy != NULL && json_array_append_new(copy, schema_key(item)) != 0) {
                    json_decref(copy);
                    copy = NULL;
                }
            }
        } else if (holds_schema_map(keys[k]) && json_is_object(v)) {
            copy = json_object();
            const char *name;
            json_t *sub;
            json_object_foreach(v, name, sub) { /* in the order sent */
                if (copy != NULL && json_object_set_new(copy, name, schema_key(sub)) != 0) {
                    json_decref(copy);
                    copy = NULL;
                }
            }
        } else {
            copy = json_deep_copy(v);
        }
        if (copy == NULL || json_object_set_new(out, keys[k], copy) != 0) goto fail;
    }
    free(keys);
    return out;
fail:
    free(keys);
    json_decref(out);
    return NULL;
}

/* Sets *c from one constraint field; -1 (with *e) when it is malformed or a
 * second constraint. */
static int set_constraint(constraint *c, const char *param, srv_grammar_kind kind, const json_t *value, srv_error *e) {
    if (c->param != NULL) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "'%s' and '%s' both constrain the output: give at most one of response_format "
                 "(json_object or json_schema), grammar and json_schema",
                 c->param, param);
        bad(e, param, NULL, "%s", msg);
        return -1;
    }
    c->param = param;
    c->kind = kind;
    if (value == NULL) return 0;
    if (json_is_string(value)) {
        c->len = json_string_length(value);
        c->text = malloc(c->len + 1);
        if (c->text != NULL) memcpy(c->text, json_string_value(value), c->len + 1);
    } else {
        json_t *key = schema_key(value);
        c->text = key != NULL ? json_dumps(key, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(key);
        c->len = c->text ? strlen(c->text) : 0;
    }
    if (c->text == NULL) {
        bad(e, NULL, NULL, "%s", "out of memory");
        e->status = 500;
        return -1;
    }
    return 0;
}

/* The output constraint: OpenAI's response_format, or llama.cpp's top-level
 * grammar (GBNF) and json_schema; at most one. */
static int read_constraint(json_t *body, constraint *c, srv_error *e) {
    json_t *rf = json_object_get(body, "response_format"), *v;
    if (rf != NULL && !json_is_null(rf)) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        if (!json_is_object(rf) || type == NULL)
            return bad(e, "response_format", NULL, "%s",
                       "'response_format' must be an object with a string 'type' (text, json_object or json_schema)"),
                   -1;
        if (strcmp(type, "json_object") == 0) {
            if (set_constraint(c, "response_format", SRV_GRAMMAR_JSON_SCHEMA, NULL, e) != 0) return -1;
        } else if (strcmp(type, "json_schema") == 0) {
            json_t *js = json_object_get(rf, "json_schema");
            if (!json_is_object(js))
                return bad(e, "response_format.json_schema", NULL, "%s",
                           "'response_format.json_schema' must be an object with 'name' and 'schema'"),
                       -1;
            if ((v = json_object_get(js, "name")) != NULL && !json_is_string(v))
                return bad(e, "response_format.json_schema.name", NULL, "%s",
                           "'response_format.json_schema.name' must be a string"),
                       -1;
            if ((v = json_object_get(js, "strict")) != NULL && !json_is_boolean(v) && !json_is_null(v))
                return bad(e, "response_format.json_schema.strict", NULL, "%s",
                           "'response_format.json_schema.strict' must be a boolean"),
                       -1;
            v = json_object_get(js, "schema");
            if (!json_is_object(v))
                return bad(e, "response_format.json_schema.schema", NULL, "%s",
                           "'response_format.json_schema.schema' must be a JSON Schema object"),
                       -1;
            if (set_constraint(c, "response_format.json_schema.schema", SRV_GRAMMAR_JSON_SCHEMA, v, e) != 0) return -1;
        } else if (strcmp(type, "text") != 0) {
            bad(e, "response_format.type", NULL, "%s", "");
            snprintf(e->message, sizeof e->message,
                     "'response_format.type' '%.64s' is not supported (text, json_object or json_schema)", type);
            return -1;
        }
    }
    if ((v = json_object_get(body, "grammar")) != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) == 0)
            return bad(e, "grammar", NULL, "%s", "'grammar' must be a non-empty string of GBNF"), -1;
        if (set_constraint(c, "grammar", SRV_GRAMMAR_GBNF, v, e) != 0) return -1;
    }
    if ((v = json_object_get(body, "json_schema")) != NULL && !json_is_null(v)) {
        if (!json_is_object(v))
            return bad(e, "json_schema", NULL, "%s", "'json_schema' must be a JSON Schema object"), -1;
        if (set_constraint(c, "json_schema", SRV_GRAMMAR_JSON_SCHEMA, v, e) != 0) return -1;
    }
    return 0;
}

srv_request *srv_openai_parse(const srv_model_info *mi, srv_endpoint endpoint, json_t *body, srv_error *e) {
    memset(e, 0, sizeof *e);
    if (!json_is_object(body)) return bad(e, NULL, NULL, "%s", "the request body must be a JSON object");
    srv_request *r = srv_request_new(); /* freed by its last holder: the connection, the scheduler, the ledger */
    if (r == NULL) {
        e->status = 500;
        return bad(e, NULL, NULL, "%s", "out of memory");
    }
    r->endpoint = endpoint;
    r->logprobs = -1;
    r->tok = mi->tok;
    r->model = mi->name;
    r->created = (long long)srv_wall();

    json_t *v;
    int32_t *bias_ids = NULL; /* logit_bias, handed to the choices' generators */
    float *bias = NULL;
    size_t n_bias = 0;
    constraint con = {0};
    srv_tools tools = {0};
    char *tools_gbnf = NULL;
    long long n = 1;
    if (get_int(body, "n", 1, SRV_MAX_N, &n, e) < 0) goto fail;
    if ((v = json_object_get(body, "stream")) != NULL && !json_is_null(v)) {
        if (!json_is_boolean(v)) {
            bad(e, "stream", NULL, "%s", "'stream' must be a boolean");
            goto fail;
        }
        r->stream = json_is_true(v);
    }
    if ((v = json_object_get(body, "stream_options")) != NULL && !json_is_null(v)) {
        json_t *iu = json_object_get(v, "include_usage");
        if (!json_is_object(v) || (iu != NULL && !json_is_boolean(iu))) {
            bad(e, "stream_options", NULL, "%s", "'stream_options' must be an object; include_usage a boolean");
            goto fail;
        }
        r->include_usage = json_is_true(iu);
    }
    v = json_object_get(body, "user");
    if (v != NULL && !json_is_null(v) && !json_is_string(v)) {
        bad(e, "user", NULL, "%s", "'user' must be a string");
        goto fail;
    }

    /* Sampling: the model's generation_config.json, then the request. */
    bc_sampler_params sp = mi->defaults;
    long long iv;
    int got;
    if (get_number(body, "temperature", 0, 2, &sp.temperature, e) || get_number(body, "top_p", 0, 1, &sp.top_p, e) ||
        get_number(body, "min_p", 0, 1, &sp.min_p, e) ||
        get_number(body, "repetition_penalty", 1e-3, 100, &sp.repetition_penalty, e) ||
        get_number(body, "presence_penalty", -2, 2, &sp.presence_penalty, e) ||
        get_number(body, "frequency_penalty", -2, 2, &sp.frequency_penalty, e))
        goto fail;
    if (sp.top_p <= 0) {
        bad(e, "top_p", NULL, "%s", "'top_p' must be > 0");
        goto fail;
    }
    if ((got = get_int(body, "top_k", 0, 1 << 30, &iv, e)) < 0) goto fail;
    if (got) sp.top_k = (int)iv;
    sp.seed = (uint64_t)(srv_wall() * 1e6) ^ (uint64_t)(uintptr_t)r; /* no seed: a different draw each time */
    if ((got = get_int(body, "seed", INT64_MIN, INT64_MAX, &iv, e)) < 0) goto fail;
    if (got) sp.seed = (uint64_t)iv;

    long long max_tokens = -1;
    if ((got = get_int(body, "max_tokens", 1, 1 << 30, &iv, e)) < 0) goto fail;
    if (got) max_tokens = iv;
    if ((got = get_int(body, "max_completion_tokens", 1, 1 << 30, &iv, e)) < 0) goto fail;
    if (got) max_tokens = iv;

    /* Logprobs: completions take a count; chat takes a flag and top_logprobs. */
    if (endpoint == SRV_ENDPOINT_COMPLETIONS) {
        if ((got = get_int(body, "logprobs", 0, BC_MAX_TOP_LOGPROBS, &iv, e)) < 0) goto fail;
        if (got) r->logprobs = (int)iv;
    } else {
        v = json_object_get(body, "logprobs");
        if (v != NULL && !json_is_null(v) && !json_is_boolean(v)) {
            bad(e, "logprobs", NULL, "%s", "'logprobs' must be a boolean");
            goto fail;
        }
        long long top = 0;
        if (get_int(body, "top_logprobs", 0, BC_MAX_TOP_LOGPROBS, &top, e) < 0) goto fail;
        if (json_is_true(v))
            r->logprobs = (int)top;
        else if (top > 0) {
            bad(e, "top_logprobs", NULL, "%s", "'top_logprobs' needs 'logprobs': true");
            goto fail;
        }
    }

    const char *stops[MAX_STOPS];
    size_t n_stops = 0;
    if (read_stops(json_object_get(body, "stop"), stops, &n_stops, e) != 0) goto fail;
    if (read_logit_bias(json_object_get(body, "logit_bias"), mi->n_vocab, &bias_ids, &bias, &n_bias, e) != 0) goto fail;
    if (read_constraint(body, &con, e) != 0) goto fail;
    if (endpoint == SRV_ENDPOINT_CHAT) {
        const char *param = NULL;
        char terr[400];
        if (srv_tools_read(body, &tools, terr, sizeof terr, &param) != 0) {
            bad(e, param, NULL, "%s", terr);
            goto fail;
        }
        if (tools.choice != SRV_TOOL_CHOICE_NONE && con.param != NULL) {
            snprintf(terr, sizeof terr,
                     "'tools' with tool_choice other than none constrain the output, and so does '%s': give one",
                     con.param);
            bad(e, "tool_choice", NULL, "%s", terr);
            goto fail;
        }
        if (tools.choice != SRV_TOOL_CHOICE_NONE) {
            if ((tools_gbnf = srv_tools_gbnf(&tools, terr, sizeof terr)) == NULL) {
                bad(e, "tools", NULL, "tools: %s", terr);
                goto fail;
            }
            con.param = "tools";
            con.kind = SRV_GRAMMAR_GBNF;
            con.text = tools_gbnf; /* freed with con */
            con.len = strlen(tools_gbnf);
            r->tool_choice = (int)tools.choice;
        }
    }

    /* The input. */
    if (endpoint == SRV_ENDPOINT_CHAT) {
        if (encode_chat(mi, json_object_get(body, "messages"), &tools, r, e) != 0) goto fail;
    } else {
        if (encode_completion(mi, json_object_get(body, "prompt"), r, e) != 0) goto fail;
        if (r->n_prompt == 0) { /* an empty prompt continues from BOS */
            bc_model_info info;
            bc_model_get_info(mi->model, &info);
            r->prompt[0] = info.bos_token_id;
            r->n_prompt = 1;
        }
    }
    /* Text encodes to ids of the tokenizer's vocabulary and the chat format
     * adds the model's role ids: with a tokenizer (--tokenizer) larger than
     * the model's vocabulary some fall outside it, which the forward pass
     * would refuse for the whole batch. Refuse the one request instead. */
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= mi->n_vocab) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "the prompt encodes to token id %d (position %d), outside the model's vocabulary of %d tokens: "
                     "the tokenizer does not match the model",
                     (int)r->prompt[i], i, mi->n_vocab);
            bad(e, endpoint == SRV_ENDPOINT_CHAT ? "messages" : "prompt", "invalid_prompt", "%s", msg);
            goto fail;
        }
    if (r->n_prompt >= mi->n_ctx || (max_tokens > 0 && r->n_prompt + max_tokens > mi->n_ctx)) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "This model's maximum context length is %d tokens. However, you requested %lld tokens (%d in the "
                 "prompt, %lld for the completion). Please reduce the prompt or the completion length.",
                 mi->n_ctx, r->n_prompt + (max_tokens > 0 ? max_tokens : 0), r->n_prompt,
                 max_tokens > 0 ? max_tokens : 0);
        bad(e, endpoint == SRV_ENDPOINT_CHAT ? "messages" : "prompt", "context_length_exceeded", "%s", msg);
        goto fail;
    }
    if (max_tokens < 0) max_tokens = endpoint == SRV_ENDPOINT_COMPLETIONS ? 16 : mi->n_ctx - r->n_prompt;
    if (max_tokens > mi->n_ctx - r->n_prompt) max_tokens = mi->n_ctx - r->n_prompt;
    r->max_tokens = (int)max_tokens;

    char err[512];
    if (con.param != NULL) {
        r->grammar = srv_grammar_get(mi->tok, con.kind, con.text, con.len, err, sizeof err);
        if (r->grammar == NULL) {
            bad(e, con.param, NULL, "%s: ", con.param);
            size_t at = strlen(e->message);
            snprintf(e->message + at, sizeof e->message - at, "%s", err);
            goto fail;
        }
    }
    /* Each choice's generator: the sampling parameters with the request's
     * seed + index (the same seed gives the same n choices), the logit
     * biases, the stop strings, the constraint, max_tokens (fitted to the
     * context above: the scheduler has no other limit) and logprobs. */
    bc_generator_params gp = bc_model_generator_params(mi->model, mi->tok);
    gp.n_vocab = mi->n_vocab;
    gp.max_tokens = r->max_tokens;
    gp.logprobs = r->logprobs;
    gp.bias_ids = bias_ids;
    gp.bias = bias;
    gp.n_bias = n_bias;
    gp.stops = stops;
    gp.n_stops = n_stops;
    gp.grammar = r->grammar != NULL ? srv_grammar_compiled(r->grammar) : NULL;
    r->n_choices = (int)n;
    r->choices = calloc((size_t)n, sizeof *r->choices);
    if (r->choices == NULL) goto oom;
    for (int i = 0; i < r->n_choices; i++) {
        srv_choice *c = &r->choices[i];
        c->req = r;
        c->index = i;
        /* Room for the generated ids after the prompt's (see srv_choice.ids). */
        c->ids = malloc(((size_t)r->n_prompt + (size_t)r->max_tokens + 1) * sizeof *c->ids);
        if (c->ids == NULL) goto oom;
        memcpy(c->ids, r->prompt, (size_t)r->n_prompt * sizeof *c->ids);
        gp.sampler = sp;
        gp.sampler.seed = sp.seed + (uint64_t)i;
        bc_status st = bc_generator_init(mi->tok, gp, &c->gen, err, sizeof err);
        if (st == BC_STATUS_ERROR_MEMORY) goto oom;
        if (st != BC_STATUS_OK) {
            /* The biases were checked above and the grammar is mi->tok's:
             * what is left to refuse is the sampling parameters or a stop
             * string. */
            if (bc_sampler_params_check(gp.sampler) != NULL)
                bad(e, NULL, NULL, "%s", "the sampling parameters are not usable");
            else
                bad(e, "stop", NULL, "stop: %.400s", err);
            goto fail;
        }
    }
    free(con.text);
    free(bias_ids);
    free(bias);
    srv_tools_free(&tools);
    return r;
oom:
    bad(e, NULL, NULL, "%s", "out of memory");
    e->status = 500;
fail:
    free(con.text);
    free(bias_ids);
    free(bias);
    srv_tools_free(&tools);
    srv_request_unref(r);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Logprobs                                                                 */
/* ------------------------------------------------------------------------ */

/* {"token", "logprob", "bytes"} for id: its piece as text (U+2581 as a
 * space; a byte piece of a partial character as "\xNN"). */
static json_t *token_entry(const bc_tokenizer *tok, int32_t id, double logprob) {
    size_t len = 0;
    bc_piece_type type;
    const char *piece = bc_tokenizer_piece(tok, id, &len, &type);
    srv_buf text = {0};
    json_t *bytes = json_array();
    unsigned int byte;
    if (piece != NULL && type == BC_PIECE_TYPE_BYTE && sscanf(piece, "<0x%02X>", &byte) == 1) {
        if (byte < 0x80)
            srv_buf_append(&text, (char[1]){(char)byte}, 1);
        else
            srv_buf_printf(&text, "\\x%02x", byte);
        json_array_append_new(bytes, json_integer(byte));
    } else if (piece != NULL && type != BC_PIECE_TYPE_CONTROL) {
        for (size_t i = 0; i < len; i++) {
            if (i + 2 < len && (unsigned char)piece[i] == 0xE2 && (unsigned char)piece[i + 1] == 0x96 &&
                (unsigned char)piece[i + 2] == 0x81) {
                srv_buf_append(&text, " ", 1);
                i += 2;
            } else
                srv_buf_append(&text, piece + i, 1);
        }
        for (size_t i = 0; i < text.len; i++) json_array_append_new(bytes, json_integer((unsigned char)text.data[i]));
    }
    json_t *o = json_pack("{s:s%, s:f, s:o}", "token", text.data ? text.data : "", text.len, "logprob", logprob,
                          "bytes", bytes);
    srv_buf_free(&text);
    return o;
}

json_t *srv_openai_logprobs(const srv_choice *c, const bc_generated *step, size_t text_offset) {
    const srv_request *r = c->req;
    if (r->logprobs < 0) return NULL;
    json_t *entry = token_entry(r->tok, step->id, step->logprob);
    json_t *top = json_array();
    for (int k = 0; k < step->n_top; k++)
        json_array_append_new(top, token_entry(r->tok, step->top[k].id, step->top[k].logprob));
    json_object_set_new(entry, "top_logprobs", top);
    json_object_set_new(entry, "text_offset", json_integer((json_int_t)text_offset));
    return entry;
}

/* Completions' legacy shape from a list of entries. */
static json_t *legacy_logprobs(json_t *entries) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        json_array_append(tokens, json_object_get(e, "token"));
        json_array_append(lps, json_object_get(e, "logprob"));
        json_array_append(offs, json_object_get(e, "text_offset"));
        json_t *top = json_object(), *t;
        size_t j;
        json_array_foreach(json_object_get(e, "top_logprobs"), j, t) {
            json_object_set(top, json_string_value(json_object_get(t, "token")), json_object_get(t, "logprob"));
        }
        json_array_append_new(tops, top);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

/* Chat's shape: {"content": [...]} without the text_offset field. */
static json_t *chat_logprobs(json_t *entries) {
    json_t *content = json_array(), *e;
    size_t i;
    json_array_foreach(entries, i, e) {
        json_t *c = json_deep_copy(e);
        json_object_del(c, "text_offset");
        json_array_append_new(content, c);
    }
    return json_pack("{s:o}", "content", content);
}

/* ------------------------------------------------------------------------ */
/* Chunks and bodies                                                        */
/* ------------------------------------------------------------------------ */

/* OpenAI's usage object: prompt_tokens counts every prompt token (once,
 * however many choices share it), of which
 * prompt_tokens_details.cached_tokens were found in the prefix cache;
 * completion_tokens is summed over the choices. */
static json_t *usage_json(const srv_request *r) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", r->n_prompt, "completion_tokens", r->n_generated,
                     "total_tokens", r->n_prompt + r->n_generated, "prompt_tokens_details", "cached_tokens",
                     r->n_cached_prompt);
}

/* The response's "model": the adapter's name, or the base model's. */
static const char *response_model(const srv_request *r) {
    return r->adapter != NULL ? srv_adapter_name(r->adapter) : r->model;
}

static json_t *chunk_base(const srv_request *r) {
    json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "id", r->id, "object",
                          r->endpoint == SRV_ENDPOINT_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)r->created, "model", response_model(r));
    if (r->include_usage) json_object_set_new(o, "usage", json_null());
    return o;
}

static void send_event(srv_request *r, json_t *o, srv_buf *into) {
    char *s = srv_json_dump(o);
    srv_buf ev = {0};
    if (s != NULL) srv_buf_printf(&ev, "data: %s\n\n", s);
    free(s);
    if (into != NULL)
        srv_buf_append(into, ev.data, ev.len);
    else if (ev.len)
        srv_request_publish(r, ev.data, ev.len, false);
    srv_buf_free(&ev);
    json_decref(o);
}

/* A chunk of one choice: chat's delta, or completions' text. */
static json_t *choice_chunk(const srv_choice *c, json_t *delta_or_text, json_t *logprobs, const char *finish) {
    const srv_request *r = c->req;
    json_t *o = chunk_base(r);
    const char *key = r->endpoint == SRV_ENDPOINT_CHAT ? "delta" : "text";
    json_object_set_new(o, "choices",
                        json_pack("[{s:i, s:o, s:o, s:o}]", "index", c->index, key, delta_or_text, "logprobs",
                                  logprobs ? logprobs : json_null(), "finish_reason",
                                  finish ? json_string(finish) : json_null()));
    return o;
}

/* With tools the first delta's content is null, as OpenAI's: the reply
 * may turn out to be calls. */
static void send_role_chunk(srv_choice *c, srv_buf *into) {
    json_t *delta = c->req->tool_choice != SRV_TOOL_CHOICE_NONE
                        ? json_pack("{s:s, s:n}", "role", "assistant", "content")
                        : json_pack("{s:s, s:s}", "role", "assistant", "content", "");
    send_event(c->req, choice_chunk(c, delta, NULL, NULL), into);
    c->role_sent = true;
}

/* A call's id: the response's id with the choice and the call's index. */
static void call_id(const srv_choice *c, int k, char *out, size_t size) {
    const char *dash = strchr(c->req->id, '-');
    snprintf(out, size, "call_%s_%d_%d", dash ? dash + 1 : c->req->id, c->index, k);
}

static json_t *call_json(const srv_choice *c, int k) {
    const srv_tool_call *call = &c->tools.calls[k];
    char id[96];
    call_id(c, k, id, sizeof id);
    return json_pack("{s:s, s:s, s:{s:s%, s:s%}}", "id", id, "type", "function", "function", "name",
                     call->name.data ? call->name.data : "", call->name.len, "arguments",
                     call->args.data ? call->args.data : "", call->args.len);
}

/* The stream's delta of what the tool scanner read since the last one:
 * content text, a call's id, type and name once its name is complete
 * (with arguments ""), then pieces of its arguments. NULL when there is
 * nothing new. */
static json_t *tools_delta(srv_choice *c) {
    srv_tool_scan *s = &c->tools;
    json_t *delta = json_object(), *calls = json_array();
    if (s->text.len > c->text_sent) {
        json_object_set_new(delta, "content", json_stringn(s->text.data + c->text_sent, s->text.len - c->text_sent));
        c->text_sent = s->text.len;
    }
    for (int k = 0; k < s->n_calls; k++) {
        srv_tool_call *call = &s->calls[k];
        if (!call->named) break; /* its arguments come after its name */
        json_t *entry = NULL;
        if (!call->header_sent) {
            char id[96];
            call_id(c, k, id, sizeof id);
            entry = json_pack("{s:i, s:s, s:s, s:{s:s%, s:s}}", "index", k, "id", id, "type", "function", "function",
                              "name", call->name.data ? call->name.data : "", call->name.len, "arguments", "");
            call->header_sent = true;
        }
        if (call->args.len > call->args_sent) {
            json_t *piece = json_stringn(call->args.data + call->args_sent, call->args.len - call->args_sent);
            call->args_sent = call->args.len;
            if (entry != NULL)
                json_object_set_new(json_object_get(entry, "function"), "arguments", piece);
            else
                entry = json_pack("{s:i, s:{s:o}}", "index", k, "function", "arguments", piece);
        }
        if (entry != NULL) json_array_append_new(calls, entry);
    }
    if (json_array_size(calls) > 0)
        json_object_set_new(delta, "tool_calls", calls);
    else
        json_decref(calls);
    if (json_object_size(delta) == 0) {
        json_decref(delta);
        return NULL;
    }
    return delta;
}

static void emit_tools(srv_choice *c, const char *text, size_t len, json_t *lp) {
    srv_request *r = c->req;
    srv_tool_scan_feed(&c->tools, text, len);
    if (!r->stream) {
        if (lp != NULL) {
            if (c->lp_content == NULL) c->lp_content = json_array();
            json_array_append(c->lp_content, lp);
        }
        json_decref(lp);
        return;
    }
    if (!c->role_sent) send_role_chunk(c, NULL);
    json_t *delta = tools_delta(c);
    if (delta == NULL && lp == NULL) return;
    json_t *entries = lp != NULL ? json_pack("[o]", lp) : NULL;
    send_event(r, choice_chunk(c, delta ? delta : json_object(), entries ? chat_logprobs(entries) : NULL, NULL), NULL);
    json_decref(entries);
}

const char *srv_openai_finish_reason(srv_choice *c, const char *reason) {
    if (c->req->tool_choice == SRV_TOOL_CHOICE_NONE || reason == NULL || strcmp(reason, "stop") != 0) return reason;
    srv_tool_scan_end(&c->tools);
    return c->tools.n_calls > 0 ? "tool_calls" : reason;
}

void srv_openai_emit_text(srv_choice *c, const char *text, size_t len, json_t *lp) {
    srv_request *r = c->req;
    if (r->endpoint == SRV_ENDPOINT_CHAT && r->tool_choice != SRV_TOOL_CHOICE_NONE) {
        emit_tools(c, text, len, lp);
        return;
    }
    if (!r->stream) {
        srv_buf_append(&c->text, text, len);
        if (lp != NULL) {
            if (c->lp_content == NULL) c->lp_content = json_array();
            json_array_append(c->lp_content, lp);
        }
        json_decref(lp);
        return;
    }
    if (r->endpoint == SRV_ENDPOINT_CHAT && !c->role_sent) send_role_chunk(c, NULL);
    if (len == 0 && lp == NULL) return;
    json_t *entries = NULL;
    if (lp != NULL) entries = json_pack("[o]", lp);
    json_t *o;
    if (r->endpoint == SRV_ENDPOINT_CHAT)
        o = choice_chunk(c, json_pack("{s:s%}", "content", text ? text : "", len),
                         entries ? chat_logprobs(entries) : NULL, NULL);
    else
        o = choice_chunk(c, json_stringn(text ? text : "", len), entries ? legacy_logprobs(entries) : NULL, NULL);
    json_decref(entries);
    send_event(r, o, NULL);
}

/* The stream's last chunk of a choice: an empty delta or text with its
 * finish_reason. */
static void send_finish_chunk(srv_choice *c, srv_buf *into) {
    if (c->finish_sent) return;
    if (c->req->endpoint == SRV_ENDPOINT_CHAT && !c->role_sent) send_role_chunk(c, into);
    const char *finish = c->finish_reason ? c->finish_reason : "stop";
    send_event(c->req,
               choice_chunk(c, c->req->endpoint == SRV_ENDPOINT_CHAT ? json_object() : json_string(""), NULL, finish),
               into);
    c->finish_sent = true;
}

void srv_openai_choice_done(srv_choice *c) {
    if (c->req->stream) send_finish_chunk(c, NULL);
}

/* A choice of the non-streamed body. */
static json_t *body_choice(srv_choice *c) {
    const srv_request *r = c->req;
    const char *finish = c->finish_reason ? c->finish_reason : "stop";
    const char *text = c->text.data ? c->text.data : "";
    if (r->logprobs >= 0 && c->lp_content == NULL) c->lp_content = json_array();
    if (r->endpoint == SRV_ENDPOINT_CHAT && r->tool_choice != SRV_TOOL_CHOICE_NONE) {
        /* content null when there is no text; tool_calls only when there are calls. */
        srv_tool_scan *s = &c->tools;
        srv_tool_scan_end(s);
        json_t *message = json_pack("{s:s, s:o}", "role", "assistant", "content",
                                    s->mode == 1 ? json_stringn(s->text.data, s->text.len) : json_null());
        if (s->n_calls > 0) {
            json_t *calls = json_array();
            for (int k = 0; k < s->n_calls; k++) json_array_append_new(calls, call_json(c, k));
            json_object_set_new(message, "tool_calls", calls);
        }
        return json_pack("{s:i, s:o, s:o, s:s}", "index", c->index, "message", message, "logprobs",
                         r->logprobs >= 0 ? chat_logprobs(c->lp_content) : json_null(), "finish_reason", finish);
    }
    if (r->endpoint == SRV_ENDPOINT_CHAT)
        return json_pack("{s:i, s:{s:s, s:s%}, s:o, s:s}", "index", c->index, "message", "role", "assistant", "content",
                         text, c->text.len, "logprobs", r->logprobs >= 0 ? chat_logprobs(c->lp_content) : json_null(),
                         "finish_reason", finish);
    return json_pack("{s:s%, s:i, s:o, s:s}", "text", text, c->text.len, "index", c->index, "logprobs",
                     r->logprobs >= 0 ? legacy_logprobs(c->lp_content) : json_null(), "finish_reason", finish);
}

void srv_openai_finish(srv_request *r, srv_buf *tail) {
    if (r->stream) {
        for (int i = 0; i < r->n_choices; i++) send_finish_chunk(&r->choices[i], tail);
        if (r->include_usage) {
            json_t *o = chunk_base(r);
            json_object_set_new(o, "choices", json_array());
            json_object_set_new(o, "usage", usage_json(r));
            send_event(r, o, tail);
        }
        srv_buf_puts(tail, "data: [DONE]\n\n");
        return;
    }
    json_t *choices = json_array();
    for (int i = 0; i < r->n_choices; i++) json_array_append_new(choices, body_choice(&r->choices[i]));
    json_t *o =
        json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", r->id, "object",
                  r->endpoint == SRV_ENDPOINT_CHAT ? "chat.completion" : "text_completion", "created",
                  (json_int_t)r->created, "model", response_model(r), "choices", choices, "usage", usage_json(r));
    char *s = srv_json_dump(o);
    if (s != NULL) srv_buf_puts(tail, s);
    free(s);
    json_decref(o);
}

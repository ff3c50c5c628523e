/*
 * tools.h - tool calling for a model without tool tokens (tools.c): the
 * request's tools and tool_choice checked, the tools and past calls and
 * results written into the chat as text, the grammar that constrains a
 * reply to calls (or text), and a scanner that reads the calls out of the
 * reply as it streams. Used by the server (openai.c) and `baichuan chat
 * --tools`.
 *
 * The textual format (server/README.md, "Tool calling"):
 *   - the tools are listed at the end of the system message, after the
 *     line "# Tools", one JSON object {"name", "description", "parameters"}
 *     per line;
 *   - a reply that calls is exactly the JSON object
 *     {"tool_calls": [{"name": NAME, "arguments": {...}}, ...]} and
 *     nothing else; an assistant message with tool_calls is written so;
 *   - tool messages become one user turn holding
 *     {"tool_results": [{"tool_call_id", "name", "content"}, ...]}.
 */
#ifndef BC_SERVER_TOOLS_H
#define BC_SERVER_TOOLS_H

#include "util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SRV_MAX_TOOLS          32 /* the JSON Schema converter's anyOf limit */
#define SRV_MAX_PARALLEL_CALLS 16 /* calls in one reply when parallel_tool_calls */

typedef enum srv_tool_choice {
    SRV_TOOL_CHOICE_NONE = 0,     /* text only; the tools are not listed */
    SRV_TOOL_CHOICE_AUTO = 1,     /* calls or text, as the model starts */
    SRV_TOOL_CHOICE_REQUIRED = 2, /* one call or more, to any of the tools */
    SRV_TOOL_CHOICE_NAMED = 3,    /* calls to the one named tool */
} srv_tool_choice;

/* A request's tools. */
typedef struct srv_tools {
    json_t *tools; /* (a reference) the request's tools array, checked; NULL: none */
    int n_tools;
    srv_tool_choice choice;
    int named;     /* SRV_TOOL_CHOICE_NAMED: the tool's index */
    bool parallel; /* parallel_tool_calls (default true) */
} srv_tools;

/* Reads tools, tool_choice and parallel_tool_calls from a request body into
 * *t (zeroed first). Returns 0, or -1 with a message in err naming the
 * field and *param the top-level field ("tools", "tool_choice",
 * "parallel_tool_calls"). A tool's parameters are converted once to check
 * them: an unsupported keyword is refused naming the tool and the JSON
 * pointer. */
int srv_tools_read(json_t *body, srv_tools *t, char *err, size_t err_size, const char **param);
/* Reads a JSON array of tools (the CLI's --tools file) with choice auto. */
int srv_tools_from_array(json_t *tools, srv_tools *t, char *err, size_t err_size);
void srv_tools_free(srv_tools *t);

/* Appends the tools' part of the system message (after a blank line when
 * out holds text already). Nothing with choice none. 0, or -1 out of memory. */
int srv_tools_describe(const srv_tools *t, srv_buf *out);
/* Appends an assistant message's tool_calls (OpenAI's array) as the reply
 * text of the format. -1 with err when it is malformed. */
int srv_tools_render_calls(json_t *tool_calls, srv_buf *out, char *err, size_t err_size);
/* Appends the user turn of n tool results. names[i] may be NULL. */
int srv_tools_render_results(const char *const *ids, const char *const *names, const char *const *contents,
                             const size_t *content_lens, size_t n, srv_buf *out);

/* The GBNF that constrains a reply under t (malloc'd), NULL with err when a
 * tool's parameters do not convert; NULL with err "" for choice none (no
 * constraint). */
char *srv_tools_gbnf(const srv_tools *t, char *err, size_t err_size);

/* One call read from a reply. */
typedef struct srv_tool_call {
    srv_buf name; /* the function's name (complete when named) */
    srv_buf args; /* the arguments' JSON text, as the model wrote it (complete when args_done) */
    bool named, args_done;
    /* The streaming side's: what was sent already. */
    bool header_sent;
    size_t args_sent;
} srv_tool_call;

/* The reader of a reply: text, or calls in the format above. */
typedef struct srv_tool_scan {
    int mode;     /* 0: nothing yet; 1: text; 2: calls */
    srv_buf text; /* mode 1: the reply's text */
    srv_tool_call *calls;
    int n_calls, cap_calls;
    /* The lexer of mode 2. */
    int depth;
    bool in_string, escape, scalar;
    int where;    /* inside a call object: see tools.c */
    char key[16]; /* the key being read inside a call object (truncated) */
    size_t key_len;
    bool failed; /* out of memory */
} srv_tool_scan;

/* Feeds n bytes of the reply. */
void srv_tool_scan_feed(srv_tool_scan *s, const char *p, size_t n);
/* The reply has ended. */
void srv_tool_scan_end(srv_tool_scan *s);
void srv_tool_scan_free(srv_tool_scan *s);

#endif /* BC_SERVER_TOOLS_H */

/*
 * chat_input.c - the conversation `baichuan chat-template` reads on stdin:
 * a JSON array of {"role", "content"} objects. Apart from the command so
 * that fuzz/fuzz_chat.c runs the very same checks.
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_conversation(json_t *root, bc_chat_message **out, size_t *n_out) {
    if (!json_is_array(root)) return cli_error("chat-template: stdin: expected a JSON array of messages");
    size_t n = json_array_size(root);
    if (n == 0) return cli_error("chat-template: stdin: the conversation has no messages");
    bc_chat_message *m = calloc(n, sizeof *m);
    if (m == NULL) return cli_error("out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(root, i);
        json_t *role = json_object_get(msg, "role"), *content = json_object_get(msg, "content");
        const char *why = NULL;
        if (!json_is_object(msg))
            why = "is not a JSON object";
        else if (!json_is_string(role))
            why = "has no \"role\" string";
        else if (!json_is_string(content))
            why = "has no \"content\" string";
        if (why != NULL) {
            free(m);
            return cli_error("chat-template: message %zu %s", i + 1, why);
        }
        const char *r = json_string_value(role);
        if (strcmp(r, "system") == 0) {
            if (i != 0) {
                free(m);
                return cli_error("chat-template: message %zu: a system message must be the first message", i + 1);
            }
            m[i].role = BC_CHAT_ROLE_SYSTEM;
        } else if (strcmp(r, "user") == 0) {
            m[i].role = BC_CHAT_ROLE_USER;
        } else if (strcmp(r, "assistant") == 0) {
            m[i].role = BC_CHAT_ROLE_ASSISTANT;
        } else {
            free(m);
            return cli_error("chat-template: message %zu: unknown role \"%s\" (expected system, user or assistant)",
                             i + 1, r);
        }
        m[i].content = json_string_value(content);
        m[i].content_len = json_string_length(content);
    }
    *out = m;
    *n_out = n;
    return 0;
}

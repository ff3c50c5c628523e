/*
 * chat.c - the Baichuan chat input (build_chat_input of the Chat models'
 * generation_utils.py), as DESIGN.md states it.
 *
 *   input  = encode(system) + history (+ assistant_token_id when the last
 *            message is not the assistant's), cut from the left to max_input
 *   round  = a user message and what follows it up to the next user
 *            message; each message is its role token + encode(content)
 *   budget = max_input = max_length - max_new_tokens,
 *            max_history = max_input - len(encode(system)); rounds are
 *            taken newest first while the history is empty or the round
 *            fits, stopping once the history reaches max_history
 *
 * Contents are encoded like bc_tokenizer_encode() without BOS or EOS.
 * Rounds older than the first one left out are never encoded.
 */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

bc_chat_params bc_chat_default_params(const bc_tokenizer *tok) {
    bc_chat_params p;
    p.user_token_id = tok ? tok->gen.user_token_id : 195;
    p.assistant_token_id = tok ? tok->gen.assistant_token_id : 196;
    p.max_length = tok ? tok->n_ctx_train : 4096;
    p.max_new_tokens = tok ? tok->gen.max_new_tokens : 2048;
    return p;
}

static const char *role_name(bc_chat_role role) {
    switch (role) {
    case BC_CHAT_ROLE_SYSTEM: return "system";
    case BC_CHAT_ROLE_USER: return "user";
    case BC_CHAT_ROLE_ASSISTANT: return "assistant";
    }
    return "?";
}

/* Appends role token + encode(content) of messages[first, last) to v. */
static int encode_round(const bc_tokenizer *tok, const bc_chat_message *m, size_t first, size_t last,
                        bc_chat_params params, bc__ids *v) {
    for (size_t i = first; i < last; i++) {
        int32_t role_id = m[i].role == BC_CHAT_ROLE_USER ? params.user_token_id : params.assistant_token_id;
        if (bc__ids_push(v, role_id) != 0 || bc__tokenizer_encode(tok, m[i].content, m[i].content_len, v, NULL) != 0)
            return -1;
    }
    return 0;
}

static int build(const bc_tokenizer *tok, const bc_chat_message *m, size_t n, bc_chat_params params, bc__ids *out,
                 bc__err *err) {
    if (n == 0) return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT, "chat: no messages");
    for (size_t i = 0; i < n; i++) {
        if (m[i].role != BC_CHAT_ROLE_SYSTEM && m[i].role != BC_CHAT_ROLE_USER && m[i].role != BC_CHAT_ROLE_ASSISTANT)
            return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT, "chat: message %zu has an unknown role (%d)", i + 1,
                              (int)m[i].role);
        if (m[i].role == BC_CHAT_ROLE_SYSTEM && i != 0)
            return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT,
                              "chat: message %zu is a system message; only the first message may be one", i + 1);
        if (m[i].content == NULL && m[i].content_len > 0)
            return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT, "chat: message %zu (%s) has no content", i + 1,
                              role_name(m[i].role));
    }
    if (params.user_token_id < 0 || params.user_token_id >= tok->n_vocab || params.assistant_token_id < 0 ||
        params.assistant_token_id >= tok->n_vocab)
        return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT,
                          "chat: role token ids (user %d, assistant %d) must lie in the vocabulary [0, %d)",
                          (int)params.user_token_id, (int)params.assistant_token_id, (int)tok->n_vocab);
    if (params.max_new_tokens < 0 || params.max_length <= 0 || params.max_new_tokens >= params.max_length)
        return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT,
                          "chat: max_new_tokens %d leaves no room for the input in a context of %d tokens",
                          params.max_new_tokens, params.max_length);
    const long long max_input = (long long)params.max_length - params.max_new_tokens;

    /* System tokens go first into out; the history is collected newest
     * round first, each round reversed, and reversed once at the end. */
    bc__ids history = {0}, round = {0};
    int rc = 0;
    size_t first = 0;
    if (m[0].role == BC_CHAT_ROLE_SYSTEM) {
        if (bc__tokenizer_encode(tok, m[0].content, m[0].content_len, out, NULL) != 0) goto oom;
        first = 1;
    }
    const long long max_history = max_input - (long long)out->n;

    for (size_t end = n; end > first;) { /* the round is [start, end) */
        size_t start = end - 1;
        while (start > first && m[start].role != BC_CHAT_ROLE_USER) start--;
        round.n = 0;
        if (encode_round(tok, m, start, end, params, &round) != 0) goto oom;
        if (history.n != 0 && (long long)(history.n + round.n) > max_history) break;
        for (size_t i = round.n; i-- > 0;)
            if (bc__ids_push(&history, round.ids[i]) != 0) goto oom;
        if ((long long)history.n >= max_history) break;
        end = start;
    }
    for (size_t i = history.n; i-- > 0;)
        if (bc__ids_push(out, history.ids[i]) != 0) goto oom;
    if (m[n - 1].role != BC_CHAT_ROLE_ASSISTANT && bc__ids_push(out, params.assistant_token_id) != 0) goto oom;

    /* Cut from the left. */
    if ((long long)out->n > max_input) {
        size_t cut = out->n - (size_t)max_input;
        memmove(out->ids, out->ids + cut, (size_t)max_input * sizeof *out->ids);
        out->n = (size_t)max_input;
    }
    goto done;
oom:
    rc = bc__errorf(err, BC_STATUS_ERROR_MEMORY, "chat: out of memory");
done:
    free(history.ids);
    free(round.ids);
    return rc;
}

bc_status bc_chat_encode(const bc_tokenizer *tok, const bc_chat_message *messages, size_t n_messages,
                         bc_chat_params params, int32_t *ids, size_t ids_cap, size_t *n_ids, char *err_buf,
                         size_t err_size) {
    bc__err err = {BC_STATUS_OK, ""};
    if (n_ids != NULL) *n_ids = 0;
    if (tok == NULL || n_ids == NULL || (messages == NULL && n_messages > 0) || (ids == NULL && ids_cap > 0)) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT, "bc_chat_encode: invalid arguments");
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    bc__ids v = {0};
    if (build(tok, messages, n_messages, params, &v, &err) != 0) {
        free(v.ids);
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    *n_ids = v.n;
    size_t n_copy = v.n < ids_cap ? v.n : ids_cap;
    if (n_copy > 0) memcpy(ids, v.ids, n_copy * sizeof *ids);
    free(v.ids);
    if (v.n > ids_cap) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT, "chat: %zu ids do not fit in a buffer of %zu", v.n, ids_cap);
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    return BC_STATUS_OK;
}

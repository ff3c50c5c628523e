/*
 * openai.h - the OpenAI API shapes (openai.c): request bodies of
 * /v1/completions and /v1/chat/completions parsed into srv_requests, and
 * the chunks and bodies that go back.
 */
#ifndef BC_OPENAI_H
#define BC_OPENAI_H

#include "baichuan.h"
#include "request.h"
#include "util.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The served model as the parser sees it. */
typedef struct srv_model_info {
    const char *name;
    const bc_model *model;
    const bc_tokenizer *tok;
    bc_sampler_params defaults; /* generation_config.json */
    bc_chat_params chat;
    int n_vocab; /* ids the sampler may pick */
    int n_ctx;
    int max_messages;
    srv_adapters *adapters; /* the LoRA adapters served by name beside the base */
} srv_model_info;

/* An error to send: status, message, type, param, code. */
typedef struct srv_error {
    int status;
    char message[512];
    const char *type;
    const char *param;
    const char *code;
} srv_error;

/* Builds a request from a parsed body. NULL with *e filled on a bad request. */
srv_request *srv_openai_parse(const srv_model_info *mi, srv_endpoint endpoint, json_t *body, srv_error *e);

/* The SSE event or body pieces the engine emits for choice c. */
void srv_openai_emit_text(srv_choice *c, const char *text, size_t len, json_t *lp);
/* The logprobs entry of the token a step generated (not the eos id): its
 * log-probability and its top ids' (the generator's, as the request's
 * logprobs asked), and text_offset, the bytes of text before it. NULL when
 * the request wants none. */
json_t *srv_openai_logprobs(const srv_choice *c, const bc_generated *step, size_t text_offset);
/* The finish_reason of choice c that ended with reason: "tool_calls" for
 * "stop" when the reply called tools, else reason. */
const char *srv_openai_finish_reason(srv_choice *c, const char *reason);
/* A streamed choice that ended before the request's last: its finish chunk
 * goes out now (no-op without streaming). */
void srv_openai_choice_done(srv_choice *c);
/* The final bytes (the finish chunks not sent yet, usage and [DONE], or the
 * whole body with every choice in index order). */
void srv_openai_finish(srv_request *r, srv_buf *tail);

#endif /* BC_OPENAI_H */

/*
 * generator.c - the generation step: from a row of logits to the next id,
 * the text it makes safe to show and how the text ends (baichuan.h,
 * "Generation"). The one place that orders sampling, recording,
 * log-probabilities, detokenizing, stop strings and the token limit, for
 * the CLI (run, chat) and the server's choices alike.
 *
 *   params     defaults, and the model's
 *   lifecycle  init / free / reset, the prompt, the limit
 *   logprobs   log-softmax of the raw logits and the top ids
 *   the step   draw, record, detokenize, stop strings, the limit, the end
 */
#include "base/base.h"
#include "grammar/grammar.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bc_generator {
    int n_vocab; /* ids the sampler may draw */
    int32_t eos_id;
    int max_tokens; /* -1: no limit */
    int logprobs;   /* -1: off; else how many top ids */
    bc_sampler *sampler;
    bc_grammar_matcher *matcher; /* NULL without a grammar; the sampler masks with it and advances it */
    uint32_t *allowed;           /* ((n_vocab + 31) / 32) a grammar's mask, made only to tell its errors apart */
    bc_detokenizer *detok;
    bc_stop_matcher *stop;

    int n_generated;
    bc_finish finish;
    bc_status failed; /* a failed step's status; BC_STATUS_OK while it works */
    char msg[256];    /* the last failed call's message */
    bc__buf text;     /* what the last call released: a step's text, then its tail */
};

/* ------------------------------------------------------------------------ */
/* Parameters                                                               */
/* ------------------------------------------------------------------------ */

bc_generator_params bc_generator_default_params(void) {
    bc_generator_params p;
    memset(&p, 0, sizeof p);
    p.sampler = bc_sampler_default_params();
    p.n_vocab = 0;
    p.eos_id = -1;
    p.max_tokens = -1;
    p.logprobs = -1;
    return p;
}

bc_generator_params bc_model_generator_params(const bc_model *model, const bc_tokenizer *tok) {
    bc_generator_params p = bc_generator_default_params();
    bc_model_info info;
    bc_model_get_info(model, &info);
    bc_tokenizer_info ti;
    bc_tokenizer_get_info(tok, &ti);
    p.sampler = bc_model_sampler_params(model);
    p.n_vocab = ti.n_vocab < info.n_vocab ? ti.n_vocab : info.n_vocab;
    p.eos_id = info.eos_token_id;
    return p;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

bc_status bc_generator_init(const bc_tokenizer *tok, bc_generator_params params, bc_generator **out, char *err,
                            size_t err_size) {
    bc__err e = {0};
    bc_generator *g = NULL;
    if (out == NULL || tok == NULL) {
        bc__errorf(&e, BC_STATUS_ERROR_ARGUMENT, "no tokenizer or no place for the generator");
        goto fail;
    }
    *out = NULL;
    bc_tokenizer_info ti;
    bc_tokenizer_get_info(tok, &ti);
    int n_vocab = params.n_vocab == 0 ? ti.n_vocab : params.n_vocab;
    const char *bad = bc_sampler_params_check(params.sampler);
    if (bad != NULL) {
        bc__errorf(&e, BC_STATUS_ERROR_ARGUMENT, "%s", bad);
        goto fail;
    }
    if (n_vocab < 1 || n_vocab > ti.n_vocab) {
        bc__errorf(&e, BC_STATUS_ERROR_ARGUMENT, "n_vocab %d is outside [1, %d], the tokenizer's vocabulary",
                   params.n_vocab, ti.n_vocab);
        goto fail;
    }
    if (params.logprobs < -1 || params.logprobs > BC_MAX_TOP_LOGPROBS) {
        bc__errorf(&e, BC_STATUS_ERROR_ARGUMENT, "logprobs %d is outside [-1, %d]", params.logprobs,
                   BC_MAX_TOP_LOGPROBS);
        goto fail;
    }
    if (params.grammar != NULL && params.grammar->tok != tok) {
        bc__errorf(&e, BC_STATUS_ERROR_ARGUMENT, "the grammar was compiled for another tokenizer (or none)");
        goto fail;
    }

    g = calloc(1, sizeof *g);
    if (g == NULL) goto oom;
    g->n_vocab = n_vocab;
    g->eos_id = params.eos_id;
    g->max_tokens = params.max_tokens < 0 ? -1 : params.max_tokens;
    g->logprobs = params.logprobs;
    if (bc_sampler_init(params.sampler, n_vocab, &g->sampler) != BC_STATUS_OK) goto oom; /* params checked above */
    bc_status st = bc_sampler_set_logit_bias(g->sampler, params.bias_ids, params.bias, params.n_bias);
    if (st == BC_STATUS_ERROR_ARGUMENT) {
        bc__errorf(&e, st, "a logit bias has an id outside [0, %d) or a value that is not finite", n_vocab);
        goto fail;
    }
    if (st != BC_STATUS_OK) goto oom;
    if (bc_detokenizer_init(tok, &g->detok) != BC_STATUS_OK) goto oom;
    char stop_err[256];
    st = bc_stop_matcher_init(params.stops, params.n_stops, &g->stop, stop_err, sizeof stop_err);
    if (st != BC_STATUS_OK) {
        bc__errorf(&e, st, "%s", stop_err);
        goto fail;
    }
    if (params.grammar != NULL) {
        if (bc_grammar_matcher_init(params.grammar, &g->matcher) != BC_STATUS_OK) goto oom;
        bc_sampler_set_grammar(g->sampler, g->matcher);
    }
    if (bc__buf_reserve(&g->text, 256) != 0) goto oom;
    *out = g;
    return BC_STATUS_OK;
oom:
    bc__errorf(&e, BC_STATUS_ERROR_MEMORY, "out of memory");
fail:
    bc_generator_free(g);
    bc__err_copy(&e, err, err_size);
    return e.status;
}

void bc_generator_free(bc_generator *g) {
    if (g == NULL) return;
    bc_sampler_free(g->sampler);
    bc_grammar_matcher_free(g->matcher);
    free(g->allowed);
    bc_detokenizer_free(g->detok);
    bc_stop_matcher_free(g->stop);
    free(g->text.data);
    free(g);
}

void bc_generator_reset(bc_generator *g) {
    bc_sampler_reset(g->sampler); /* resets the grammar's matcher too */
    bc_detokenizer_reset(g->detok);
    bc_stop_matcher_reset(g->stop);
    g->n_generated = 0;
    g->finish = BC_FINISH_NONE;
    g->failed = BC_STATUS_OK;
    g->msg[0] = '\0';
    g->text.len = 0;
}

void bc_generator_accept_prompt(bc_generator *g, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) bc_sampler_accept(g->sampler, ids[i]);
}

void bc_generator_set_max_tokens(bc_generator *g, int max_tokens) { g->max_tokens = max_tokens < 0 ? -1 : max_tokens; }

int bc_generator_n_generated(const bc_generator *g) { return g->n_generated; }

const char *bc_generator_error(const bc_generator *g) { return g->msg; }

/* ------------------------------------------------------------------------ */
/* Log-probabilities                                                        */
/* ------------------------------------------------------------------------ */

/* True when id a comes before id b among the most likely: a larger logit,
 * or an equal one and a smaller id. */
static bool likelier(const float *logits, int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
}

/* The k most likely ids of logits[0..n) into top[0..k), most likely first,
 * ties by ascending id: one pass keeping them sorted (k <= 20, so most ids
 * cost one comparison with the k-th). This is the order of repeated
 * selection (each round the first id whose logit no unpicked id exceeds),
 * which a NaN logit breaks: `>` does not order it. Such a row takes that
 * selection itself, so the ids are the same ones whatever the logits. */
static void top_ids(const float *logits, int n, int k, bool has_nan, int32_t *top) {
    if (k == 0) return;
    if (has_nan) {
        for (int j = 0; j < k; j++) {
            int32_t best = -1;
            for (int32_t i = 0; i < n; i++) {
                bool used = false;
                for (int q = 0; q < j; q++) used |= top[q] == i;
                if (!used && (best < 0 || logits[i] > logits[best])) best = i;
            }
            top[j] = best;
        }
        return;
    }
    int m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (m == k && !likelier(logits, i, top[k - 1])) continue;
        int at = m < k ? m++ : k - 1; /* the last place: free, or the k-th, which i displaces */
        while (at > 0 && likelier(logits, i, top[at - 1])) {
            top[at] = top[at - 1];
            at--;
        }
        top[at] = i;
    }
}

/* out->logprob and out->top for out->id: the log-softmax of the raw logits
 * in double (the running maximum from logits[0], then the sum of exp in id
 * order). */
static void take_logprobs(const bc_generator *g, const float *logits, bc_generated *out) {
    const int n = g->n_vocab;
    double max = logits[0], sum = 0;
    bool has_nan = isnan(logits[0]);
    for (int i = 1; i < n; i++) {
        if (logits[i] > max) max = logits[i];
        has_nan |= isnan(logits[i]);
    }
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - max);
    double lse = max + log(sum);
    out->logprob = (double)logits[out->id] - lse;
    int k = g->logprobs < n ? g->logprobs : n;
    int32_t top[BC_MAX_TOP_LOGPROBS];
    top_ids(logits, n, k, has_nan, top);
    for (int j = 0; j < k; j++) out->top[j] = (bc_token_logprob){top[j], (double)logits[top[j]] - lse};
    out->n_top = k;
}

/* ------------------------------------------------------------------------ */
/* The step                                                                 */
/* ------------------------------------------------------------------------ */

/* Refuses a call: sets its message and returns status. */
BC__PRINTF(3, 4) static bc_status refuse(bc_generator *g, bc_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
    return status;
}

/* Fails the generator: status for this step and every later one (until a
 * reset), the message in g->msg, the text it held dropped. */
BC__PRINTF(3, 4) static bc_status fail(bc_generator *g, bc_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
    g->failed = status;
    g->text.len = 0;
    return status;
}

/* The sampler drew nothing (-1): only a grammar does that. Which failure it
 * was, from the matcher's mask taken again. */
static bc_status grammar_failure(bc_generator *g) {
    if (g->allowed == NULL) g->allowed = malloc(((size_t)g->n_vocab + 31) / 32 * sizeof *g->allowed);
    if (g->allowed == NULL) return fail(g, BC_STATUS_ERROR_MEMORY, "out of memory");
    bc_status st = g->matcher ? bc_grammar_matcher_allowed(g->matcher, g->allowed, g->n_vocab) : BC_STATUS_ERROR_MEMORY;
    if (st != BC_STATUS_OK)
        return fail(g, st, "the grammar's matcher failed: out of memory, or a matching limit was passed");
    return fail(g, BC_STATUS_ERROR_ARGUMENT, "the grammar allows no token here, and the text may not end here");
}

/* Appends n bytes to the released text. */
static bc_status release(bc_generator *g, const char *text, size_t n) {
    if (n > 0 && bc__buf_append(&g->text, text, n) != 0) return fail(g, BC_STATUS_ERROR_MEMORY, "out of memory");
    return BC_STATUS_OK;
}

/* The text ends other than by a stop string: the detokenizer's unfinished
 * character goes through the stop matcher (which may complete a stop string
 * then), and the stop matcher's held tail follows. Appends to g->text and
 * sets g->finish to BC_FINISH_STOP in the first case. */
static bc_status release_held(bc_generator *g) {
    const char *text, *shown;
    size_t len, shown_len;
    bc_detokenizer_flush(g->detok, &text, &len); /* out of memory: nothing to add */
    if (bc_stop_matcher_push(g->stop, text, len, &shown, &shown_len)) {
        g->finish = BC_FINISH_STOP;
        return release(g, shown, shown_len);
    }
    if (release(g, shown, shown_len) != BC_STATUS_OK) return g->failed;
    bc_stop_matcher_flush(g->stop, &shown, &shown_len);
    return release(g, shown, shown_len);
}

bc_status bc_generator_step(bc_generator *g, const float *logits, bc_generated *out) {
    memset(out, 0, sizeof *out);
    out->id = -1;
    out->text = out->tail = "";
    if (g->failed != BC_STATUS_OK) return g->failed;
    if (g->finish != BC_FINISH_NONE)
        return refuse(g, BC_STATUS_ERROR_ARGUMENT, "the text has ended: reset the generator before another step");
    g->text.len = 0;

    size_t text_len = 0;
    if (g->max_tokens >= 0 && g->n_generated >= g->max_tokens) {
        g->finish = BC_FINISH_LENGTH; /* a limit of 0: nothing is drawn */
    } else {
        int32_t id = bc_sampler_sample(g->sampler, logits);
        if (id < 0) return grammar_failure(g);
        out->id = id;
        if (id == g->eos_id) {
            g->finish = BC_FINISH_EOS;
        } else {
            g->n_generated++;
            bc_status st = bc_sampler_accept_generated(g->sampler, id); /* advances the grammar's matcher */
            if (st != BC_STATUS_OK)
                return fail(g, st, "the grammar's matcher cannot follow the text past token %d: %s", (int)id,
                            st == BC_STATUS_ERROR_MEMORY
                                ? "a matching limit was passed (rules nested 2,048 deep, or 16,384 parses)"
                                : "it does not allow the token its own mask allowed");
            if (g->logprobs >= 0) take_logprobs(g, logits, out);
            const char *text, *shown;
            size_t len, shown_len;
            st = bc_detokenizer_push(g->detok, id, &text, &len);
            if (st != BC_STATUS_OK) return fail(g, st, "token %d has no piece in the tokenizer", (int)id);
            bool stopped = bc_stop_matcher_push(g->stop, text, len, &shown, &shown_len);
            if (release(g, shown, shown_len) != BC_STATUS_OK) return g->failed;
            text_len = g->text.len;
            if (stopped)
                g->finish = BC_FINISH_STOP;
            else if (g->max_tokens >= 0 && g->n_generated >= g->max_tokens)
                g->finish = BC_FINISH_LENGTH;
        }
    }
    if (g->finish != BC_FINISH_NONE && g->finish != BC_FINISH_STOP && release_held(g) != BC_STATUS_OK) return g->failed;
    out->finish = g->finish;
    out->text = g->text.data;
    out->text_len = text_len;
    out->tail = g->text.data + text_len;
    out->tail_len = g->text.len - text_len;
    return BC_STATUS_OK;
}

bc_finish bc_generator_end(bc_generator *g, const char **tail, size_t *tail_len) {
    *tail = "";
    *tail_len = 0;
    if (g->failed != BC_STATUS_OK) return BC_FINISH_NONE;
    if (g->finish != BC_FINISH_NONE) return g->finish;
    g->text.len = 0;
    g->finish = BC_FINISH_ENDED;
    if (release_held(g) != BC_STATUS_OK) return BC_FINISH_NONE;
    *tail = g->text.data;
    *tail_len = g->text.len;
    return g->finish;
}

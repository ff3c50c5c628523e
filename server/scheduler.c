/*
 * scheduler.c - continuous batching on one engine thread, over the paged KV
 * pool of the context.
 *
 * The unit of scheduling is a choice: a request with n choices ("n", 1..8)
 * puts its n choices in a FIFO queue, in index order, and each running
 * choice holds one slot (--parallel), which is one sequence of the context.
 * A choice at the head of the queue is admitted when a slot is free and the
 * pool can hold its prompt. Its sequence first gets what is already
 * computed: when a sibling choice (same request, same prompt) holds a slot,
 * the prompt positions are forked from the sibling's sequence
 * (bc_context_seq_fork: the blocks are shared, the partial last one copied
 * on the first write), less the last prompt id, which the choice feeds for
 * its own logits; otherwise the longest prefix found in the prefix cache
 * (computed once, shared by every request that starts with it). The blocks
 * for the rest are reserved, so a choice once admitted is never short of
 * memory for its prompt. A request under a LoRA adapter has its sequence
 * set to it first (bc_context_seq_set_loras, on the empty sequence), so the
 * prefix cache gives it only blocks computed under the same adapter; a
 * freed slot goes back to the base model. A choice whose sibling is still computing the
 * prompt waits at the head (so the prompt is computed once), as does one
 * whose ids start with whole blocks a running slot is computing.
 *
 * So choice 0 computes the prompt, and choices 1..n-1 are forked from it
 * once it is done, as slots free up. With fewer slots than choices, the
 * later choices wait in the queue for the earlier ones to end; a choice
 * admitted after every sibling has ended takes the prompt's whole blocks
 * from the prefix cache (and computes everything again without one).
 *
 * Each step builds one batch within a token budget (--step-tokens, which
 * counts every entry, as vLLM's max_num_batched_tokens does): the next
 * token of every slot that is generating, then chunks of the prompts still
 * being computed, the oldest choice's first, up to the budget. So a long
 * prompt is computed a chunk per step (chunked prefill) while the running
 * streams keep getting a token per step, and of two prompts the older is
 * finished before the next starts (the first token comes soonest on
 * average; vLLM's order too). A slot whose prompt is partly computed asks
 * for no logits until its last chunk runs. The step runs one
 * bc_context_decode and takes one generation step for every slot whose
 * logits came out, the slots' steps in parallel on the context's threads
 * (bc_context_parallel_for; their text is then emitted in slot order on
 * the engine thread), with that choice's own bc_generator (its sampler
 * seeded with the request's seed + index, the grammar's matcher when the
 * request has one, its stop strings, and max_tokens, which the parser
 * fitted to the context). A generating slot
 * whose next position starts a new block (or must copy a shared one) takes
 * one from the pool; when none is free the newest running choice (the
 * newest request's highest index) is preempted (as vLLM does): its blocks
 * go back to the pool (its full ones into the prefix cache), it returns to
 * the head of the queue, and when admitted again its ids so far (prompt and
 * generated) are computed again, the prompt forked from a running sibling
 * or found in the prefix cache, and generation goes on where it stopped
 * (the generator kept its state). The client only sees a pause.
 *
 * A request ends when its last choice ends: then its usage (completion
 * tokens summed over the choices) goes out, and the caller's hooks count it
 * (metrics, the tenant's quota) and record its one ledger row, which
 * releases its last bytes. A streamed choice that ends earlier sends its
 * finish chunk at once.
 *
 * Output goes into the requests' own buffers (srv_request_publish): the
 * engine never blocks on a client. A client that has gone is dropped at the
 * next step, all its choices with it, their slots freed.
 */
#include "scheduler.h"

#include "openai.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    srv_choice *ch; /* NULL when free */
    int n_step;     /* entries of this slot in the current batch */
    int logit_row;  /* the batch entry whose logits are this slot's, or -1 */
    /* The generation step of the current batch (sample_slot, on a worker
     * thread), until take_token hands it on. */
    int n_generated; /* the choice's generated tokens before the step */
    bc_status status;
    bc_generated step;
} slot;

struct srv_scheduler {
    bc_context *ctx;
    srv_scheduler_hooks hooks; /* what becomes of a request that ended */
    int n_slots;
    int step_tokens; /* most entries in one step, decode and prompt: in [n_slots, n_batch] */
    slot *slots;
    slot **sampled;        /* (n_slots) the slots whose logits the last decode made */
    bc_batch_entry *batch; /* (step_tokens) */
    int watermark;         /* blocks left free at admission, for the running choices to grow into */
    bool prefix_cache;     /* the context keeps and reuses blocks */

    pthread_mutex_t mu; /* guards the queue, n_active, stopping, cancel_all, stats */
    pthread_cond_t cv;
    /* (q_cap + SRV_MAX_N - 1 + n_slots) a ring of choices; preempted ones go
     * back in at the head. A request is queued while fewer than q_cap
     * choices wait, so the ring always has room for its n and for the
     * n_slots that preemption may put back. */
    srv_choice **queue;
    int q_head, q_len, q_cap, q_ring;
    int n_active; /* slots in use */
    uint64_t n_arrived;
    bool stopping, cancel_all;
    srv_engine_stats stats;
    pthread_t thread;
};

/* Ids the choice's sequence must hold: the prompt and the tokens generated. */
static int n_ids_of(const srv_choice *c) { return c->req->n_prompt + bc_generator_n_generated(c->gen); }

/* ------------------------------------------------------------------------ */
/* Ending choices and requests                                              */
/* ------------------------------------------------------------------------ */

/* Accounts the request, records its one ledger row and sends its final
 * bytes (after the row is committed). Takes over the scheduler's
 * reference. */
static void end_request(srv_scheduler *s, srv_request *r) {
    bool gone = atomic_load(&r->cancelled);
    int status = r->http_status;
    if (gone) {
        status = 499; /* client closed the request */
        r->finish_reason = "cancelled";
    } else if (status == 200) {
        r->finish_reason = r->choices[0].finish_reason;
    } else {
        r->finish_reason = "error";
    }
    r->http_status = status;
    if (s->hooks.account != NULL) s->hooks.account(s->hooks.ctx, r, status);
    srv_buf tail = {0};
    if (gone) srv_request_publish(r, NULL, 0, true); /* wakes a suspended connection to close it */
    if (!gone) {
        if (status == 200)
            srv_openai_finish(r, &tail);
        else {
            json_t *err = srv_error_json("the model failed on this request", "server_error", NULL, NULL);
            char *body = srv_json_dump(err);
            if (r->stream)
                srv_buf_printf(&tail, "data: %s\n\n", body ? body : "{}");
            else if (body)
                srv_buf_puts(&tail, body);
            free(body);
            json_decref(err);
        }
    }
    double now = srv_now();
    srv_ledger_row row = {.time = srv_wall(),
                          .request_id = r->id,
                          .tenant = r->tenant ? r->tenant->name : NULL,
                          .endpoint = srv_endpoint_path(r->endpoint),
                          .model = r->model,
                          .adapter = r->adapter ? srv_adapter_name(r->adapter) : NULL,
                          .prompt_tokens = r->n_prompt,
                          .completion_tokens = r->n_generated,
                          .finish_reason = r->finish_reason,
                          .status = status,
                          .latency = now - r->t_arrival};
    if (s->hooks.record != NULL) {
        s->hooks.record(s->hooks.ctx, &row, r, tail.data, tail.len);
    } else {
        srv_request_publish(r, tail.data, tail.len, true);
        srv_request_unref(r);
    }
    srv_buf_free(&tail);
}

/* Ends choice c with finish_reason (already set when NULL) and status (200,
 * 499 gone, 500 failed); the request ends with its last choice. c holds no
 * slot and is in no queue. */
static void end_choice(srv_scheduler *s, srv_choice *c, const char *finish_reason, int status) {
    srv_request *r = c->req;
    if (finish_reason != NULL) c->finish_reason = srv_openai_finish_reason(c, finish_reason);
    if (status > r->http_status) r->http_status = status;
    bc_generator_free(c->gen); /* done with: its memory goes now, not with the request */
    c->gen = NULL;
    if (++r->n_ended < r->n_choices) {
        if (status == 200 && !atomic_load(&r->cancelled)) srv_openai_choice_done(c);
        return;
    }
    end_request(s, r);
}

/* Empties sequence i and sets it back to the base model, so the context
 * keeps no pointer to an adapter that may be freed once its last request
 * has ended. */
static void clear_seq(srv_scheduler *s, int i) {
    bc_context_seq_truncate(s->ctx, i, 0);
    bc_context_seq_set_loras(s->ctx, i, NULL, 0);
}

/* Gives the slot's blocks back to the pool (full ones stay in the prefix
 * cache) and frees the slot. */
static void free_slot(srv_scheduler *s, slot *sl) {
    clear_seq(s, (int)(sl - s->slots));
    memset(sl, 0, sizeof *sl);
    pthread_mutex_lock(&s->mu);
    s->n_active--;
    pthread_mutex_unlock(&s->mu);
}

/* True when running choice a is newer than b: a later request, or the same
 * request's higher index. */
static bool newer(const srv_choice *a, const srv_choice *b) {
    return a->req->order != b->req->order ? a->req->order > b->req->order : a->index > b->index;
}

/* Frees the newest running choice's slot and puts the choice back at the
 * head of the queue (which always has room for n_slots of them). */
static void preempt_newest(srv_scheduler *s) {
    slot *newest = NULL;
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].ch != NULL && (newest == NULL || newer(s->slots[i].ch, newest->ch))) newest = &s->slots[i];
    if (newest == NULL) return;
    srv_choice *c = newest->ch;
    free_slot(s, newest);
    pthread_mutex_lock(&s->mu);
    s->q_head = (s->q_head + s->q_ring - 1) % s->q_ring;
    s->queue[s->q_head] = c;
    s->q_len++;
    s->stats.preemptions++;
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------------ */
/* One generation step                                                      */
/* ------------------------------------------------------------------------ */

/* Text for the choice, with its logprobs entry; nothing when there is
 * neither. */
static void emit(srv_choice *c, const char *text, size_t len, json_t *lp) {
    if (len > 0 || lp != NULL) srv_openai_emit_text(c, text, len, lp);
}

/* The finish_reason of a generator's ending: the eos id and a stop string
 * are both "stop". */
static const char *finish_reason_of(bc_finish finish) { return finish == BC_FINISH_LENGTH ? "length" : "stop"; }

/* The latency metrics of a choice's step, taken once its output is
 * published: the request's time to first token (from its arrival to its
 * first step's output), the time per output step (every step after the
 * choice's first, as before the inter-token latency existed), and the
 * inter-token latency of a token that follows one of the choice's (a
 * preemption's pause included: the client saw it). */
static void time_step(srv_choice *c, int n_before, bool joined) {
    srv_request *r = c->req;
    double now = srv_now();
    if (!r->ttft_seen) srv_metrics_ttft(now - r->t_arrival);
    r->ttft_seen = true;
    if (n_before > 0) {
        srv_metrics_token_latency(now - c->t_last_token);
        if (joined) srv_metrics_inter_token(now - c->t_last_token);
    }
    c->t_last_token = now;
}

/* The slots whose logits came out of the last decode, stepped on the
 * context's threads: sampling one slot does not wait for the others. */
typedef struct sample_job {
    srv_scheduler *s;
    slot **slots;
} sample_job;

/* One generation step from its logits for a slot's choice (a worker
 * thread; touches only the slot and its choice's generator). */
static void sample_slot(void *arg, int i) {
    const sample_job *j = arg;
    slot *sl = j->slots[i];
    sl->n_generated = bc_generator_n_generated(sl->ch->gen);
    sl->status = bc_generator_step(sl->ch->gen, bc_context_logits(j->s->ctx, sl->logit_row), &sl->step);
}

/* Hands on the slot's step (the engine thread): emits its text, ends the
 * choice when its text ended, or with an error when the step failed (as a
 * failed forward pass does). Returns true when the slot was freed. */
static bool take_token(srv_scheduler *s, slot *sl) {
    srv_choice *c = sl->ch;
    srv_request *r = c->req;
    const int n_generated = sl->n_generated;
    const bc_generated step = sl->step;
    if (n_generated == 0 && r->endpoint == SRV_ENDPOINT_CHAT) srv_openai_emit_text(c, "", 0, NULL); /* the role chunk */

    if (sl->status != BC_STATUS_OK) {
        fprintf(stderr, "baichuan serve: generation failed (%s, choice %d): %s\n", r->id, c->index,
                bc_generator_error(c->gen));
        free_slot(s, sl);
        end_choice(s, c, "error", 500);
        return true;
    }
    bool joined = bc_generator_n_generated(c->gen) > n_generated; /* not the eos id: the id joins the sequence */
    if (joined) {
        r->n_generated++;
        c->ids[n_ids_of(c) - 1] = step.id;
        emit(c, step.text, step.text_len, srv_openai_logprobs(c, &step, c->text_offset));
        c->text_offset += step.text_len;
    }
    time_step(c, n_generated, joined);
    if (step.finish == BC_FINISH_NONE) return false;
    emit(c, step.tail, step.tail_len, NULL); /* what the ending released, as a chunk of its own */
    free_slot(s, sl);
    end_choice(s, c, finish_reason_of(step.finish), 200);
    return true;
}

/* ------------------------------------------------------------------------ */
/* The engine thread                                                        */
/* ------------------------------------------------------------------------ */

/* Under s->mu: drops the choices of cancelled requests from the queue.
 * Choices to end are put in *gone (the caller ends them outside the lock). */
static void drop_cancelled(srv_scheduler *s, srv_choice **gone, int *n_gone) {
    int kept = 0;
    for (int i = 0; i < s->q_len; i++) {
        srv_choice *c = s->queue[(s->q_head + i) % s->q_ring];
        if (s->cancel_all) atomic_store(&c->req->cancelled, true);
        srv_request_check_gone(c->req);
        if (atomic_load(&c->req->cancelled))
            gone[(*n_gone)++] = c;
        else
            s->queue[(s->q_head + kept++) % s->q_ring] = c;
    }
    s->q_len = kept;
}

/* True when a running slot is still computing whole blocks that c's ids
 * start with: admitted once they are done, c takes them from the prefix
 * cache instead of computing them a second time (a system prompt that many
 * requests arriving together share is computed once). */
static bool shares_pending_prefix(const srv_scheduler *s, const srv_choice *c) {
    for (int j = 0; j < s->n_slots; j++) {
        const srv_choice *q = s->slots[j].ch;
        if (q == NULL || q->req->adapter != c->req->adapter) continue; /* blocks of another adapter never serve c */
        int n = n_ids_of(q) < n_ids_of(c) - 1 ? n_ids_of(q) : n_ids_of(c) - 1, common = 0;
        while (common < n && q->ids[common] == c->ids[common]) common++;
        if (common / BC_KV_BLOCK * BC_KV_BLOCK > bc_context_seq_len(s->ctx, j)) return true;
    }
    return false;
}

/* The slot of a running sibling of c (same request) to fork the prompt
 * from, or -1. *wait is set when the sibling is still computing the prompt
 * positions c would take from it. */
static int sibling_slot(const srv_scheduler *s, const srv_choice *c, int n_share, bool *wait) {
    *wait = false;
    for (int j = 0; j < s->n_slots; j++) {
        const srv_choice *q = s->slots[j].ch;
        if (q == NULL || q->req != c->req) continue;
        if (bc_context_seq_len(s->ctx, j) < n_share) *wait = true;
        return j;
    }
    return -1;
}

/* What sequence i starts with for choice c: the prompt forked from a
 * running sibling (*forked set), else the prefix cache's longest match.
 * Returns the positions it holds, or -1 when c must wait. */
static int attach_computed(srv_scheduler *s, int i, const srv_choice *c, bool *forked) {
    int n_ids = n_ids_of(c), n_share = c->req->n_prompt < n_ids - 1 ? c->req->n_prompt : n_ids - 1;
    bool wait;
    int j = sibling_slot(s, c, n_share, &wait);
    *forked = false;
    if (wait) return -1;
    if (j >= 0 && n_share > 0 && bc_context_seq_fork(s->ctx, j, i) == BC_STATUS_OK) {
        bc_context_seq_truncate(s->ctx, i, n_share);
        *forked = true;
        return n_share;
    }
    if (s->prefix_cache && shares_pending_prefix(s, c)) return -1;
    /* The adapter goes on the empty sequence first, so the prefix cache gives
     * it only blocks computed under the same adapter (a fork above takes the
     * sibling's, which is the same). */
    const bc_lora *lora = c->req->adapter != NULL ? srv_adapter_lora(c->req->adapter) : NULL;
    if (bc_context_seq_set_loras(s->ctx, i, lora ? &lora : NULL, lora ? 1 : 0) != BC_STATUS_OK) {
        /* Cannot happen (the sequence is empty, the adapter is this model's):
         * running the choice under other weights would be worse than stopping. */
        fprintf(stderr, "baichuan serve: bug: cannot set sequence %d's adapter\n", i);
        abort();
    }
    return bc_context_seq_reuse(s->ctx, i, c->ids, n_ids, n_ids - 1);
}

/* Fills free slots from the head of the queue while the pool can hold the
 * head choice's prompt (what is not forked or found in the prefix cache)
 * and still keep the watermark free. In arrival order: a choice that does
 * not fit waits, and the ones behind it wait too. */
static void admit(srv_scheduler *s) {
    for (int i = 0; i < s->n_slots; i++) {
        if (s->slots[i].ch != NULL) continue;
        pthread_mutex_lock(&s->mu);
        srv_choice *c = s->q_len > 0 ? s->queue[s->q_head] : NULL;
        pthread_mutex_unlock(&s->mu);
        if (c == NULL) return;
        srv_request *r = c->req;
        bool forked;
        int n_ids = n_ids_of(c), reused = attach_computed(s, i, c, &forked);
        if (reused < 0) return;
        int need = bc_context_seq_blocks_needed(s->ctx, i, n_ids - reused);
        bc_kv_stats kv;
        bc_context_kv_stats(s->ctx, &kv);
        bool alone = s->n_active == 0; /* nothing will free blocks: take the watermark too */
        if (need + (alone ? 0 : s->watermark) > kv.n_free ||
            bc_context_seq_reserve(s->ctx, i, n_ids - reused) != BC_STATUS_OK) {
            clear_seq(s, i);
            return;
        }
        pthread_mutex_lock(&s->mu);
        s->q_head = (s->q_head + 1) % s->q_ring;
        s->q_len--;
        s->n_active++;
        if (forked) s->stats.forked_tokens += reused;
        if (!r->admitted) { /* the prompt's first admission: what the cache saved */
            s->stats.prefix_hit_tokens += reused;
            s->stats.prefix_miss_tokens += r->n_prompt - reused;
        }
        pthread_mutex_unlock(&s->mu);
        if (!r->admitted) {
            r->admitted = true;
            r->n_cached_prompt = reused;
        }
        if (!c->admitted) { /* the generator keeps the prompt through preemptions */
            c->admitted = true;
            bc_generator_accept_prompt(c->gen, r->prompt, (size_t)r->n_prompt);
        }
        memset(&s->slots[i], 0, sizeof s->slots[i]);
        s->slots[i].ch = c;
    }
}

/* Ends the choices of slots whose clients have gone. */
static void drop_gone_slots(srv_scheduler *s, bool cancel_all) {
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->ch == NULL) continue;
        srv_request *r = sl->ch->req;
        if (cancel_all) atomic_store(&r->cancelled, true);
        srv_request_check_gone(r);
        if (atomic_load(&r->cancelled)) {
            srv_choice *c = sl->ch;
            free_slot(s, sl);
            end_choice(s, c, "cancelled", 499);
        }
    }
}

/* A block for every running slot whose next position needs one, preempting
 * the newest choices until there are enough (one choice alone always fits:
 * the pool holds at least n_ctx positions). */
static void make_room(srv_scheduler *s) {
    for (;;) {
        int need = 0;
        for (int i = 0; i < s->n_slots; i++)
            if (s->slots[i].ch != NULL) need += bc_context_seq_blocks_needed(s->ctx, i, 1);
        bc_kv_stats kv;
        bc_context_kv_stats(s->ctx, &kv);
        if (need <= kv.n_free || s->n_active <= 1) return;
        preempt_newest(s);
    }
}

/* The slot with ids left to feed and none in the batch yet whose choice is
 * the oldest, or NULL. */
static slot *oldest_pending(srv_scheduler *s) {
    slot *oldest = NULL;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->ch != NULL && sl->n_step == 0 && (oldest == NULL || newer(oldest->ch, sl->ch))) oldest = sl;
    }
    return oldest;
}

/* The batch: one entry for each slot with one id left to feed (a stream's
 * next token, whatever the budget: every slot fits, as step_tokens >=
 * n_slots), then chunks of the slots with more (prompts), the oldest choice
 * first, while the step's budget lasts. Returns its size. */
static int build_batch(srv_scheduler *s) {
    int n = 0;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->n_step = 0;
        sl->logit_row = -1;
        if (sl->ch == NULL) continue;
        int pos = bc_context_seq_len(s->ctx, i);
        if (n_ids_of(sl->ch) - pos != 1) continue;
        s->batch[n] = (bc_batch_entry){i, pos, sl->ch->ids[pos], true};
        sl->logit_row = n++;
        sl->n_step = 1;
    }
    slot *sl;
    while (n < s->step_tokens && (sl = oldest_pending(s)) != NULL) {
        int i = (int)(sl - s->slots);
        int pos = bc_context_seq_len(s->ctx, i), n_ids = n_ids_of(sl->ch);
        int take = n_ids - pos;
        if (take > s->step_tokens - n) take = s->step_tokens - n;
        if (take <= 0) break; /* never: a running slot always has an id to feed */
        for (int j = 0; j < take; j++) {
            bool last = pos + j == n_ids - 1;
            s->batch[n] = (bc_batch_entry){i, pos + j, sl->ch->ids[pos + j], last};
            if (last) sl->logit_row = n;
            n++;
        }
        sl->n_step = take;
    }
    return n;
}

/* The forward pass failed: every choice in the batch ends with an error. */
static void fail_batch(srv_scheduler *s) {
    fprintf(stderr, "baichuan serve: forward pass failed: %s\n", bc_context_error(s->ctx));
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->ch == NULL || sl->n_step == 0) continue;
        srv_choice *c = sl->ch;
        free_slot(s, sl);
        end_choice(s, c, "error", 500);
    }
}

static void publish_stats(srv_scheduler *s) {
    bc_kv_stats kv;
    bc_context_kv_stats(s->ctx, &kv);
    pthread_mutex_lock(&s->mu);
    s->stats.kv = kv;
    s->stats.last_step = srv_now();
    pthread_mutex_unlock(&s->mu);
}

static void *engine_main(void *arg) {
    srv_scheduler *s = arg;
    srv_choice **gone = malloc((size_t)s->q_ring * sizeof *gone);
    slot **sampled = s->sampled;
    for (;;) {
        int n_gone = 0;
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->n_active == 0 && s->q_len == 0) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping && s->n_active == 0 && s->q_len == 0) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        drop_cancelled(s, gone, &n_gone);
        bool cancel_all = s->cancel_all;
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < n_gone; i++) end_choice(s, gone[i], "cancelled", 499);

        drop_gone_slots(s, cancel_all);
        admit(s);
        make_room(s);
        int n = build_batch(s);
        if (n == 0) {
            publish_stats(s);
            continue;
        }
        if (bc_context_decode(s->ctx, s->batch, n) != BC_STATUS_OK) {
            fail_batch(s);
            continue;
        }
        int n_sampled = 0;
        for (int i = 0; i < s->n_slots; i++)
            if (s->slots[i].ch != NULL && s->slots[i].logit_row >= 0) sampled[n_sampled++] = &s->slots[i];
        sample_job job = {s, sampled};
        bc_context_parallel_for(s->ctx, sample_slot, &job, n_sampled);
        for (int i = 0; i < n_sampled; i++) take_token(s, sampled[i]);
        publish_stats(s);
    }
    free(gone);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Interface                                                                */
/* ------------------------------------------------------------------------ */

int srv_scheduler_start(srv_scheduler **out, bc_context *ctx, int max_queue, int step_tokens,
                        const srv_scheduler_hooks *hooks, char *err, size_t err_size) {
    *out = NULL;
    srv_scheduler *s = calloc(1, sizeof *s);
    if (s == NULL) goto oom;
    s->ctx = ctx;
    if (hooks != NULL) s->hooks = *hooks;
    s->n_slots = bc_context_n_seq(ctx);
    s->step_tokens = srv_scheduler_step_tokens(ctx, step_tokens);
    s->q_cap = max_queue > 0 ? max_queue : 1;
    s->q_ring = s->q_cap + SRV_MAX_N - 1 + s->n_slots;
    s->stats.n_slots = s->n_slots;
    s->stats.last_step = srv_now();
    bc_kv_stats kv;
    bc_context_kv_stats(ctx, &kv);
    s->stats.kv = kv;
    s->watermark = s->n_slots < kv.n_blocks / 4 ? s->n_slots : kv.n_blocks / 4;
    s->prefix_cache = kv.prefix_cache;
    s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
    s->sampled = malloc((size_t)s->n_slots * sizeof *s->sampled);
    s->batch = malloc((size_t)s->step_tokens * sizeof *s->batch);
    s->queue = malloc((size_t)s->q_ring * sizeof *s->queue);
    if (s->slots == NULL || s->sampled == NULL || s->batch == NULL || s->queue == NULL) goto oom;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        snprintf(err, err_size, "cannot start the engine thread");
        goto fail;
    }
    *out = s;
    return 0;
oom:
    snprintf(err, err_size, "out of memory");
fail:
    if (s) {
        free(s->slots);
        free(s->sampled);
        free(s->batch);
        free(s->queue);
        free(s);
    }
    return -1;
}

int srv_scheduler_step_tokens(const bc_context *ctx, int step_tokens) {
    int n_seq = bc_context_n_seq(ctx), n_batch = bc_context_n_batch(ctx);
    if (step_tokens <= 0 || step_tokens > n_batch) step_tokens = n_batch;
    return step_tokens < n_seq ? n_seq : step_tokens; /* n_seq <= n_batch (server.c) */
}

int srv_scheduler_submit(srv_scheduler *s, srv_request *r) {
    pthread_mutex_lock(&s->mu);
    if (s->q_len >= s->q_cap || s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    srv_request_ref(r);
    r->order = s->n_arrived++;
    r->http_status = 200;
    for (int i = 0; i < r->n_choices; i++) s->queue[(s->q_head + s->q_len++) % s->q_ring] = &r->choices[i];
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void srv_scheduler_counts(srv_scheduler *s, int *queued, int *active) {
    pthread_mutex_lock(&s->mu);
    *queued = s->q_len;
    *active = s->n_active;
    pthread_mutex_unlock(&s->mu);
}

void srv_scheduler_stats(srv_scheduler *s, srv_engine_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->queued = s->q_len;
    out->active = s->n_active;
    pthread_mutex_unlock(&s->mu);
}

void srv_scheduler_cancel_all(srv_scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->cancel_all = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void srv_scheduler_stop(srv_scheduler *s) {
    if (s == NULL) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->slots);
    free(s->sampled);
    free(s->batch);
    free(s->queue);
    free(s);
}

/*
 * sampler.c - next-token choice with Hugging Face generate's semantics, and
 * the stop-string matcher.
 *
 *   repetition penalty -> presence/frequency penalties -> temperature -> top-k -> top-p -> min-p -> draw
 *
 * Everything per step works on the sampler's own buffers, allocated at init.
 */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Parameters                                                               */
/* ------------------------------------------------------------------------ */

bc_sampler_params bc_sampler_default_params(void) {
    bc_sampler_params p;
    p.temperature = 1.0f;
    p.top_k = 50;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repetition_penalty = 1.0f;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.seed = 0x5eed;
    return p;
}

bc_sampler_params bc_model_sampler_params(const bc_model *model) {
    bc_sampler_params p = bc_sampler_default_params();
    const bc__gen_config *g = &model->gen;
    if (!g->present) return p;
    p.temperature = g->do_sample ? g->temperature : 0.0f;
    p.top_k = g->top_k;
    p.top_p = g->top_p;
    p.repetition_penalty = g->repetition_penalty;
    return p;
}

const char *bc_sampler_params_check(bc_sampler_params p) {
    if (!isfinite(p.temperature) || p.temperature < 0) return "temperature must be a finite number >= 0";
    if (p.top_k < 0) return "top_k must be >= 0 (0 turns it off)";
    if (!(p.top_p > 0 && p.top_p <= 1)) return "top_p must be in (0, 1]";
    if (!(p.min_p >= 0 && p.min_p <= 1)) return "min_p must be in [0, 1]";
    if (!isfinite(p.repetition_penalty) || !(p.repetition_penalty > 0))
        return "repetition_penalty must be a finite number > 0";
    if (!isfinite(p.presence_penalty)) return "presence_penalty must be a finite number";
    if (!isfinite(p.frequency_penalty)) return "frequency_penalty must be a finite number";
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Random numbers: xoshiro256**, seeded through splitmix64                  */
/* ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------------------ */
/* The sampler                                                              */
/* ------------------------------------------------------------------------ */

struct bc_sampler {
    bc_sampler_params p;
    int n_vocab;
    uint8_t *seen;     /* (n_vocab) 1 once an id has been accepted */
    int32_t *seen_ids; /* (n_vocab) the distinct accepted ids, in order */
    int n_seen;
    int32_t *counts;      /* (n_vocab) times each id was generated */
    int32_t *counted_ids; /* (n_vocab) the distinct generated ids, in order */
    int n_counted;
    float *work;       /* (n_vocab) penalized, tempered logits */
    int32_t *cand;     /* (n_vocab) candidate ids */
    double *prob;      /* (n_vocab) candidate probabilities */
    int32_t *head;     /* (n_vocab) ordered_head's sorted most likely ids */
    double *hprob;     /* (n_vocab) their probabilities */
    int32_t *bias_ids; /* (n_bias) ids with a logit bias, NULL without */
    float *bias;       /* (n_bias) their biases */
    int n_bias;
    bc_grammar_matcher *grammar; /* borrowed; NULL without */
    uint32_t *allowed;           /* ((n_vocab + 31) / 32) the grammar's bits, allocated with the first grammar */
    bool grammar_failed;         /* the matcher could not take a generated id: draws fail until a reset */
    uint64_t rng[4];
};

static void seed_rng(bc_sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

bc_status bc_sampler_init(bc_sampler_params params, int n_vocab, bc_sampler **out) {
    *out = NULL;
    if (bc_sampler_params_check(params) != NULL || n_vocab < 1) return BC_STATUS_ERROR_ARGUMENT;
    bc_sampler *s = calloc(1, sizeof *s);
    if (s == NULL) return BC_STATUS_ERROR_MEMORY;
    s->p = params;
    s->n_vocab = n_vocab;
    s->seen = calloc((size_t)n_vocab, 1);
    s->seen_ids = malloc((size_t)n_vocab * sizeof *s->seen_ids);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->counted_ids = malloc((size_t)n_vocab * sizeof *s->counted_ids);
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    s->head = malloc((size_t)n_vocab * sizeof *s->head);
    s->hprob = malloc((size_t)n_vocab * sizeof *s->hprob);
    if (!s->seen || !s->seen_ids || !s->counts || !s->counted_ids || !s->work || !s->cand || !s->prob || !s->head ||
        !s->hprob) {
        bc_sampler_free(s);
        return BC_STATUS_ERROR_MEMORY;
    }
    seed_rng(s);
    *out = s;
    return BC_STATUS_OK;
}

void bc_sampler_free(bc_sampler *s) {
    if (s == NULL) return;
    free(s->seen);
    free(s->seen_ids);
    free(s->counts);
    free(s->counted_ids);
    free(s->work);
    free(s->cand);
    free(s->prob);
    free(s->head);
    free(s->hprob);
    free(s->bias_ids);
    free(s->bias);
    free(s->allowed);
    free(s);
}

bc_status bc_sampler_set_logit_bias(bc_sampler *s, const int32_t *ids, const float *bias, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->n_vocab || !isfinite(bias[i])) return BC_STATUS_ERROR_ARGUMENT;
    int32_t *new_ids = NULL;
    float *new_bias = NULL;
    if (n > 0) {
        new_ids = malloc(n * sizeof *new_ids);
        new_bias = malloc(n * sizeof *new_bias);
        if (new_ids == NULL || new_bias == NULL) {
            free(new_ids);
            free(new_bias);
            return BC_STATUS_ERROR_MEMORY;
        }
        memcpy(new_ids, ids, n * sizeof *new_ids);
        memcpy(new_bias, bias, n * sizeof *new_bias);
    }
    free(s->bias_ids);
    free(s->bias);
    s->bias_ids = new_ids;
    s->bias = new_bias;
    s->n_bias = (int)n;
    return BC_STATUS_OK;
}

void bc_sampler_set_grammar(bc_sampler *s, bc_grammar_matcher *m) {
    /* Without memory for the mask the grammar is kept all the same:
     * bc_sampler_sample then fails rather than ignore it. */
    if (m != NULL && s->allowed == NULL) s->allowed = malloc(((size_t)s->n_vocab + 31) / 32 * sizeof *s->allowed);
    s->grammar = m;
    s->grammar_failed = false;
}

void bc_sampler_reset(bc_sampler *s) {
    if (s->grammar != NULL) bc_grammar_matcher_reset(s->grammar);
    s->grammar_failed = false;
    for (int i = 0; i < s->n_seen; i++) s->seen[s->seen_ids[i]] = 0;
    s->n_seen = 0;
    for (int i = 0; i < s->n_counted; i++) s->counts[s->counted_ids[i]] = 0;
    s->n_counted = 0;
    seed_rng(s);
}

void bc_sampler_accept(bc_sampler *s, int32_t id) {
    if (id < 0 || id >= s->n_vocab || s->seen[id]) return;
    s->seen[id] = 1;
    s->seen_ids[s->n_seen++] = id;
}

bc_status bc_sampler_accept_generated(bc_sampler *s, int32_t id) {
    if (id < 0 || id >= s->n_vocab) return BC_STATUS_OK;
    bc_sampler_accept(s, id);
    if (s->counts[id]++ == 0) s->counted_ids[s->n_counted++] = id;
    if (s->grammar == NULL || s->grammar_failed) return s->grammar_failed ? BC_STATUS_ERROR_ARGUMENT : BC_STATUS_OK;
    bc_status st = bc_grammar_matcher_accept(s->grammar, id);
    s->grammar_failed = st != BC_STATUS_OK;
    return st;
}

/* Restores the min-heap property below node i of heap (n values). */
static void sift_down(float *heap, int n, int i) {
    float v = heap[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap[c + 1] < heap[c]) c++;
        if (heap[c] >= v) break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = v;
}

/* Candidates in descending logit order, ties by ascending id. qsort takes
 * no context argument in C11, so the logits come through a thread-local. */
static _Thread_local const float *tl_work;

static int by_logit_desc(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float lx = tl_work[x], ly = tl_work[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return (x > y) - (x < y);
}

/* The k-th largest of w[0..n) (or of w[ids[0..n)]) for a small k: one pass keeping the k largest
 * seen so far in a min-heap (heap, k floats), so most values cost one
 * comparison with the heap's minimum: about 0.1 ms for 125,696 logits
 * where quickselect over a copy took 1.5 ms. */
static float kth_largest_heap(const float *w, const int32_t *ids, int n, int k, float *heap) {
#define VALUE(i) (ids ? w[ids[i]] : w[i])
    for (int i = 0; i < k; i++) heap[i] = VALUE(i);
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(heap, k, i);
    for (int i = k; i < n; i++)
        if (VALUE(i) > heap[0]) {
            heap[0] = VALUE(i);
            sift_down(heap, k, 0);
        }
#undef VALUE
    return heap[0];
}

/* The k-th largest value of work[cand[0..n)] (1-based k), by quickselect on
 * a scratch copy of the values. */
static float kth_largest(const float *work, const int32_t *cand, int n, int k, float *scratch) {
    for (int i = 0; i < n; i++) scratch[i] = work[cand[i]];
    int lo = 0, hi = n - 1, want = k - 1; /* index in descending order */
    while (lo < hi) {
        float pivot = scratch[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (scratch[i] > pivot) i++;
            while (scratch[j] < pivot) j--;
            if (i <= j) {
                float t = scratch[i];
                scratch[i] = scratch[j];
                scratch[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
    return scratch[want];
}

/* Top-p and min-p over a large candidate set usually keep only the most
 * likely few: instead of sorting all n, take the HEAD largest (ties
 * included), sort those, and check that the cut falls inside them (top-p:
 * their probability is at least top_p, so every later token has at most
 * 1 - top_p after it; min-p: the last of them is already below min_p times
 * the first). Then cand and prob hold the sorted head with probabilities
 * normalized over all n, *rest gets the mass of the others, and the head's
 * size is returned. When the cut may lie beyond the head, returns 0 with
 * cand unchanged (the caller sorts everything). */
#define HEAD 1024
static int ordered_head(bc_sampler *s, const float *w, int n, double max, double *rest) {
    double total = 0;
    for (int i = 0; i < n; i++) total += exp((double)w[s->cand[i]] - max);
    float kth = kth_largest_heap(w, s->cand, n, HEAD, (float *)s->prob);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (w[s->cand[i]] >= kth) s->head[m++] = s->cand[i];
    tl_work = w;
    qsort(s->head, (size_t)m, sizeof *s->head, by_logit_desc);
    double mass = 0;
    for (int i = 0; i < m; i++) mass += s->hprob[i] = exp((double)w[s->head[i]] - max) / total;
    bool inside = (s->p.top_p < 1.0f && mass >= (double)s->p.top_p) ||
                  (s->p.min_p > 0.0f && s->hprob[m - 1] < (double)s->p.min_p * s->hprob[0]);
    if (!inside) return 0;
    memcpy(s->cand, s->head, (size_t)m * sizeof *s->cand);
    memcpy(s->prob, s->hprob, (size_t)m * sizeof *s->prob);
    *rest = 1.0 - mass > 0 ? 1.0 - mass : 0;
    return m;
}

int32_t bc_sampler_sample(bc_sampler *s, const float *logits) {
    const int V = s->n_vocab;
    float *w = s->work;
    const bool penalized = s->p.repetition_penalty != 1.0f || s->p.presence_penalty != 0.0f ||
                           s->p.frequency_penalty != 0.0f || s->n_bias > 0 || s->grammar != NULL;
    if (s->p.temperature == 0.0f && !penalized) { /* greedy on the raw logits: no copy */
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    memcpy(w, logits, (size_t)V * sizeof *w);

    /* The grammar's mask before anything else: what it forbids is -inf. */
    if (s->grammar != NULL) {
        if (s->allowed == NULL || s->grammar_failed ||
            bc_grammar_matcher_allowed(s->grammar, s->allowed, V) != BC_STATUS_OK)
            return -1;
        bool any = false;
        for (int i = 0; i < V; i++) {
            bool ok = (s->allowed[i >> 5] >> (i & 31)) & 1;
            if (!ok) w[i] = -INFINITY;
            any |= ok;
        }
        if (!any) return -1;
    }

    /* Logit biases first (OpenAI's logit_bias; a repeated id adds up). */
    for (int i = 0; i < s->n_bias; i++) w[s->bias_ids[i]] += s->bias[i];

    /* Repetition penalty, once per distinct id seen. */
    const float rp = s->p.repetition_penalty;
    if (rp != 1.0f)
        for (int i = 0; i < s->n_seen; i++) {
            float *x = &w[s->seen_ids[i]];
            *x = *x < 0 ? *x * rp : *x / rp;
        }
    /* OpenAI's presence and frequency penalties, over generated ids only. */
    if (s->p.presence_penalty != 0.0f || s->p.frequency_penalty != 0.0f)
        for (int i = 0; i < s->n_counted; i++) {
            int32_t id = s->counted_ids[i];
            w[id] -= s->p.presence_penalty + s->p.frequency_penalty * (float)s->counts[id];
        }

    if (s->p.temperature == 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (w[i] > w[best]) best = i;
        return best;
    }
    if (s->p.temperature != 1.0f)
        for (int i = 0; i < V; i++) w[i] /= s->p.temperature;

    /* Top-k: keep the logits >= the k-th largest (ties included). */
    int n = 0;
    if (s->p.top_k > 0 && s->p.top_k < V) {
        float kth;
        if (s->p.top_k <= 1024) {
            kth = kth_largest_heap(w, NULL, V, s->p.top_k, (float *)s->prob);
        } else {
            for (int i = 0; i < V; i++) s->cand[i] = i;
            kth = kth_largest(w, s->cand, V, s->p.top_k, (float *)s->prob);
        }
        for (int i = 0; i < V; i++)
            if (w[i] >= kth) s->cand[n++] = i;
    } else {
        for (int i = 0; i < V; i++) s->cand[n++] = i;
    }
    /* Top-p and min-p need the candidates in descending order; a plain draw
     * does not (it walks them in id order then: the same distribution,
     * without sorting 125,696 ids per token). */
    const bool ordered = s->p.top_p < 1.0f || s->p.min_p > 0.0f;
    double max = -INFINITY, sum = 0, rest = 0;
    for (int i = 0; i < n; i++)
        if (w[s->cand[i]] > max) max = w[s->cand[i]];
    int m = ordered && n > 4 * HEAD ? ordered_head(s, w, n, max, &rest) : 0;
    if (m > 0) {
        n = m; /* cand and prob hold the sorted head */
    } else {
        if (ordered) {
            tl_work = w;
            qsort(s->cand, (size_t)n, sizeof *s->cand, by_logit_desc);
        }
        /* Softmax over the candidates (the rest are -inf). */
        for (int i = 0; i < n; i++) sum += s->prob[i] = exp((double)w[s->cand[i]] - max);
        for (int i = 0; i < n; i++) s->prob[i] /= sum;
    }

    /* Top-p: a token goes when the probability of it and everything less
     * likely is <= 1 - top_p (summed from the least likely up, as HF's
     * ascending cumulative sum); the most likely always stays. */
    if (s->p.top_p < 1.0f) {
        double tail = rest, limit = 1.0 - (double)s->p.top_p; /* rest: the mass past the head */
        int keep = n;
        for (int i = n - 1; i > 0; i--) {
            tail += s->prob[i];
            if (tail > limit) break;
            keep = i;
        }
        n = keep;
    }
    /* Min-p: relative to the most likely candidate. */
    if (s->p.min_p > 0.0f) {
        double floor = (double)s->p.min_p * s->prob[0];
        int keep = 1;
        while (keep < n && s->prob[keep] >= floor) keep++;
        n = keep;
    }

    double total = 0;
    for (int i = 0; i < n; i++) total += s->prob[i];
    double u = uniform(s->rng) * total;
    int last = 0; /* the last candidate that can be drawn (rounding may leave u >= 0) */
    for (int i = 0; i < n; i++) {
        if (s->prob[i] > 0) last = i;
        u -= s->prob[i];
        if (u < 0) return s->cand[i];
    }
    return s->cand[last];
}

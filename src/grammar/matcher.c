/*
 * matcher.c - running a compiled grammar: the stack automaton over bytes,
 * the tokens it allows at each step, and the public bc_grammar_* calls.
 *
 * Map of the file:
 *   stack sets     step(): a set of stacks and one byte -> the next set
 *   token walks    walk(): a sorted token list as a trie, against a set
 *   mask cache     per "key" (a stack's top frames): the tokens allowed
 *                  whatever lies below, and the few that depend on it
 *   vocabulary     the tokenizer's pieces as the detokenizer writes them
 *   interface
 *
 * Why a cache: inside a JSON string nearly every one of the 125,696 pieces
 * is allowed, so walking the whole vocabulary at every token would cost
 * milliseconds. But what a stack allows mostly depends on its top few
 * frames only (the string's own rules): walking the vocabulary once for
 * those frames, with an unknown rest below them, sorts every token into
 * accepted (its bytes are used up before the frames are), rejected, or
 * uncertain (it reaches below the frames: a string's closing quote and
 * what follows, e.g. `",`). Each step then ORs the accepted bits and walks
 * only the uncertain tokens against the real stack.
 */
#include "grammar.h"

#include "../tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Stack sets                                                               */
/* ------------------------------------------------------------------------ */

/*
 * A set lives in an int32 arena: [n_stacks] then per stack [len][frames
 * bottom..top]. len 0 is the empty stack: with the whole stack known
 * ("whole" mode) the grammar has matched; with only its top frames known
 * (a cache walk) the frames below take over ("escaped"). len -1 marks a
 * parse that went below the known frames and then read more bytes: its
 * fate is unknown ("uncertain").
 */
typedef struct arena {
    int32_t *v;
    size_t n, cap;
    bool failed; /* out of memory, or a limit passed */
} arena;

static int32_t *arena_grow(arena *a, size_t k) {
    if (a->n + k > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->n + k) cap *= 2;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (v == NULL) {
            a->failed = true;
            return NULL;
        }
        a->v = v;
        a->cap = cap;
    }
    int32_t *p = a->v + a->n;
    a->n += k;
    return p;
}

typedef struct walker {
    const bc_grammar *g;
    arena a;
    int32_t *frames; /* (BC__G_MAX_DEPTH + n_rules + 2) expansion scratch */
    size_t set;      /* offset of the set being built */
    long budget;     /* expansions left in this step (bounds pathological grammars) */
} walker;

/* Adds frames[0, len) (or a marker, len <= 0) to the set being built,
 * unless it is there already. */
static void emit(walker *w, const int32_t *frames, int len) {
    int32_t *set = w->a.v + w->set;
    int32_t *p = set + 1;
    for (int i = 0; i < set[0]; i++) {
        int n = p[0];
        if (n == len && (n <= 0 || memcmp(p + 1, frames, (size_t)n * sizeof *frames) == 0)) return;
        p += 1 + (n > 0 ? n : 0);
    }
    if (set[0] >= BC__G_MAX_STACKS || len > BC__G_MAX_DEPTH) {
        w->a.failed = true;
        return;
    }
    int32_t *q = arena_grow(&w->a, 1 + (size_t)(len > 0 ? len : 0));
    if (q == NULL) return;
    set = w->a.v + w->set;
    q[0] = len;
    if (len > 0) memcpy(q + 1, frames, (size_t)len * sizeof *frames);
    set[0]++;
}

/* Expands frames[0, len) whose top is a position not yet at a BYTES
 * element: enters REFs, pops ENDs, and emits each stack that results.
 * Leaves frames[0, len) as it found them. */
static void expand(walker *w, int32_t *frames, int len) {
    if (--w->budget < 0) {
        w->a.failed = true;
        return;
    }
    if (len == 0) {
        emit(w, frames, 0);
        return;
    }
    const bc_grammar *g = w->g;
    int32_t q = frames[len - 1];
    const bc__gelem e = g->elems[q];
    if (e.kind == BC__G_BYTES) {
        emit(w, frames, len);
    } else if (e.kind == BC__G_END) {
        expand(w, frames, len - 1); /* the caller's frame already points past its REF */
    } else {
        if (len + 1 > BC__G_MAX_DEPTH) {
            w->a.failed = true;
            return;
        }
        bool tail = g->elems[q + 1].kind == BC__G_END;
        int base = tail ? len - 1 : len; /* a tail call replaces the frame */
        frames[len - 1] = q + 1;
        for (int a = g->rule_alts[e.arg]; a < g->rule_alts[e.arg + 1]; a++) {
            int32_t saved = frames[base];
            frames[base] = g->alt_start[a];
            expand(w, frames, base + 1);
            frames[base] = saved;
        }
        frames[len - 1] = q;
    }
}

/* Starts a new empty set at the arena's end; returns its offset. */
static size_t set_begin(walker *w) {
    size_t off = w->a.n;
    int32_t *p = arena_grow(&w->a, 1);
    if (p != NULL) *p = 0;
    w->set = off;
    return off;
}

/* The set reached from the set at `from` by byte b, appended to the arena.
 * Markers: an empty stack escapes (whole = false) or dies (whole = true)
 * on a byte; an uncertain marker stays uncertain. */
static size_t step(walker *w, size_t from, uint8_t b, bool whole) {
    size_t to = set_begin(w);
    w->budget = BC__G_MAX_EXPAND;
    if (w->a.failed) return to;
    int n = w->a.v[from];
    size_t p = from + 1;
    for (int i = 0; i < n; i++) {
        int32_t len = w->a.v[p];
        if (len <= 0) {
            if (len < 0 || !whole) {
                int32_t none = 0;
                emit(w, &none, -1);
            }
            p += 1;
            continue;
        }
        int32_t top = w->a.v[p + (size_t)len];
        if (bc__byteset_has(w->g->bytesets[w->g->elems[top].arg], b)) {
            memcpy(w->frames, w->a.v + p + 1, (size_t)len * sizeof *w->frames);
            w->frames[len - 1] = top + 1;
            expand(w, w->frames, len);
        }
        p += 1 + (size_t)len;
    }
    return to;
}

/* The set of a stack given by its frames (top first expanded). */
static size_t start_set(walker *w, const int32_t *frames, int len) {
    size_t off = set_begin(w);
    w->budget = BC__G_MAX_EXPAND;
    if (len > BC__G_MAX_DEPTH) {
        w->a.failed = true;
        return off;
    }
    memcpy(w->frames, frames, (size_t)len * sizeof *frames);
    expand(w, w->frames, len);
    return off;
}

/* What a set says at the end of a token: 2 some parse is alive (or ended
 * exactly there), 1 only uncertain parses, 0 none. */
static int set_verdict(const walker *w, size_t off) {
    const int32_t *s = w->a.v + off;
    int n = s[0], verdict = 0;
    const int32_t *p = s + 1;
    for (int i = 0; i < n; i++) {
        if (p[0] >= 0) return 2;
        verdict = 1;
        p += 1;
    }
    return verdict;
}

static bool walker_init(walker *w, const bc_grammar *g) {
    memset(w, 0, sizeof *w);
    w->g = g;
    w->frames = malloc((size_t)(BC__G_MAX_DEPTH + g->n_rules + 2) * sizeof *w->frames);
    return w->frames != NULL;
}

static void walker_free(walker *w) {
    free(w->a.v);
    free(w->frames);
}

/* ------------------------------------------------------------------------ */
/* Token walks                                                              */
/* ------------------------------------------------------------------------ */

/* Walks list from the set at `start`: sets bit id in accepted for each
 * token some parse gets through, and appends the uncertain ones (never with
 * whole = true) to *unc (ids, indices into list). Prefixes shared with the
 * previous token are not walked again; a prefix no parse survives skips
 * every token that starts with it. Returns -1 when the arena failed. */
static int walk(walker *w, const bc__tok_list *list, size_t start, bool whole, uint32_t *accepted, int32_t **unc,
                int *n_unc) {
    enum { MAXLEN = 1024 }; /* longer pieces are left out of the lists */
    size_t at[MAXLEN + 1];  /* at[d]: the set after the first d bytes of the current token */
    size_t mark[MAXLEN + 1];
    at[0] = start;
    mark[0] = w->a.n;
    int valid = 0, cap_unc = 0; /* at[0 .. valid] belong to the current token's prefix */
    for (int i = 0; i < list->n;) {
        const uint8_t *b = list->bytes[i];
        int len = list->len[i];
        int d = list->lcp[i] < valid ? list->lcp[i] : valid;
        w->a.n = mark[d];
        /* A verdict reached before the end holds for every token that
         * starts with these d bytes: none alive (rejected), or only
         * parses that left the known frames (uncertain). */
        int verdict = -1;
        while (d < len) {
            at[d + 1] = step(w, at[d], b[d], whole);
            if (w->a.failed) return -1;
            mark[d + 1] = w->a.n;
            d++;
            int v = set_verdict(w, at[d]);
            if (v == 0 || (v == 1 && d < len)) {
                verdict = v;
                break;
            }
        }
        int j = i + 1;
        if (verdict >= 0)
            while (j < list->n && list->lcp[j] >= d) j++;
        else
            verdict = set_verdict(w, at[d]);
        valid = d;
        for (int k = i; k < j; k++) {
            int32_t id = list->ids[k];
            if (verdict == 2) {
                accepted[id >> 5] |= 1u << (id & 31);
            } else if (verdict == 1 && unc != NULL) {
                if (*n_unc == cap_unc) {
                    cap_unc = cap_unc ? 2 * cap_unc : 256;
                    int32_t *t = realloc(*unc, (size_t)cap_unc * sizeof *t);
                    if (t == NULL) return -1;
                    *unc = t;
                }
                (*unc)[(*n_unc)++] = k;
            }
        }
        i = j;
    }
    w->a.n = mark[0];
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Sorted token lists                                                       */
/* ------------------------------------------------------------------------ */

static const uint8_t **tl_sort_bytes;
static const uint16_t *tl_sort_len;

static int cmp_tokens(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    int n = tl_sort_len[x] < tl_sort_len[y] ? tl_sort_len[x] : tl_sort_len[y];
    int c = memcmp(tl_sort_bytes[x], tl_sort_bytes[y], (size_t)n);
    if (c != 0) return c;
    return tl_sort_len[x] != tl_sort_len[y] ? (tl_sort_len[x] < tl_sort_len[y] ? -1 : 1) : (x < y ? -1 : 1);
}

static void list_free(bc__tok_list *l) {
    free(l->ids);
    free(l->bytes);
    free(l->len);
    free(l->lcp);
    memset(l, 0, sizeof *l);
}

static int list_alloc(bc__tok_list *l, int n) {
    l->n = n;
    l->ids = malloc((size_t)(n ? n : 1) * sizeof *l->ids);
    l->bytes = malloc((size_t)(n ? n : 1) * sizeof *l->bytes);
    l->len = malloc((size_t)(n ? n : 1) * sizeof *l->len);
    l->lcp = malloc((size_t)(n ? n : 1) * sizeof *l->lcp);
    return l->ids && l->bytes && l->len && l->lcp ? 0 : -1;
}

static void list_fill_lcp(bc__tok_list *l) {
    for (int i = 0; i < l->n; i++) {
        int c = 0;
        if (i > 0) {
            int n = l->len[i] < l->len[i - 1] ? l->len[i] : l->len[i - 1];
            while (c < n && l->bytes[i][c] == l->bytes[i - 1][c]) c++;
        }
        l->lcp[i] = (uint16_t)c;
    }
}

/* The tokens idx[0, n) (indices into src, in src's order) as a list. */
static int list_subset(bc__tok_list *out, const bc__tok_list *src, const int32_t *idx, int n) {
    if (list_alloc(out, n) != 0) return -1;
    for (int i = 0; i < n; i++) {
        out->ids[i] = src->ids[idx[i]];
        out->bytes[i] = src->bytes[idx[i]];
        out->len[i] = src->len[idx[i]];
    }
    list_fill_lcp(out);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Vocabulary                                                               */
/* ------------------------------------------------------------------------ */

static const uint8_t byte_values[256] = {
#define B4(x)  x, x + 1, x + 2, x + 3
#define B16(x) B4(x), B4(x + 4), B4(x + 8), B4(x + 12)
    B16(0),   B16(16),  B16(32),  B16(48),  B16(64),  B16(80),  B16(96),  B16(112),
    B16(128), B16(144), B16(160), B16(176), B16(192), B16(208), B16(224), B16(240),
#undef B16
#undef B4
};

static int vocab_build(bc__gvocab *v, const bc_tokenizer *tok) {
    int n = tok->sp.n_pieces;
    v->n_vocab = n;
    v->eos_id = tok->eos_id;
    v->strip_first = tok->normalizer.add_dummy_prefix || tok->normalizer.remove_extra_whitespaces;
    v->strip_repeats = tok->normalizer.remove_extra_whitespaces;
    v->kind = calloc((size_t)n, 1);
    v->bytes = calloc((size_t)n, sizeof *v->bytes);
    v->len = calloc((size_t)n, sizeof *v->len);
    int32_t *order = malloc((size_t)n * sizeof *order);
    int rc = -1;
    if (v->kind == NULL || v->bytes == NULL || v->len == NULL || order == NULL) goto done;
    int n_all = 0, n_ws = 0;
    for (int id = 0; id < n; id++) {
        int type = tok->types[tok->canonical_id[id]];
        size_t len;
        const uint8_t *p;
        if (type == BC__SP_BYTE) {
            const char *s = tok->piece_text + tok->piece_off[tok->canonical_id[id]]; /* "<0xXX>" */
            int hi = s[3] <= '9' ? s[3] - '0' : s[3] - 'A' + 10, lo = s[4] <= '9' ? s[4] - '0' : s[4] - 'A' + 10;
            p = &byte_values[hi * 16 + lo];
            len = 1;
            v->kind[id] = 3;
        } else if (type == BC__SP_NORMAL || type == BC__SP_USER_DEFINED) {
            p = (const uint8_t *)tok->decode_text + tok->decode_off[id];
            len = tok->decode_off[id + 1] - tok->decode_off[id];
            if (len == 0 || len > 1024) continue;
            v->kind[id] = tok->decode_leading_ws[id] ? 2 : 1;
        } else {
            continue; /* control, unknown, unused: never allowed */
        }
        v->bytes[id] = p;
        v->len[id] = (uint16_t)len;
        n_all++;
        if (v->kind[id] == 2 && len > 1) n_ws++;
    }
    /* Every allowed piece, sorted by its bytes. */
    if (list_alloc(&v->all, n_all) != 0 || list_alloc(&v->stripped, n_ws) != 0) goto done;
    int k = 0;
    for (int id = 0; id < n; id++)
        if (v->kind[id] != 0) order[k++] = id;
    tl_sort_bytes = v->bytes;
    tl_sort_len = v->len;
    qsort(order, (size_t)k, sizeof *order, cmp_tokens);
    for (int i = 0; i < k; i++) {
        v->all.ids[i] = order[i];
        v->all.bytes[i] = v->bytes[order[i]];
        v->all.len[i] = v->len[order[i]];
    }
    list_fill_lcp(&v->all);
    /* The pieces with a leading space, without it, for the first piece. */
    k = 0;
    for (int i = 0; i < v->all.n; i++) {
        int32_t id = v->all.ids[i];
        if (v->kind[id] == 2 && v->len[id] > 1) {
            v->stripped.ids[k] = id;
            v->stripped.bytes[k] = v->bytes[id] + 1;
            v->stripped.len[k] = (uint16_t)(v->len[id] - 1);
            k++;
        }
    }
    /* Sort again (dropping the space reorders them): by the stripped bytes. */
    {
        const uint8_t **sb = malloc((size_t)n * sizeof *sb);
        uint16_t *sl = malloc((size_t)n * sizeof *sl);
        if (sb == NULL || sl == NULL) {
            free(sb);
            free(sl);
            goto done;
        }
        for (int i = 0; i < k; i++) {
            sb[v->stripped.ids[i]] = v->stripped.bytes[i];
            sl[v->stripped.ids[i]] = v->stripped.len[i];
            order[i] = v->stripped.ids[i];
        }
        tl_sort_bytes = sb;
        tl_sort_len = sl;
        qsort(order, (size_t)k, sizeof *order, cmp_tokens);
        for (int i = 0; i < k; i++) {
            v->stripped.ids[i] = order[i];
            v->stripped.bytes[i] = sb[order[i]];
            v->stripped.len[i] = sl[order[i]];
        }
        free(sb);
        free(sl);
        list_fill_lcp(&v->stripped);
    }
    rc = 0;
done:
    tl_sort_bytes = NULL;
    tl_sort_len = NULL;
    free(order);
    return rc;
}

static void vocab_free(bc__gvocab *v) {
    list_free(&v->all);
    list_free(&v->stripped);
    free(v->kind);
    free(v->bytes);
    free(v->len);
}

/* ------------------------------------------------------------------------ */
/* Mask cache                                                               */
/* ------------------------------------------------------------------------ */

static size_t key_hash(const int32_t *key, int n, bool whole) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n ^ (whole ? 0x100 : 0);
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)key[i]) * 0x100000001B3ull;
    return (size_t)(h ^ h >> 29);
}

/* The cached mask of a stack whose top n frames are key (whole: that is
 * all of it), computed by a walk the first time. NULL on failure. */
static const bc__gmask *mask_get(bc_grammar *g, walker *w, const int32_t *key, int n, bool whole) {
    size_t h = key_hash(key, n, whole);
    pthread_mutex_lock(&g->mu);
    bc__gmask *m = g->n_buckets ? g->buckets[h & (g->n_buckets - 1)] : NULL;
    for (; m != NULL; m = m->next)
        if (m->n_key == n && m->whole == whole && memcmp(m->key, key, (size_t)n * sizeof *key) == 0) break;
    pthread_mutex_unlock(&g->mu);
    if (m != NULL) return m;

    const bc__tok_list *all = &g->vocab.all;
    m = calloc(1, sizeof *m);
    int32_t *unc = NULL;
    int n_unc = 0;
    if (m == NULL) return NULL;
    m->accepted = calloc((size_t)(g->vocab.n_vocab + 31) / 32, sizeof *m->accepted);
    if (m->accepted == NULL) goto fail;
    memcpy(m->key, key, (size_t)n * sizeof *key);
    m->n_key = n;
    m->whole = whole;
    size_t mark = w->a.n;
    size_t start = start_set(w, key, n);
    if (w->a.failed || walk(w, all, start, whole, m->accepted, &unc, &n_unc) != 0) goto fail;
    w->a.n = mark;
    if (list_subset(&m->uncertain, all, unc, n_unc) != 0) goto fail;
    free(unc);

    pthread_mutex_lock(&g->mu);
    if (g->n_masks + 1 > g->n_buckets / 2) { /* grow the table */
        size_t nb = g->n_buckets ? 2 * g->n_buckets : 64;
        bc__gmask **b = calloc(nb, sizeof *b);
        if (b != NULL) {
            for (size_t i = 0; i < g->n_buckets; i++)
                for (bc__gmask *x = g->buckets[i], *next; x != NULL; x = next) {
                    next = x->next;
                    size_t hx = key_hash(x->key, x->n_key, x->whole) & (nb - 1);
                    x->next = b[hx];
                    b[hx] = x;
                }
            free(g->buckets);
            g->buckets = b;
            g->n_buckets = nb;
        }
    }
    if (g->n_buckets == 0) {
        pthread_mutex_unlock(&g->mu);
        goto fail_unc_freed;
    }
    m->next = g->buckets[h & (g->n_buckets - 1)];
    g->buckets[h & (g->n_buckets - 1)] = m;
    g->n_masks++;
    pthread_mutex_unlock(&g->mu);
    return m;
fail:
    free(unc);
fail_unc_freed:
    list_free(&m->uncertain);
    free(m->accepted);
    free(m);
    return NULL;
}

static void masks_free(bc_grammar *g) {
    for (size_t i = 0; i < g->n_buckets; i++)
        for (bc__gmask *x = g->buckets[i], *next; x != NULL; x = next) {
            next = x->next;
            list_free(&x->uncertain);
            free(x->accepted);
            free(x);
        }
    free(g->buckets);
}

/* ------------------------------------------------------------------------ */
/* Matchers                                                                 */
/* ------------------------------------------------------------------------ */

struct bc_grammar_matcher {
    bc_grammar *g;
    walker w;
    int32_t *state; /* the current set, as in the arena */
    size_t n_state, cap_state;
    bool done; /* the end-of-sequence id was accepted */
    /* The detokenizer's leading-space state (see detokenizer.c). */
    bool is_bos_ws, bos_ws_seen, any_text;
};

/* Copies the set at off in the walker's arena into the matcher's state. */
static int keep_state(bc_grammar_matcher *m, size_t off) {
    const int32_t *s = m->w.a.v + off;
    size_t n = 1;
    const int32_t *p = s + 1;
    for (int i = 0; i < s[0]; i++) {
        size_t k = 1 + (size_t)(p[0] > 0 ? p[0] : 0);
        n += k;
        p += k;
    }
    if (n > m->cap_state) {
        int32_t *t = realloc(m->state, n * sizeof *t);
        if (t == NULL) return -1;
        m->state = t;
        m->cap_state = n;
    }
    memcpy(m->state, s, n * sizeof *s);
    m->n_state = n;
    return 0;
}

/* The state's set, copied to the arena's end; returns its offset. */
static size_t load_state(bc_grammar_matcher *m) {
    size_t off = m->w.a.n;
    int32_t *p = arena_grow(&m->w.a, m->n_state);
    if (p != NULL) memcpy(p, m->state, m->n_state * sizeof *p);
    return off;
}

static bool state_can_end(const int32_t *s) {
    const int32_t *p = s + 1;
    for (int i = 0; i < s[0]; i++) {
        if (p[0] == 0) return true;
        p += 1 + (p[0] > 0 ? p[0] : 0);
    }
    return false;
}

/* Whether the detokenizer would drop a leading space of the next piece. */
static bool strip_now(const bc_grammar_matcher *m) {
    return m->g->vocab.strip_first && m->is_bos_ws && !m->bos_ws_seen && !m->any_text;
}

static int initial_state(bc_grammar_matcher *m) {
    const bc_grammar *g = m->g;
    m->w.a.n = 0;
    m->w.a.failed = false;
    size_t off = set_begin(&m->w);
    m->w.budget = BC__G_MAX_EXPAND;
    for (int a = g->rule_alts[g->root]; a < g->rule_alts[g->root + 1] && !m->w.a.failed; a++) {
        m->w.frames[0] = g->alt_start[a];
        expand(&m->w, m->w.frames, 1);
    }
    if (m->w.a.failed || keep_state(m, off) != 0) return -1;
    m->w.a.n = 0;
    m->done = false;
    m->is_bos_ws = true;
    m->bos_ws_seen = m->any_text = false;
    return 0;
}

/* Runs bytes through the state; false (state unchanged) when no parse
 * survives them. */
static bool advance(bc_grammar_matcher *m, const uint8_t *bytes, size_t n) {
    m->w.a.n = 0;
    m->w.a.failed = false;
    size_t at = load_state(m);
    for (size_t i = 0; i < n && !m->w.a.failed; i++) {
        at = step(&m->w, at, bytes[i], true);
        if (m->w.a.v[at] == 0) return false;
    }
    if (m->w.a.failed) return false;
    return keep_state(m, at) == 0;
}

/* ------------------------------------------------------------------------ */
/* Interface                                                                */
/* ------------------------------------------------------------------------ */

static bc_status grammar_finish(const bc_tokenizer *tok, bc_grammar *g, bc__err *err) {
    pthread_mutex_init(&g->mu, NULL);
    g->tok = tok;
    if (tok != NULL && vocab_build(&g->vocab, tok) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "grammar: out of memory"), BC_STATUS_ERROR_MEMORY;
    return BC_STATUS_OK;
}

bc_status bc_grammar_init_gbnf(const bc_tokenizer *tok, const char *gbnf, size_t len, bc_grammar **out, char *err,
                               size_t err_size) {
    bc__err e = {0};
    if (out == NULL) return BC_STATUS_ERROR_ARGUMENT;
    *out = NULL;
    if (gbnf == NULL && len > 0) {
        bc__errorf(&e, BC_STATUS_ERROR_ARGUMENT, "grammar: no text");
        bc__err_copy(&e, err, err_size);
        return e.status;
    }
    bc_grammar *g = calloc(1, sizeof *g);
    if (g == NULL) return BC_STATUS_ERROR_MEMORY;
    if (bc__gbnf_compile(g, gbnf ? gbnf : "", len, &e) != 0 || grammar_finish(tok, g, &e) != BC_STATUS_OK) {
        bc__err_copy(&e, err, err_size);
        bc_grammar_free(g);
        return e.status ? e.status : BC_STATUS_ERROR_MEMORY;
    }
    *out = g;
    return BC_STATUS_OK;
}

bc_status bc_grammar_init_json_schema(const bc_tokenizer *tok, const char *schema, size_t len, bc_grammar **out,
                                      char *err, size_t err_size) {
    if (out == NULL) return BC_STATUS_ERROR_ARGUMENT;
    *out = NULL;
    char *gbnf = NULL;
    bc_status st = bc_json_schema_to_gbnf(schema, len, &gbnf, err, err_size);
    if (st != BC_STATUS_OK) return st;
    st = bc_grammar_init_gbnf(tok, gbnf, strlen(gbnf), out, err, err_size);
    free(gbnf);
    return st;
}

void bc_grammar_free(bc_grammar *g) {
    if (g == NULL) return;
    bc__gbnf_free(g);
    vocab_free(&g->vocab);
    masks_free(g);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void bc_grammar_match(const bc_grammar *g, const char *text, size_t len, bool *prefix, bool *complete) {
    if (prefix) *prefix = false;
    if (complete) *complete = false;
    if (g == NULL || (text == NULL && len > 0)) return;
    bc_grammar_matcher *m;
    if (bc_grammar_matcher_init(g, &m) != BC_STATUS_OK) return;
    if (advance(m, (const uint8_t *)text, len)) {
        if (prefix) *prefix = true;
        if (complete) *complete = state_can_end(m->state);
    }
    bc_grammar_matcher_free(m);
}

bc_status bc_grammar_matcher_init(const bc_grammar *g, bc_grammar_matcher **out) {
    if (out == NULL) return BC_STATUS_ERROR_ARGUMENT;
    *out = NULL;
    if (g == NULL) return BC_STATUS_ERROR_ARGUMENT;
    bc_grammar_matcher *m = calloc(1, sizeof *m);
    if (m == NULL) return BC_STATUS_ERROR_MEMORY;
    m->g = (bc_grammar *)g; /* only its mask cache changes, under its lock */
    if (!walker_init(&m->w, g) || initial_state(m) != 0) {
        bc_grammar_matcher_free(m);
        return BC_STATUS_ERROR_MEMORY;
    }
    *out = m;
    return BC_STATUS_OK;
}

void bc_grammar_matcher_free(bc_grammar_matcher *m) {
    if (m == NULL) return;
    walker_free(&m->w);
    free(m->state);
    free(m);
}

void bc_grammar_matcher_reset(bc_grammar_matcher *m) {
    if (m != NULL) initial_state(m);
}

bool bc_grammar_matcher_can_end(const bc_grammar_matcher *m) {
    return m != NULL && !m->done && state_can_end(m->state);
}

bc_status bc_grammar_matcher_allowed(bc_grammar_matcher *m, uint32_t *allowed, int n_vocab) {
    if (m == NULL || allowed == NULL || n_vocab < 0 || m->g->tok == NULL) return BC_STATUS_ERROR_ARGUMENT;
    bc_grammar *g = m->g;
    const bc__gvocab *v = &g->vocab;
    size_t words = ((size_t)n_vocab + 31) / 32, own = ((size_t)v->n_vocab + 31) / 32;
    uint32_t *bits = allowed;
    memset(bits, 0, words * sizeof *bits);
    if (m->done) return BC_STATUS_OK;
    uint32_t *scratch = NULL;
    if (words < own) { /* the model has fewer ids than the tokenizer: work on a full-size copy */
        scratch = calloc(own, sizeof *scratch);
        if (scratch == NULL) return BC_STATUS_ERROR_MEMORY;
        bits = scratch;
    }
    walker *w = &m->w;
    w->a.n = 0;
    w->a.failed = false;
    bc_status st = BC_STATUS_OK;
    if (strip_now(m)) {
        /* The first piece: pieces with a leading space count without it. */
        uint32_t *tmp = calloc(own, sizeof *tmp);
        size_t at = load_state(m);
        if (tmp == NULL || walk(w, &v->all, at, true, tmp, NULL, NULL) != 0 ||
            walk(w, &v->stripped, at, true, bits, NULL, NULL) != 0) {
            st = BC_STATUS_ERROR_MEMORY;
        } else {
            for (int i = 0; i < v->all.n; i++) {
                int32_t id = v->all.ids[i];
                if (v->kind[id] != 2 && ((tmp[id >> 5] >> (id & 31)) & 1)) bits[id >> 5] |= 1u << (id & 31);
            }
        }
        free(tmp);
    } else {
        const int32_t *p = m->state + 1;
        for (int i = 0; i < m->state[0] && st == BC_STATUS_OK; i++) {
            int len = p[0];
            if (len > 0) {
                int k = len < BC__G_KEY ? len : BC__G_KEY;
                const bc__gmask *mk = mask_get(g, w, p + 1 + len - k, k, k == len);
                if (mk == NULL) {
                    st = BC_STATUS_ERROR_MEMORY;
                    break;
                }
                for (size_t j = 0; j < own; j++) bits[j] |= mk->accepted[j];
                if (mk->uncertain.n > 0) {
                    w->a.n = 0;
                    size_t at = start_set(w, p + 1, len);
                    if (w->a.failed || walk(w, &mk->uncertain, at, true, bits, NULL, NULL) != 0)
                        st = BC_STATUS_ERROR_MEMORY;
                }
            }
            p += 1 + (len > 0 ? len : 0);
        }
    }
    if (bc_grammar_matcher_can_end(m) && v->eos_id >= 0) bits[v->eos_id >> 5] |= 1u << (v->eos_id & 31);
    if (scratch != NULL) {
        memcpy(allowed, scratch, words * sizeof *allowed);
        if (n_vocab % 32) allowed[words - 1] &= (1u << (n_vocab % 32)) - 1;
        free(scratch);
    }
    return st;
}

bc_status bc_grammar_matcher_accept(bc_grammar_matcher *m, int32_t id) {
    if (m == NULL || m->g->tok == NULL || m->done) return BC_STATUS_ERROR_ARGUMENT;
    const bc__gvocab *v = &m->g->vocab;
    if (id == v->eos_id && id >= 0) {
        if (!bc_grammar_matcher_can_end(m)) return BC_STATUS_ERROR_ARGUMENT;
        m->done = true;
        return BC_STATUS_OK;
    }
    if (id < 0 || id >= v->n_vocab || v->kind[id] == 0) return BC_STATUS_ERROR_ARGUMENT;
    const uint8_t *b = v->bytes[id];
    size_t n = v->len[id];
    bool strip = v->kind[id] == 2 && strip_now(m);
    if (strip) {
        b++;
        n--;
    }
    if (n == 0 && !strip) return BC_STATUS_ERROR_ARGUMENT;
    if (!advance(m, b, n)) return m->w.a.failed ? BC_STATUS_ERROR_MEMORY : BC_STATUS_ERROR_ARGUMENT;
    /* The detokenizer's leading-space bookkeeping, as in detokenizer.c. */
    if (v->kind[id] == 3) {
        m->any_text = true;
    } else {
        if (m->bos_ws_seen || m->any_text) m->is_bos_ws = false;
        m->bos_ws_seen = strip && !v->strip_repeats;
        if (n > 0) m->any_text = true;
    }
    return BC_STATUS_OK;
}

/*
 * matcher.c - running a compiled grammar: the stack automaton over bytes,
 * the tokens it allows at each step, and the public bc_grammar_* calls.
 *
 * Map of the file:
 *   stack sets     step(): a set of stacks and one byte -> the next set
 *   token walks    walk(): a sorted token list as a trie, against a set
 *   mask cache     per "key" (a stack's top frames): the tokens allowed
 *                  whatever lies below, and the few that depend on it
 *   matchers       a state (one set of stacks) advanced token by token
 *   interface
 * The tokenizer's pieces as the detokenizer writes them, sorted for the
 * walks, are vocab.c's.
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
#include "grammar/grammar.h"

#include "grammar/gbnf.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Stack sets                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Stacks share their tails: a stack is its top node, and a node holds a
 * position and its parent node (-1 below the bottom frame). Nodes are
 * hash-consed, so equal stacks are the same node and a set is a list of
 * distinct node ids; pushing a frame or copying a stack costs one node.
 * Nodes and sets live in two arenas that a walk rolls back as it backs
 * out of a token's bytes.
 *
 * Two ids are not nodes: STACK_EMPTY, the empty stack (with the whole stack
 * known, "whole" mode, the grammar has matched; with only its top frames
 * known, in a cache walk, the frames below take over: "escaped"), and
 * STACK_UNCERTAIN, a parse that went below the known frames and then read
 * more bytes, whose fate is unknown.
 */
enum { STACK_EMPTY = -1, STACK_UNCERTAIN = -2, HASH_SLOTS = 1 << 14, HASH_PROBES = 8, SEEN_SLOTS = 1 << 12 };

/* (pos, parent) pairs expanded while building the current set: expanding
 * one again would emit the same stacks, so it is skipped. Without this a
 * nullable item repeated n times ({0,n} of x?) reaches the same stack by
 * 2^n paths. Entries of older sets are told apart by their generation. */
typedef struct seen_slot {
    int32_t pos, parent;
    uint32_t gen;
} seen_slot;

typedef struct gnode {
    int32_t pos, parent, depth;
} gnode;

/* The sets a memo walk has met, as states with their transitions. */
enum { DFA_MAX_STATES = 8192, DFA_SLOTS = 2 * DFA_MAX_STATES };
typedef struct dfa {
    size_t *off;    /* (n) where each state's set is in the set arena */
    int32_t *trans; /* (n x 256) the state a byte leads to, -1 not yet known */
    int32_t *slots; /* (DFA_SLOTS) states by their sets' contents */
    size_t n_slots, cap_off, cap_trans;
    int n;
} dfa;

typedef struct walker {
    const bc_grammar *g;
    dfa dfa;
    gnode *nodes;
    size_t n_nodes, cap_nodes;
    int32_t *sets; /* [n, ids...] per set */
    size_t n_sets, cap_sets;
    int32_t *hash;   /* (HASH_SLOTS) node ids by (pos, parent); checked on use, so stale ids are harmless */
    seen_slot *seen; /* (SEEN_SLOTS) */
    uint32_t gen;    /* the current set's generation in seen */
    size_t set;      /* offset of the set being built */
    long budget;     /* expansions left for this byte (bounds pathological grammars) */
    long work;       /* expansions left for this token's mask (LONG_MAX outside bc_grammar_matcher_allowed) */
    bool failed;     /* out of memory, or a limit passed */
} walker;

static bool grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * size);
    if (q == NULL) return false;
    *p = q;
    *cap = c;
    return true;
}

/* The node (pos, parent), made if new. -1 on failure. */
static int32_t node_get(walker *w, int32_t pos, int32_t parent) {
    uint32_t h = ((uint32_t)pos * 0x9E3779B1u) ^ ((uint32_t)parent * 0x85EBCA77u);
    h ^= h >> 15;
    size_t slot = h & (HASH_SLOTS - 1), victim = slot;
    for (int k = 0; k < HASH_PROBES; k++) {
        size_t i = (slot + (size_t)k) & (HASH_SLOTS - 1);
        int32_t id = w->hash[i];
        if (id >= 0 && (size_t)id < w->n_nodes && w->nodes[id].pos == pos && w->nodes[id].parent == parent) return id;
        if (id < 0 || (size_t)id >= w->n_nodes) victim = i;
    }
    int32_t depth = parent >= 0 ? w->nodes[parent].depth + 1 : 1;
    if (depth > BC__G_MAX_DEPTH || !grow((void **)&w->nodes, &w->cap_nodes, w->n_nodes + 1, sizeof *w->nodes)) {
        w->failed = true;
        return -1;
    }
    int32_t id = (int32_t)w->n_nodes++;
    w->nodes[id] = (gnode){pos, parent, depth};
    w->hash[victim] = id;
    return id;
}

/* Adds a stack (a node id or a marker) to the set being built. */
static void emit(walker *w, int32_t id) {
    int32_t *set = w->sets + w->set;
    for (int i = 1; i <= set[0]; i++)
        if (set[i] == id) return;
    if (set[0] >= BC__G_MAX_STACKS || !grow((void **)&w->sets, &w->cap_sets, w->n_sets + 1, sizeof *w->sets)) {
        w->failed = true;
        return;
    }
    w->sets[w->n_sets++] = id;
    w->sets[w->set]++;
}

/* Expands the stack (pos, parent) whose top is not yet at a BYTES
 * element: enters REFs, pops ENDs, and emits each stack that results. */
static void expand(walker *w, int32_t pos, int32_t parent) {
    if (--w->budget < 0 || --w->work < 0 || w->failed) {
        w->failed = true;
        return;
    }
    uint32_t h = ((uint32_t)pos * 0x85EBCA77u) ^ ((uint32_t)parent * 0xC2B2AE3Du);
    h ^= h >> 13;
    for (int k = 0; k < 4; k++) {
        seen_slot *e = &w->seen[(h + (uint32_t)k) & (SEEN_SLOTS - 1)];
        if (e->gen == w->gen && e->pos == pos && e->parent == parent) return;
        if (e->gen != w->gen) {
            *e = (seen_slot){pos, parent, w->gen};
            break;
        }
    }
    const bc_grammar *g = w->g;
    const bc__gelem e = g->elems[pos];
    if (e.kind == BC__G_BYTES) {
        int32_t id = node_get(w, pos, parent);
        if (id >= 0) emit(w, id);
    } else if (e.kind == BC__G_END) {
        if (parent < 0)
            emit(w, STACK_EMPTY);
        else /* the caller's frame already points past its REF */
            expand(w, w->nodes[parent].pos, w->nodes[parent].parent);
    } else {
        int32_t below = parent; /* a REF that ends its alternative is a tail call: no frame to come back to */
        if (g->elems[pos + 1].kind != BC__G_END && (below = node_get(w, pos + 1, parent)) < 0) return;
        for (int a = g->rule_alts[e.arg]; a < g->rule_alts[e.arg + 1]; a++) expand(w, g->alt_start[a], below);
    }
}

/* Starts a new empty set at the arena's end; returns its offset. */
static size_t set_begin(walker *w) {
    size_t off = w->n_sets;
    w->budget = BC__G_MAX_EXPAND;
    if (!grow((void **)&w->sets, &w->cap_sets, w->n_sets + 1, sizeof *w->sets)) {
        w->failed = true;
        return 0;
    }
    w->sets[w->n_sets++] = 0;
    w->set = off;
    if (++w->gen == 0) { /* wrapped: forget every entry */
        memset(w->seen, 0, SEEN_SLOTS * sizeof *w->seen);
        w->gen = 1;
    }
    return off;
}

/* The set reached from the set at `from` by byte b, appended to the arena.
 * An empty stack escapes (whole = false) or dies (whole = true) on a byte;
 * an uncertain one stays uncertain. */
static size_t step(walker *w, size_t from, uint8_t b, bool whole) {
    size_t to = set_begin(w);
    if (w->failed) return to;
    int n = w->sets[from];
    for (int i = 1; i <= n && !w->failed; i++) {
        int32_t id = w->sets[from + (size_t)i];
        if (id < 0) {
            if (id == STACK_UNCERTAIN || !whole) emit(w, STACK_UNCERTAIN);
            continue;
        }
        gnode nd = w->nodes[id];
        if (bc__byteset_has(w->g->bytesets[w->g->elems[nd.pos].arg], b)) expand(w, nd.pos + 1, nd.parent);
    }
    return to;
}

/* A set of one stack: frames[0, n) bottom to top, on top of parent, the
 * top expanded. */
static size_t start_set(walker *w, const int32_t *frames, int n, int32_t parent) {
    for (int i = 0; i < n - 1 && !w->failed; i++) parent = node_get(w, frames[i], parent);
    size_t off = set_begin(w);
    if (!w->failed && n > 0) expand(w, frames[n - 1], parent);
    return off;
}

/* What a set says at the end of a token: 2 some parse is alive (or ended
 * exactly there), 1 only uncertain parses, 0 none. */
static int set_verdict(const walker *w, size_t off) {
    int n = w->sets[off], verdict = 0;
    for (int i = 1; i <= n; i++) {
        if (w->sets[off + (size_t)i] != STACK_UNCERTAIN) return 2;
        verdict = 1;
    }
    return verdict;
}

static bool walker_init(walker *w, const bc_grammar *g) {
    memset(w, 0, sizeof *w);
    w->g = g;
    w->hash = malloc(HASH_SLOTS * sizeof *w->hash);
    w->seen = calloc(SEEN_SLOTS, sizeof *w->seen);
    w->dfa.n_slots = DFA_SLOTS;
    w->dfa.slots = malloc(DFA_SLOTS * sizeof *w->dfa.slots);
    w->gen = 1;
    if (w->dfa.slots == NULL) return false;
    w->work = LONG_MAX;
    if (w->hash == NULL || w->seen == NULL) return false;
    memset(w->hash, 0xFF, HASH_SLOTS * sizeof *w->hash);
    return true;
}

static void walker_free(walker *w) {
    free(w->nodes);
    free(w->sets);
    free(w->hash);
    free(w->seen);
    free(w->dfa.off);
    free(w->dfa.trans);
    free(w->dfa.slots);
}

/* ------------------------------------------------------------------------ */
/* Token walks                                                              */
/* ------------------------------------------------------------------------ */

/* Walks list from the set at `start`: sets bit id in accepted for each
 * token some parse gets through, and appends the uncertain ones (never with
 * whole = true) to *unc (ids, indices into list). Prefixes shared with the
 * previous token are not walked again; a prefix no parse survives skips
 * every token that starts with it. Returns -1 when the arena failed. */
/* The first token after i that does not start with p[0, d) (token i
 * does), by binary search: the tokens that share a prefix are a run. */
static int prefix_end(const bc__tok_list *list, int i, const uint8_t *p, int d) {
    int lo = i + 1, hi = list->n; /* the answer is in [lo, hi] */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (list->len[mid] >= d && memcmp(list->bytes[mid], p, (size_t)d) == 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Interns the set just built at the arena's end (offset off) as a state
 * of w's automaton: an equal set seen before gives its state, and the new
 * copy is dropped. -1 when the table is full. */
static int32_t dfa_intern(walker *w, size_t off) {
    dfa *a = &w->dfa;
    const int32_t *set = w->sets + off;
    uint32_t h = 2166136261u;
    for (int i = 0; i <= set[0]; i++) h = (h ^ (uint32_t)set[i]) * 16777619u;
    for (size_t k = 0;; k++) {
        size_t slot = (h + k) & (a->n_slots - 1);
        int32_t s = a->slots[slot];
        if (s < 0) {
            if (a->n >= DFA_MAX_STATES) return -1;
            if (!grow((void **)&a->off, &a->cap_off, (size_t)a->n + 1, sizeof *a->off) ||
                !grow((void **)&a->trans, &a->cap_trans, ((size_t)a->n + 1) * 256, sizeof *a->trans))
                return -1;
            a->off[a->n] = off;
            memset(a->trans + (size_t)a->n * 256, 0xFF, 256 * sizeof *a->trans);
            a->slots[slot] = a->n;
            return a->n++;
        }
        const int32_t *other = w->sets + a->off[s];
        if (other[0] == set[0] && memcmp(other + 1, set + 1, (size_t)set[0] * sizeof *set) == 0) {
            w->n_sets = off; /* the copy just built */
            return s;
        }
    }
}

/* Walks list from the set at `start`: sets bit id in accepted for each
 * token some parse gets through, and appends the uncertain ones (never with
 * whole = true) to *unc (indices into list). Prefixes shared with the
 * previous token are not walked again; a prefix no parse survives skips
 * every token that starts with it. With memo (for walks over the whole
 * vocabulary), the sets met are kept as states of an automaton built as
 * the walk goes: inside a string the set after every character is the
 * same, so most bytes cost one table lookup instead of a step. Returns -1
 * when the arena failed. */
static int walk(walker *w, const bc__tok_list *list, size_t start, bool whole, bool memo, uint32_t *accepted,
                int32_t **unc, int *n_unc) {
    enum { MAXLEN = 1024 }; /* longer pieces are left out of the lists */
    size_t at[MAXLEN + 1];  /* at[d]: the set after the first d bytes of the current token */
    int32_t state[MAXLEN + 1];
    size_t mark_sets[MAXLEN + 1], mark_nodes[MAXLEN + 1];
    at[0] = start;
    mark_sets[0] = w->n_sets;
    mark_nodes[0] = w->n_nodes;
    dfa *a = &w->dfa;
    if (memo) {
        a->n = 0;
        memset(a->slots, 0xFF, a->n_slots * sizeof *a->slots);
        state[0] = dfa_intern(w, start);
        memo = state[0] >= 0;
    }
    int valid = 0, cap_unc = 0; /* at[0 .. valid] belong to the current token's prefix */
    for (int i = 0; i < list->n;) {
        const uint8_t *b = list->bytes[i];
        int len = list->len[i];
        int d = list->lcp[i] < valid ? list->lcp[i] : valid;
        if (!memo) { /* with memo, sets and nodes stay for the whole walk */
            w->n_sets = mark_sets[d];
            w->n_nodes = mark_nodes[d];
        }
        /* A verdict reached before the end holds for every token that
         * starts with these d bytes: none alive (rejected), or only
         * parses that left the known frames (uncertain). */
        int verdict = -1;
        while (d < len) {
            int32_t next = memo ? a->trans[(size_t)state[d] * 256 + b[d]] : -1;
            if (next >= 0) {
                at[d + 1] = a->off[next];
            } else {
                at[d + 1] = step(w, at[d], b[d], whole);
                if (w->failed) return -1;
                if (memo) {
                    next = dfa_intern(w, at[d + 1]);
                    if (next < 0) {
                        memo = false; /* the table is full: go on without it */
                    } else {
                        a->trans[(size_t)state[d] * 256 + b[d]] = next;
                        at[d + 1] = a->off[next];
                    }
                }
            }
            state[d + 1] = next;
            mark_sets[d + 1] = w->n_sets;
            mark_nodes[d + 1] = w->n_nodes;
            d++;
            int v = set_verdict(w, at[d]);
            if (v == 0 || (v == 1 && d < len)) {
                verdict = v;
                break;
            }
        }
        int j = i + 1;
        if (verdict >= 0)
            j = prefix_end(list, i, b, d);
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
    w->n_sets = mark_sets[0];
    w->n_nodes = mark_nodes[0];
    return 0;
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

    const bc__tok_list *all = &g->vocab->all;
    m = calloc(1, sizeof *m);
    int32_t *unc = NULL;
    int n_unc = 0;
    if (m == NULL) return NULL;
    m->accepted = calloc((size_t)(g->vocab->n_vocab + 31) / 32, sizeof *m->accepted);
    if (m->accepted == NULL) goto fail;
    memcpy(m->key, key, (size_t)n * sizeof *key);
    m->n_key = n;
    m->whole = whole;
    size_t mark_sets = w->n_sets, mark_nodes = w->n_nodes;
    size_t start = start_set(w, key, n, -1);
    if (w->failed || walk(w, all, start, whole, true, m->accepted, &unc, &n_unc) != 0) goto fail;
    w->n_sets = mark_sets;
    w->n_nodes = mark_nodes;
    if (bc__tok_list_subset(&m->uncertain, all, unc, n_unc) != 0) goto fail;
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
    bc__tok_list_free(&m->uncertain);
    free(m->accepted);
    free(m);
    return NULL;
}

static void masks_free(bc_grammar *g) {
    for (size_t i = 0; i < g->n_buckets; i++)
        for (bc__gmask *x = g->buckets[i], *next; x != NULL; x = next) {
            next = x->next;
            bc__tok_list_free(&x->uncertain);
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
    walker w; /* its nodes [0, base_nodes) and the set at offset 0 are the state */
    size_t base_nodes, base_sets;
    int32_t *map, *ids; /* compaction scratch: (nodes) old id -> new, (stacks) the set */
    size_t cap_map, cap_ids;
    gnode *copy; /* (nodes) the compacted nodes */
    size_t cap_copy;
    bool done; /* the end-of-sequence id was accepted */
    /* The detokenizer's leading-space state (see detokenizer.c). */
    bool is_bos_ws, bos_ws_seen, any_text;
};

/* Forgets whatever a walk added after the state. */
static void rollback(bc_grammar_matcher *m) {
    m->w.n_nodes = m->base_nodes;
    m->w.n_sets = m->base_sets;
    m->w.failed = false;
}

/* Makes the set at off the state: its stacks' nodes are copied to the
 * front of the node arena (parents first), everything else dropped. */
static int keep_state(bc_grammar_matcher *m, size_t off) {
    walker *w = &m->w;
    int n = w->sets[off];
    if (!grow((void **)&m->map, &m->cap_map, w->n_nodes + 1, sizeof *m->map) ||
        !grow((void **)&m->copy, &m->cap_copy, w->n_nodes + 1, sizeof *m->copy) ||
        !grow((void **)&m->ids, &m->cap_ids, (size_t)n + BC__G_MAX_DEPTH + 1, sizeof *m->ids))
        return -1;
    memset(m->map, 0xFF, w->n_nodes * sizeof *m->map);
    memcpy(m->ids, w->sets + off + 1, (size_t)n * sizeof *m->ids);
    int32_t *chain = m->ids + n;
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        int depth = 0;
        for (int32_t c = m->ids[i]; c >= 0 && m->map[c] < 0; c = w->nodes[c].parent) chain[depth++] = c;
        while (depth > 0) {
            int32_t c = chain[--depth];
            gnode nd = w->nodes[c];
            if (nd.parent >= 0) nd.parent = m->map[nd.parent];
            m->copy[k] = nd;
            m->map[c] = (int32_t)k++;
        }
    }
    if (k > 0) memcpy(w->nodes, m->copy, k * sizeof *w->nodes);
    w->n_nodes = k;
    w->sets[0] = n;
    for (int i = 0; i < n; i++) w->sets[1 + i] = m->ids[i] >= 0 ? m->map[m->ids[i]] : m->ids[i];
    w->n_sets = 1 + (size_t)n;
    m->base_nodes = w->n_nodes;
    m->base_sets = w->n_sets;
    /* The hash table: only the state's nodes. */
    memset(w->hash, 0xFF, HASH_SLOTS * sizeof *w->hash);
    for (size_t i = 0; i < k; i++) {
        uint32_t h = ((uint32_t)w->nodes[i].pos * 0x9E3779B1u) ^ ((uint32_t)w->nodes[i].parent * 0x85EBCA77u);
        h ^= h >> 15;
        for (int p = 0; p < HASH_PROBES; p++) {
            size_t slot = (h + (uint32_t)p) & (HASH_SLOTS - 1);
            if (w->hash[slot] < 0) {
                w->hash[slot] = (int32_t)i;
                break;
            }
        }
    }
    return 0;
}

static bool state_can_end(const bc_grammar_matcher *m) {
    for (int i = 1; i <= m->w.sets[0]; i++)
        if (m->w.sets[i] == STACK_EMPTY) return true;
    return false;
}

/* Whether the detokenizer would drop a leading space of the next piece. */
static bool strip_now(const bc_grammar_matcher *m) {
    return m->g->vocab->strip_first && m->is_bos_ws && !m->bos_ws_seen && !m->any_text;
}

static int initial_state(bc_grammar_matcher *m) {
    const bc_grammar *g = m->g;
    m->base_nodes = m->base_sets = 0;
    rollback(m);
    size_t off = set_begin(&m->w);
    for (int a = g->rule_alts[g->root]; a < g->rule_alts[g->root + 1] && !m->w.failed; a++)
        expand(&m->w, g->alt_start[a], -1);
    if (m->w.failed || keep_state(m, off) != 0) return -1;
    m->done = false;
    m->is_bos_ws = true;
    m->bos_ws_seen = m->any_text = false;
    return 0;
}

/* Runs bytes through the state; false (state unchanged) when no parse
 * survives them. */
static bool advance(bc_grammar_matcher *m, const uint8_t *bytes, size_t n) {
    rollback(m);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        at = step(&m->w, at, bytes[i], true);
        if (m->w.failed || m->w.sets[at] == 0) {
            bool failed = m->w.failed;
            rollback(m);
            m->w.failed = failed;
            return false;
        }
    }
    if (keep_state(m, at) != 0) {
        rollback(m);
        m->w.failed = true;
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Interface                                                                */
/* ------------------------------------------------------------------------ */

static bc_status grammar_finish(const bc_tokenizer *tok, bc_grammar *g, bc__err *err) {
    pthread_mutex_init(&g->mu, NULL);
    g->tok = tok;
    if (tok != NULL && (g->vocab = bc__gvocab_of(tok)) == NULL)
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
    /* The start must fit the limits, or no matcher could be made. */
    bc_grammar_matcher *m;
    bc_status st = bc_grammar_matcher_init(g, &m);
    bc_grammar_matcher_free(m);
    if (st != BC_STATUS_OK) {
        bc__errorf(&e, BC_STATUS_ERROR_ARGUMENT,
                   "grammar: the start has more than %d parses at once, or needs more than %d nested rules",
                   BC__G_MAX_STACKS, BC__G_MAX_DEPTH);
        bc__err_copy(&e, err, err_size);
        bc_grammar_free(g);
        return e.status;
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
        if (complete) *complete = state_can_end(m);
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
    free(m->map);
    free(m->ids);
    free(m->copy);
    free(m);
}

void bc_grammar_matcher_reset(bc_grammar_matcher *m) {
    if (m != NULL) initial_state(m);
}

bool bc_grammar_matcher_can_end(const bc_grammar_matcher *m) { return m != NULL && !m->done && state_can_end(m); }

bc_status bc_grammar_matcher_allowed(bc_grammar_matcher *m, uint32_t *allowed, int n_vocab) {
    if (m == NULL || allowed == NULL || n_vocab < 0 || m->g->tok == NULL) return BC_STATUS_ERROR_ARGUMENT;
    bc_grammar *g = m->g;
    const bc__gvocab *v = g->vocab;
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
    rollback(m);
    /* A bound on one mask's work, in proportion to the vocabulary (a
     * cold walk of a JSON string's key over 125,696 pieces takes about 6
     * million expansions): only a grammar with hundreds of live parses
     * at once reaches it, and then the call fails rather than stall. */
    w->work = BC__G_WORK_PER_PIECE * (long)(v->n_vocab > 1000 ? v->n_vocab : 1000);
    bc_status st = BC_STATUS_OK;
    if (strip_now(m)) {
        /* The first piece: pieces with a leading space count without it. */
        uint32_t *tmp = calloc(own, sizeof *tmp);
        if (tmp == NULL || walk(w, &v->all, 0, true, true, tmp, NULL, NULL) != 0 ||
            walk(w, &v->stripped, 0, true, true, bits, NULL, NULL) != 0) {
            st = BC_STATUS_ERROR_MEMORY;
        } else {
            for (int i = 0; i < v->all.n; i++) {
                int32_t id = v->all.ids[i];
                if (v->kind[id] != 2 && ((tmp[id >> 5] >> (id & 31)) & 1)) bits[id >> 5] |= 1u << (id & 31);
            }
        }
        free(tmp);
    } else {
        int n_stacks = w->sets[0];
        for (int i = 1; i <= n_stacks && st == BC_STATUS_OK; i++) {
            int32_t top = w->sets[i];
            if (top < 0) continue;
            /* The key: the top frames, bottom to top. */
            int32_t key[BC__G_KEY];
            int k = 0;
            int32_t c = top;
            for (; c >= 0 && k < BC__G_KEY; c = w->nodes[c].parent) k++;
            bool whole = c < 0;
            c = top;
            for (int j = k - 1; j >= 0; j--, c = w->nodes[c].parent) key[j] = w->nodes[c].pos;
            const bc__gmask *mk = mask_get(g, w, key, k, whole);
            rollback(m);
            if (mk == NULL) {
                st = BC_STATUS_ERROR_MEMORY;
                break;
            }
            for (size_t j = 0; j < own; j++) bits[j] |= mk->accepted[j];
            if (mk->uncertain.n > 0) {
                size_t at = set_begin(w);
                emit(w, top);
                if (w->failed || walk(w, &mk->uncertain, at, true, false, bits, NULL, NULL) != 0)
                    st = BC_STATUS_ERROR_MEMORY;
                rollback(m);
            }
        }
    }
    w->work = LONG_MAX;
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
    const bc__gvocab *v = m->g->vocab;
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
    if (!advance(m, b, n)) return m->w.failed ? BC_STATUS_ERROR_MEMORY : BC_STATUS_ERROR_ARGUMENT;
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

/*
 * tokenizer.c - SentencePiece BPE encoding, identical to SentencePiece's.
 *
 *   piece maps     piece bytes -> id (normal and reserved, as SentencePiece)
 *   building       the vocabulary's checks, tables, the model's self test
 *                  (bc__tokenizer_build, for every source: load.c)
 *   encoding       normalize; split into characters (user-defined symbols
 *                  whole and frozen); merge adjacent pairs whose
 *                  concatenation is a piece, best score first, leftmost
 *                  first among equal scores; undo merges into unused
 *                  pieces; byte fallback or merged unknown runs
 *   public API     bc_tokenizer_free/get_info/piece/encode
 *
 * Merging uses a binary heap of candidate pairs and a doubly linked list of
 * symbols, so a line of n characters costs O(n log n). A candidate whose
 * symbols changed since it was pushed is recognised on pop (one of its two
 * symbols is gone or its length no longer adds up) and dropped, exactly as
 * SentencePiece's agenda does, which makes the merge order identical.
 */
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Piece maps                                                               */
/* ------------------------------------------------------------------------ */

static inline uint64_t piece_hash(const char *s, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 32;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static int32_t map_find(const bc_tokenizer *tok, const bc__piece_map *m, const char *s, size_t n) {
    uint64_t h = piece_hash(s, n);
    uint64_t tag = h >> 32 << 32;
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        uint64_t e = m->slots[i];
        if (e == 0) return -1;
        if ((e & 0xffffffff00000000ull) == tag) {
            int32_t id = (int32_t)(e & 0xffffffffu) - 1;
            const bc__span *p = &tok->sp.pieces[id].text;
            if (p->len == n && memcmp(p->ptr, s, n) == 0) return id;
        }
    }
}

/* Inserts id; returns the id already holding the same bytes, or -1. */
static int32_t map_insert(const bc_tokenizer *tok, bc__piece_map *m, int32_t id) {
    const bc__span *p = &tok->sp.pieces[id].text;
    int32_t old = map_find(tok, m, p->ptr, p->len);
    if (old >= 0) return old;
    uint64_t h = piece_hash(p->ptr, p->len);
    size_t i = (size_t)h & m->mask;
    while (m->slots[i] != 0) i = (i + 1) & m->mask;
    m->slots[i] = (h >> 32 << 32) | (uint64_t)(uint32_t)(id + 1);
    return -1;
}

int32_t bc__piece_to_id(const bc_tokenizer *tok, const char *s, size_t n) {
    int32_t id = map_find(tok, &tok->reserved_map, s, n);
    if (id >= 0) return id;
    id = map_find(tok, &tok->normal_map, s, n);
    return id >= 0 ? id : tok->unk_id;
}

/* ------------------------------------------------------------------------ */
/* Id vectors                                                               */
/* ------------------------------------------------------------------------ */

int bc__ids_push(bc__ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *g = realloc(v->ids, cap * sizeof *g);
        if (g == NULL) return -1;
        v->ids = g;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct sym {
    int32_t prev, next; /* neighbours in the list, -1 at the ends */
    uint32_t start;     /* first byte in the normalized text */
    uint32_t len;       /* bytes; 0 once merged into its left neighbour */
    int32_t id;         /* the mergeable piece with these bytes, -1 if none */
    uint32_t freeze;    /* a user-defined symbol: never merged */
} sym;

/* A candidate merge of symbols left and right into piece `id` of `size`
 * bytes. Pop order is higher score first, then the leftmost, folded into
 * one integer: the score's order key above the complement of left. */
typedef struct pair {
    uint64_t key;
    int32_t right;
    uint32_t size;
    int32_t id;
} pair;

static inline int pair_before(const pair *a, const pair *b) { return a->key > b->key; }
static inline int32_t pair_left(const pair *p) { return (int32_t) ~(uint32_t)p->key; }

/* Unused pieces formed by a merge: piece id -> the left part's length at
 * the last time a pair forming it was queued (SentencePiece's rev_merge). */
typedef struct rev_map {
    int32_t *keys; /* id + 1; 0 = empty */
    uint32_t *left_len;
    size_t mask;
} rev_map;

typedef struct encoder {
    const bc_tokenizer *tok;
    const char *norm; /* normalized text */
    sym *syms;
    pair *heap;
    size_t n_heap, cap_heap;
    rev_map rev;
    /* output */
    bc__ids *out;
    bc__buf *pieces; /* NULL unless the self test wants piece strings */
    bool prev_unk;
} encoder;

static int heap_push(encoder *e, pair p) {
    if (e->n_heap == e->cap_heap) {
        size_t cap = e->cap_heap ? e->cap_heap * 2 : 256;
        pair *g = realloc(e->heap, cap * sizeof *g);
        if (g == NULL) return -1;
        e->heap = g;
        e->cap_heap = cap;
    }
    pair *h = e->heap;
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = p;
    return 0;
}

static pair heap_pop(encoder *e) {
    pair *h = e->heap;
    pair top = h[0];
    pair last = h[--e->n_heap];
    size_t n = e->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&h[c + 1], &h[c])) c++;
        if (!pair_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n > 0) h[i] = last;
    return top;
}

static int rev_put(encoder *e, int32_t id, uint32_t left_len) {
    rev_map *r = &e->rev;
    if (r->keys == NULL) {
        size_t n = 16;
        while (n < (size_t)e->tok->n_types[BC__SP_UNUSED] * 2) n *= 2;
        r->keys = calloc(n, sizeof *r->keys);
        r->left_len = malloc(n * sizeof *r->left_len);
        if (r->keys == NULL || r->left_len == NULL) return -1;
        r->mask = n - 1;
    }
    size_t i = ((uint32_t)id * 2654435761u) & r->mask;
    while (r->keys[i] != 0 && r->keys[i] != id + 1) i = (i + 1) & r->mask;
    r->keys[i] = id + 1;
    r->left_len[i] = left_len;
    return 0;
}

static int rev_get(const encoder *e, int32_t id, uint32_t *left_len) {
    const rev_map *r = &e->rev;
    if (r->keys == NULL) return 0;
    size_t i = ((uint32_t)id * 2654435761u) & r->mask;
    while (r->keys[i] != 0) {
        if (r->keys[i] == id + 1) {
            *left_len = r->left_len[i];
            return 1;
        }
        i = (i + 1) & r->mask;
    }
    return 0;
}

static inline uint64_t merge_hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ull;
    return key ^ (key >> 33);
}

static int32_t merge_find(const bc_tokenizer *tok, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t h = merge_hash(key);
    size_t bit = (size_t)(h >> 40) & tok->merge_filter_mask;
    if (!(tok->merge_filter[bit >> 6] >> (bit & 63) & 1)) return -1;
    for (size_t i = (size_t)h & tok->merge_mask;; i = (i + 1) & tok->merge_mask) {
        uint64_t k = tok->merge_keys[i];
        if (k == key) return tok->merge_vals[i];
        if (k == UINT64_MAX) return -1;
    }
}

/* The piece that merging symbols left and right would give, -1 if none
 * (or -2 on out of memory). Like SentencePiece, remembers how an unused
 * piece was formed every time such a pair becomes a candidate. */
static int32_t pair_piece(encoder *e, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return -1;
    const sym *l = &e->syms[left], *r = &e->syms[right];
    if (l->freeze || r->freeze) return -1;
    const bc_tokenizer *tok = e->tok;
    /* Two pieces concatenate to a piece exactly when the merge table says
     * so; bytes that are no piece need the string lookup. */
    int32_t id = l->id >= 0 && r->id >= 0 ? merge_find(tok, l->id, r->id)
                                          : map_find(tok, &tok->normal_map, e->norm + l->start, l->len + r->len);
    if (id >= 0 && tok->types[id] == BC__SP_UNUSED && rev_put(e, id, l->len) != 0) return -2;
    return id;
}

static inline uint64_t char_key(const char *s, size_t n) {
    uint32_t bytes = 0;
    memcpy(&bytes, s, n);
    return (uint64_t)n << 32 | bytes;
}

/* The mergeable piece of the n <= 4 bytes s, or -1. */
static int32_t char_find(const bc_tokenizer *tok, const char *s, size_t n) {
    uint64_t key = char_key(s, n);
    for (size_t i = (size_t)merge_hash(key) & tok->char_mask;; i = (i + 1) & tok->char_mask) {
        uint64_t k = tok->char_keys[i];
        if (k == key) return tok->char_vals[i];
        if (k == UINT64_MAX) return -1;
    }
}

/* Queues the merge of left and right if their concatenation is a piece. */
static int maybe_add_pair(encoder *e, int32_t left, int32_t right) {
    int32_t id = pair_piece(e, left, right);
    if (id == -2) return -1;
    if (id < 0) return 0;
    pair p = {(uint64_t)e->tok->score_keys[id] << 32 | (uint32_t) ~(uint32_t)left, right,
              e->syms[left].len + e->syms[right].len, id};
    return heap_push(e, p);
}

static int piece_sep(encoder *e) {
    if (e->pieces == NULL || e->pieces->len == 0) return 0;
    return bc__buf_append(e->pieces, " ", 1);
}

/* Emits one final piece (SentencePiece's PopulateSentencePieceText). */
static int emit(encoder *e, const char *w, size_t n, int32_t id) {
    const bc_tokenizer *tok = e->tok;
    int type = tok->types[id];
    /* A control piece can only come out of text if it is a single
     * character (or shares its bytes with a mergeable piece). SentencePiece
     * then fails the whole encoding; here the character is handled as an
     * unknown one instead, so that control ids never come from text. */
    if (type == BC__SP_CONTROL) {
        id = tok->unk_id;
        type = BC__SP_UNKNOWN;
    }
    bool is_unk = type == BC__SP_UNKNOWN;
    if (is_unk && tok->byte_fallback) {
        for (size_t i = 0; i < n; i++) {
            uint8_t b = (uint8_t)w[i];
            if (bc__ids_push(e->out, tok->byte_ids[b]) != 0) return -1;
            if (e->pieces != NULL) {
                char hex[8];
                snprintf(hex, sizeof hex, "<0x%02X>", b);
                if (piece_sep(e) != 0 || bc__buf_append(e->pieces, hex, 6) != 0) return -1;
            }
        }
    } else if (is_unk && e->prev_unk) {
        /* A run of unknown pieces stays one unknown id. */
        if (e->pieces != NULL && bc__buf_append(e->pieces, w, n) != 0) return -1;
    } else {
        if (bc__ids_push(e->out, id) != 0) return -1;
        if (e->pieces != NULL && (piece_sep(e) != 0 || bc__buf_append(e->pieces, w, n) != 0)) return -1;
    }
    e->prev_unk = is_unk;
    return 0;
}

/* Emits the final symbol w, splitting unused pieces back into the pair that
 * formed them, recursively (with an explicit stack: a long piece could
 * otherwise recurse once per byte). */
static int resegment(encoder *e, uint32_t start, uint32_t len, int32_t id, bc__buf *stack) {
    const bc_tokenizer *tok = e->tok;
    if (id >= 0 && tok->types[id] != BC__SP_UNUSED) return emit(e, e->norm + start, len, tok->canonical_id[id]);
    stack->len = 0;
    uint32_t item[2] = {start, len};
    if (bc__buf_append(stack, item, sizeof item) != 0) return -1;
    while (stack->len > 0) {
        stack->len -= sizeof item;
        memcpy(item, stack->data + stack->len, sizeof item);
        const char *w = e->norm + item[0];
        int32_t piece = bc__piece_to_id(tok, w, item[1]);
        uint32_t left_len;
        if (tok->types[piece] != BC__SP_UNUSED || !rev_get(e, piece, &left_len)) {
            if (emit(e, w, item[1], piece) != 0) return -1;
            continue;
        }
        uint32_t right[2] = {item[0] + left_len, item[1] - left_len};
        uint32_t left[2] = {item[0], left_len};
        if (bc__buf_append(stack, right, sizeof right) != 0 || bc__buf_append(stack, left, sizeof left) != 0) return -1;
    }
    return 0;
}

int bc__tokenizer_encode(const bc_tokenizer *tok, const char *text, size_t len, bc__ids *out, bc__buf *pieces) {
    bc__buf norm = {0}, stack = {0};
    encoder e = {0};
    e.tok = tok;
    e.out = out;
    e.pieces = pieces;
    int rc = -1;
    if (bc__normalize(&tok->normalizer, text, len, &norm) != 0) goto done;
    if (norm.len == 0) {
        rc = 0;
        goto done;
    }
    if (norm.len > INT32_MAX) goto done;
    e.norm = norm.data;

    /* Split into characters; user-defined symbols whole and frozen. */
    e.syms = malloc(norm.len * sizeof *e.syms);
    if (e.syms == NULL) goto done;
    int32_t n_syms = 0;
    const bc__trie *user = tok->user_trie.n_keys > 0 ? &tok->user_trie : NULL;
    for (size_t pos = 0; pos < norm.len;) {
        size_t left = norm.len - pos, m = 0;
        uint32_t freeze = 0;
        if (user != NULL && (m = bc__trie_longest_prefix(user, norm.data + pos, left)) > 0) {
            freeze = 1;
        } else {
            m = bc__utf8_lead_len((uint8_t)norm.data[pos]);
            if (m > left) m = left;
        }
        sym *s = &e.syms[n_syms];
        s->prev = n_syms - 1;
        s->next = pos + m < norm.len ? n_syms + 1 : -1;
        s->start = (uint32_t)pos;
        s->len = (uint32_t)m;
        s->id = m <= 4 ? char_find(tok, norm.data + pos, m) : map_find(tok, &tok->normal_map, norm.data + pos, m);
        s->freeze = freeze;
        n_syms++;
        pos += m;
    }

    for (int32_t i = 1; i < n_syms; i++)
        if (maybe_add_pair(&e, i - 1, i) != 0) goto done;

    sym *syms = e.syms;
    /* Merge the best pair until none is left. */
    while (e.n_heap > 0) {
        pair top = heap_pop(&e);
        int32_t left = pair_left(&top);
        sym *l = &syms[left], *r = &syms[top.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.size) continue; /* stale */
        l->len += r->len;
        l->id = top.id;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = left;
        r->len = 0;
        if (maybe_add_pair(&e, l->prev, left) != 0 || maybe_add_pair(&e, left, l->next) != 0) goto done;
    }

    for (int32_t i = 0; i != -1; i = syms[i].next)
        if (resegment(&e, syms[i].start, syms[i].len, syms[i].id, &stack) != 0) goto done;
    rc = 0;
done:
    free(norm.data);
    free(stack.data);
    free(e.syms);
    free(e.heap);
    free(e.rev.keys);
    free(e.rev.left_len);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Building                                                                 */
/* ------------------------------------------------------------------------ */

static const char *type_name(int type) {
    switch (type) {
    case BC__SP_NORMAL: return "normal";
    case BC__SP_UNKNOWN: return "unknown";
    case BC__SP_CONTROL: return "control";
    case BC__SP_USER_DEFINED: return "user-defined";
    case BC__SP_UNUSED: return "unused";
    case BC__SP_BYTE: return "byte";
    }
    return "?";
}

static const char *model_type_name(int t) {
    switch (t) {
    case BC__SP_MODEL_UNIGRAM: return "unigram";
    case BC__SP_MODEL_BPE: return "bpe";
    case BC__SP_MODEL_WORD: return "word";
    case BC__SP_MODEL_CHAR: return "char";
    }
    return "?";
}

/* "<0xXX>" (upper-case hex, as SentencePiece writes it) -> XX, else -1. */
static int piece_to_byte(const bc__span *p) {
    static const char hex[] = "0123456789ABCDEF";
    if (p->len != 6 || memcmp(p->ptr, "<0x", 3) != 0 || p->ptr[5] != '>') return -1;
    const char *hi = memchr(hex, p->ptr[3], 16), *lo = memchr(hex, p->ptr[4], 16);
    if (hi == NULL || lo == NULL || p->ptr[3] == '\0' || p->ptr[4] == '\0') return -1;
    return (int)((hi - hex) * 16 + (lo - hex));
}

/* A piece's text for messages: printable, shortened. */
static const char *show(const bc__span *s, char *buf, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < s->len && k + 5 < n; i++) {
        unsigned char c = (unsigned char)s->ptr[i];
        if (c < 0x20 || c == 0x7f)
            k += (size_t)snprintf(buf + k, n - k, "\\x%02x", c);
        else
            buf[k++] = (char)c;
    }
    buf[k] = '\0';
    return buf;
}

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p *= 2;
    return p;
}

/* SentencePiece's checks of the vocabulary (ModelInterface::InitializePieces)
 * and the tables the encoder and decoder use. */
static int build_vocab(bc_tokenizer *tok, bc__err *err) {
    const char *file = tok->path;
    const bc__sp_model *sp = &tok->sp;
    int32_t n = sp->n_pieces;
    char shown[96];
    tok->n_vocab = n;
    size_t n_slots = pow2_at_least((size_t)n * 2);
    tok->normal_map.slots = calloc(n_slots, sizeof(uint64_t));
    tok->reserved_map.slots = calloc(n_slots, sizeof(uint64_t));
    tok->normal_map.mask = tok->reserved_map.mask = n_slots - 1;
    tok->score_keys = malloc((size_t)n * sizeof *tok->score_keys);
    tok->types = malloc((size_t)n);
    tok->piece_off = malloc((size_t)n * sizeof *tok->piece_off);
    if (!tok->normal_map.slots || !tok->reserved_map.slots || !tok->score_keys || !tok->types || !tok->piece_off)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", file);
    tok->unk_id = -1;
    for (int i = 0; i < 256; i++) tok->byte_ids[i] = -1;
    tok->byte_fallback = sp->trainer.byte_fallback;

    size_t text_bytes = 0;
    for (int32_t id = 0; id < n; id++) {
        const bc__sp_piece *p = &sp->pieces[id];
        if (p->text.len == 0)
            return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: piece %d is empty (pieces must not be empty)", file,
                              (int)id);
        if (isnan(p->score))
            return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: piece %d (\"%s\") has a NaN score", file, (int)id,
                              show(&p->text, shown, sizeof shown));
        /* An order-preserving integer key: equal scores (0 and -0 too)
         * get equal keys, a higher score a higher key. */
        uint32_t bits;
        float score = p->score == 0.0f ? 0.0f : p->score;
        memcpy(&bits, &score, 4);
        tok->score_keys[id] = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
        tok->types[id] = (uint8_t)p->type;
        tok->n_types[p->type]++;
        text_bytes += p->text.len + 1;
        bool mergeable = p->type == BC__SP_NORMAL || p->type == BC__SP_USER_DEFINED || p->type == BC__SP_UNUSED;
        int32_t dup = map_insert(tok, mergeable ? &tok->normal_map : &tok->reserved_map, id);
        if (dup >= 0)
            return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: piece %d (%s \"%s\") is already defined as piece %d",
                              file, (int)id, type_name(p->type), show(&p->text, shown, sizeof shown), (int)dup);
        if (p->type == BC__SP_USER_DEFINED && bc__trie_insert(&tok->user_trie, p->text.ptr, p->text.len) != 0)
            return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", file);
        if (p->type == BC__SP_UNKNOWN) {
            if (tok->unk_id >= 0)
                return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                                  "%s: pieces %d and %d are both of type unknown (there must be one)", file,
                                  (int)tok->unk_id, (int)id);
            tok->unk_id = id;
        }
        if (p->type == BC__SP_BYTE) {
            if (!sp->trainer.byte_fallback)
                return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                                  "%s: piece %d (\"%s\") is a byte piece although trainer_spec.byte_fallback is false",
                                  file, (int)id, show(&p->text, shown, sizeof shown));
            int b = piece_to_byte(&p->text);
            if (b < 0)
                return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                                  "%s: piece %d (\"%s\") has type byte but is not of the form <0xXX>", file, (int)id,
                                  show(&p->text, shown, sizeof shown));
            tok->byte_ids[b] = id;
        }
    }
    if (tok->unk_id < 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: no piece has type unknown (<unk> must be defined)", file);
    if (tok->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (tok->byte_ids[b] < 0)
                return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                                  "%s: trainer_spec.byte_fallback is true but there is no byte piece <0x%02X> (all 256 "
                                  "are needed)",
                                  file, b);

    /* NUL-terminated pieces, and their decoded form (U+2581 -> ' '). */
    tok->piece_text = malloc(text_bytes);
    tok->decode_text = malloc(text_bytes);
    tok->decode_off = malloc(((size_t)n + 1) * sizeof *tok->decode_off);
    tok->canonical_id = malloc((size_t)n * sizeof *tok->canonical_id);
    tok->decode_leading_ws = malloc((size_t)n);
    if (!tok->piece_text || !tok->decode_text || !tok->decode_off || !tok->canonical_id || !tok->decode_leading_ws)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", file);
    size_t off = 0, doff = 0;
    for (int32_t id = 0; id < n; id++) {
        const bc__span *t = &sp->pieces[id].text;
        tok->piece_off[id] = off;
        memcpy(tok->piece_text + off, t->ptr, t->len);
        tok->piece_text[off + t->len] = '\0';
        off += t->len + 1;
        tok->decode_off[id] = doff;
        for (size_t i = 0; i < t->len;) {
            if (t->len - i >= BC__SPACE_SYMBOL_LEN && memcmp(t->ptr + i, BC__SPACE_SYMBOL, BC__SPACE_SYMBOL_LEN) == 0) {
                tok->decode_text[doff++] = ' ';
                i += BC__SPACE_SYMBOL_LEN;
            } else {
                tok->decode_text[doff++] = t->ptr[i++];
            }
        }
        tok->decode_leading_ws[id] =
            t->len >= BC__SPACE_SYMBOL_LEN && memcmp(t->ptr, BC__SPACE_SYMBOL, BC__SPACE_SYMBOL_LEN) == 0;
        tok->canonical_id[id] = bc__piece_to_id(tok, t->ptr, t->len);
    }
    tok->decode_off[n] = doff;
    return 0;
}

/* The merge table: every split of a mergeable piece into two mergeable
 * pieces at a symbol boundary. */
static int build_merges(bc_tokenizer *tok, bc__err *err) {
    typedef struct entry {
        uint64_t key;
        int32_t val;
    } entry;
    entry *list = NULL;
    size_t n = 0, cap = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        int type = tok->types[id];
        if (type != BC__SP_NORMAL && type != BC__SP_USER_DEFINED && type != BC__SP_UNUSED) continue;
        const bc__span *t = &tok->sp.pieces[id].text;
        /* Symbols are made of whole characters as the encoder steps through
         * the text (bc__utf8_lead_len), so a piece can only be split where
         * that stepping, started at the piece's first byte, lands. */
        for (size_t k = 0;;) {
            k += bc__utf8_lead_len((uint8_t)t->ptr[k]);
            if (k >= t->len) break;
            int32_t a = map_find(tok, &tok->normal_map, t->ptr, k);
            if (a < 0) continue;
            int32_t b = map_find(tok, &tok->normal_map, t->ptr + k, t->len - k);
            if (b < 0) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 4096;
                entry *g = realloc(list, cap * sizeof *g);
                if (g == NULL) {
                    free(list);
                    return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", tok->path);
                }
                list = g;
            }
            list[n].key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
            list[n].val = id;
            n++;
        }
    }
    size_t n_slots = pow2_at_least(n * 2 + 1);
    tok->merge_keys = malloc(n_slots * sizeof *tok->merge_keys);
    tok->merge_vals = malloc(n_slots * sizeof *tok->merge_vals);
    if (tok->merge_keys == NULL || tok->merge_vals == NULL) {
        free(list);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", tok->path);
    }
    memset(tok->merge_keys, 0xff, n_slots * sizeof *tok->merge_keys);
    tok->merge_mask = n_slots - 1;
    size_t n_bits = pow2_at_least(n * 16 + 64);
    tok->merge_filter = calloc(n_bits / 64, sizeof *tok->merge_filter);
    if (tok->merge_filter == NULL) {
        free(list);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", tok->path);
    }
    tok->merge_filter_mask = n_bits - 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = merge_hash(list[i].key);
        size_t bit = (size_t)(h >> 40) & tok->merge_filter_mask;
        tok->merge_filter[bit >> 6] |= 1ull << (bit & 63);
        size_t j = (size_t)h & tok->merge_mask;
        while (tok->merge_keys[j] != UINT64_MAX) j = (j + 1) & tok->merge_mask;
        tok->merge_keys[j] = list[i].key;
        tok->merge_vals[j] = list[i].val;
    }
    free(list);

    /* Pieces of at most four bytes, for the starting symbols. */
    size_t n_short = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++) n_short += tok->sp.pieces[id].text.len <= 4;
    n_slots = pow2_at_least(n_short * 2 + 1);
    tok->char_keys = malloc(n_slots * sizeof *tok->char_keys);
    tok->char_vals = malloc(n_slots * sizeof *tok->char_vals);
    if (tok->char_keys == NULL || tok->char_vals == NULL)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", tok->path);
    memset(tok->char_keys, 0xff, n_slots * sizeof *tok->char_keys);
    tok->char_mask = n_slots - 1;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        const bc__span *t = &tok->sp.pieces[id].text;
        int type = tok->types[id];
        if (t->len > 4 || (type != BC__SP_NORMAL && type != BC__SP_USER_DEFINED && type != BC__SP_UNUSED)) continue;
        uint64_t key = char_key(t->ptr, t->len);
        size_t j = (size_t)merge_hash(key) & tok->char_mask;
        while (tok->char_keys[j] != UINT64_MAX) j = (j + 1) & tok->char_mask;
        tok->char_keys[j] = key;
        tok->char_vals[j] = id;
    }
    return 0;
}

/* bos_id() and friends: the id of the named piece if it has the type. */
static int32_t special_id(const bc_tokenizer *tok, const bc__span *name, const char *def, int type) {
    const char *s = name->len ? name->ptr : def;
    size_t n = name->len ? name->len : strlen(def);
    int32_t id = bc__piece_to_id(tok, s, n);
    return id >= 0 && tok->types[id] == type ? id : -1;
}

/* The model's own self-test samples, as SentencePiece runs them at load. */
static int self_test(const bc_tokenizer *tok, bc__err *err) {
    bc__ids ids = {0};
    bc__buf pieces = {0};
    int rc = 0;
    for (size_t i = 0; i < tok->sp.n_samples && rc == 0; i++) {
        const bc__sp_sample *s = &tok->sp.samples[i];
        ids.n = 0;
        pieces.len = 0;
        if (bc__tokenizer_encode(tok, s->input.ptr, s->input.len, &ids, &pieces) != 0) {
            rc = bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", tok->path);
        } else if (pieces.len != s->expected.len ||
                   (pieces.len != 0 && memcmp(pieces.data, s->expected.ptr, pieces.len) != 0)) {
            /* (An empty encoding has no buffer: memcmp must not see NULL.) */
            char a[96], b[96], c[96];
            bc__span got = {pieces.data, pieces.len};
            rc =
                bc__errorf(err, BC_STATUS_ERROR_MODEL,
                           "%s: self_test_data sample %zu fails: \"%s\" should encode as \"%s\", got \"%s\"", tok->path,
                           i, show(&s->input, a, sizeof a), show(&s->expected, b, sizeof b), show(&got, c, sizeof c));
        }
    }
    free(ids.ids);
    free(pieces.data);
    return rc;
}

int bc__tokenizer_build(bc_tokenizer *tok, bc__err *err) {
    const char *file = tok->path;
    const bc__sp_model *sp = &tok->sp;
    /* SentencePiece writes both specs; without them the file is not a
     * complete model (typically cut short at a field boundary). */
    if (!sp->trainer.present)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: no trainer_spec (field 2): not a SentencePiece model, or truncated", file);
    if (!sp->normalizer.present)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: no normalizer_spec (field 3): not a SentencePiece model, or truncated", file);
    if (sp->trainer.model_type != BC__SP_MODEL_BPE)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: trainer_spec.model_type is %s (%d); only BPE models (2) are supported", file,
                          model_type_name(sp->trainer.model_type), (int)sp->trainer.model_type);
    if (sp->n_pieces == 0) return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: the model has no pieces", file);
    if (sp->denormalizer.precompiled_charsmap.len > 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: denormalizer_spec has a precompiled_charsmap (decoding rules), which is not supported",
                          file);
    if (build_vocab(tok, err) != 0 || build_merges(tok, err) != 0) return -1;
    tok->normalizer_name = bc__strndup(sp->normalizer.name.ptr ? sp->normalizer.name.ptr : "", sp->normalizer.name.len);
    if (tok->normalizer_name == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", file);
    if (bc__normalizer_init(&tok->normalizer, &sp->normalizer, sp->trainer.treat_whitespace_as_suffix, &tok->user_trie,
                            file, err) != 0)
        return -1;

    tok->bos_id = special_id(tok, &sp->trainer.bos_piece, "<s>", BC__SP_CONTROL);
    tok->eos_id = special_id(tok, &sp->trainer.eos_piece, "</s>", BC__SP_CONTROL);
    tok->pad_id = special_id(tok, &sp->trainer.pad_piece, "<pad>", BC__SP_CONTROL);
    tok->unk_piece_id = special_id(tok, &sp->trainer.unk_piece, "<unk>", BC__SP_UNKNOWN);
    static const char default_unk_surface[] = " \xe2\x81\x87 ";
    if (sp->trainer.has_unk_surface) {
        /* SentencePiece uses it as a C string. */
        const bc__span *u = &sp->trainer.unk_surface;
        const char *nul = memchr(u->ptr, '\0', u->len);
        tok->unk_surface.ptr = u->ptr;
        tok->unk_surface.len = nul ? (size_t)(nul - u->ptr) : u->len;
    } else {
        tok->unk_surface.ptr = default_unk_surface;
        tok->unk_surface.len = sizeof default_unk_surface - 1;
    }
    if (self_test(tok, err) != 0) return -1;

    /* Defaults of the settings a model directory may change. */
    memset(&tok->config, 0, sizeof tok->config);
    memset(&tok->gen, 0, sizeof tok->gen);
    tok->gen.user_token_id = 195;
    tok->gen.assistant_token_id = 196;
    tok->gen.max_new_tokens = 2048;
    tok->n_ctx_train = 4096;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */
/* ------------------------------------------------------------------------ */

void bc_tokenizer_free(bc_tokenizer *tok) {
    if (tok == NULL) return;
    if (tok->grammar_vocab.destroy != NULL) tok->grammar_vocab.destroy(tok->grammar_vocab.data);
    bc__normalizer_free(&tok->normalizer);
    bc__trie_free(&tok->user_trie);
    bc__sp_model_free(&tok->sp);
    free(tok->normal_map.slots);
    free(tok->reserved_map.slots);
    free(tok->merge_keys);
    free(tok->merge_vals);
    free(tok->merge_filter);
    free(tok->char_keys);
    free(tok->char_vals);
    free(tok->piece_text);
    free(tok->piece_off);
    free(tok->score_keys);
    free(tok->types);
    free(tok->canonical_id);
    free(tok->decode_off);
    free(tok->decode_text);
    free(tok->decode_leading_ws);
    free(tok->file_bytes);
    free(tok->normalizer_name);
    free(tok->path);
    free(tok);
}

void bc_tokenizer_get_info(const bc_tokenizer *tok, bc_tokenizer_info *info) {
    memset(info, 0, sizeof *info);
    info->model_path = tok->path;
    info->n_vocab = tok->n_vocab;
    info->bos_id = tok->bos_id;
    info->eos_id = tok->eos_id;
    info->pad_id = tok->pad_id;
    info->unk_id = tok->unk_piece_id;
    info->add_bos = tok->config.add_bos_token;
    info->add_eos = tok->config.add_eos_token;
    info->byte_fallback = tok->byte_fallback;
    info->normalizer = tok->normalizer_name;
    info->has_charsmap = tok->normalizer.trie_units != NULL;
    info->add_dummy_prefix = tok->normalizer.add_dummy_prefix;
    info->remove_extra_whitespaces = tok->normalizer.remove_extra_whitespaces;
    info->escape_whitespaces = tok->normalizer.escape_whitespaces;
    for (int t = 1; t <= 6; t++) info->n_piece_types[t] = tok->n_types[t];
}

const char *bc_tokenizer_piece(const bc_tokenizer *tok, int32_t id, size_t *len, bc_piece_type *type) {
    if (tok == NULL || id < 0 || id >= tok->n_vocab) return NULL;
    if (len != NULL) *len = tok->sp.pieces[id].text.len;
    if (type != NULL) *type = (bc_piece_type)tok->types[id];
    return tok->piece_text + tok->piece_off[id];
}

bc_status bc_tokenizer_encode(const bc_tokenizer *tok, const char *text, size_t text_len, bc_switch add_bos,
                              bc_switch add_eos, int32_t *ids, size_t ids_cap, size_t *n_ids) {
    if (n_ids != NULL) *n_ids = 0;
    if (tok == NULL || n_ids == NULL || (text == NULL && text_len > 0) || (ids == NULL && ids_cap > 0))
        return BC_STATUS_ERROR_ARGUMENT;
    bool bos = add_bos == BC_SWITCH_AUTO ? tok->config.add_bos_token : add_bos == BC_SWITCH_ON;
    bool eos = add_eos == BC_SWITCH_AUTO ? tok->config.add_eos_token : add_eos == BC_SWITCH_ON;
    if ((bos && tok->bos_id < 0) || (eos && tok->eos_id < 0)) return BC_STATUS_ERROR_ARGUMENT;
    bc__ids v = {0};
    if ((bos && bc__ids_push(&v, tok->bos_id) != 0) || bc__tokenizer_encode(tok, text, text_len, &v, NULL) != 0 ||
        (eos && bc__ids_push(&v, tok->eos_id) != 0)) {
        free(v.ids);
        return BC_STATUS_ERROR_MEMORY;
    }
    *n_ids = v.n;
    size_t n_copy = v.n < ids_cap ? v.n : ids_cap;
    if (n_copy > 0) memcpy(ids, v.ids, n_copy * sizeof *ids);
    free(v.ids);
    return v.n <= ids_cap ? BC_STATUS_OK : BC_STATUS_ERROR_ARGUMENT;
}

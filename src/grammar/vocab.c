/*
 * vocab.c - a tokenizer's pieces as the grammar sees them: the bytes the
 * detokenizer writes for each piece (byte pieces as their byte, U+2581 as a
 * space), sorted so that a walk can read the list as a trie, and the pieces
 * with a leading space without it (the detokenizer drops it from a first
 * piece). Built by the first grammar made for a tokenizer and kept on the
 * tokenizer as its attachment, which the tokenizer frees without knowing
 * what it is.
 *
 *   sorted token lists     lists of byte strings with their shared prefixes
 *   vocabulary             the tokenizer's pieces; bc__gvocab_of
 */
#include "grammar/vocab.h"

#include "tokenizer/tokenizer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Sorted token lists                                                       */
/* ------------------------------------------------------------------------ */

/* What cmp_tokens compares (qsort passes no context): set only by
 * vocab_build, which runs under vocab_mu. */
static const uint8_t **tl_sort_bytes;
static const uint16_t *tl_sort_len;

static int cmp_tokens(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    int n = tl_sort_len[x] < tl_sort_len[y] ? tl_sort_len[x] : tl_sort_len[y];
    int c = memcmp(tl_sort_bytes[x], tl_sort_bytes[y], (size_t)n);
    if (c != 0) return c;
    return tl_sort_len[x] != tl_sort_len[y] ? (tl_sort_len[x] < tl_sort_len[y] ? -1 : 1) : (x < y ? -1 : 1);
}

void bc__tok_list_free(bc__tok_list *l) {
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

int bc__tok_list_subset(bc__tok_list *out, const bc__tok_list *src, const int32_t *idx, int n) {
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

/* Frees a vocabulary; also the destructor the tokenizer calls for it. */
static void vocab_free(void *p) {
    bc__gvocab *v = p;
    if (v == NULL) return;
    bc__tok_list_free(&v->all);
    bc__tok_list_free(&v->stripped);
    free(v->kind);
    free(v->bytes);
    free(v->len);
    free(v);
}

/* The tokenizer's grammar vocabulary, built by the first caller. */
static pthread_mutex_t vocab_mu = PTHREAD_MUTEX_INITIALIZER;

const bc__gvocab *bc__gvocab_of(const bc_tokenizer *tok) {
    pthread_mutex_lock(&vocab_mu);
    bc__gvocab *v = tok->grammar_vocab.data;
    if (v == NULL && (v = calloc(1, sizeof *v)) != NULL) {
        if (vocab_build(v, tok) == 0) {
            /* A cache: the tokenizer is otherwise unchanged. */
            ((bc_tokenizer *)tok)->grammar_vocab = (bc__tok_attachment){v, vocab_free};
        } else {
            vocab_free(v);
            v = NULL;
        }
    }
    pthread_mutex_unlock(&vocab_mu);
    return v;
}

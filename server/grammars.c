/*
 * grammars.c - the compiled grammars of structured output requests
 * (response_format, grammar, json_schema), cached by their exact text.
 *
 * Compiling a grammar and filling its token-mask cache cost far more than a
 * request that reuses them, and clients send the same schema again and
 * again: the 32 most recently used grammars are kept. An entry is
 * reference-counted: the cache holds one reference and each request in
 * flight one more, so an entry evicted while requests still use it lives
 * until the last of them ends. A bc_grammar may be shared by any number of
 * threads; each choice makes its own matcher from it.
 *
 * The key is the kind's letter and the text: the GBNF as sent, or the
 * schema as openai.c dumps it (sorted keys, compact), so that the same
 * schema written with other spacing or key order is one entry.
 */
#include "server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SIZE 32

struct srv_grammar {
    char *key; /* kind letter + text */
    size_t key_len;
    bc_grammar *grammar;
    int refs;          /* under g_mu: the cache's and the requests' */
    uint64_t last_use; /* under g_mu: a tick of the cache's clock */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static srv_grammar *g_cache[CACHE_SIZE]; /* NULL: an empty entry */
static uint64_t g_clock;
static long long g_compiled, g_hits;

/* Under g_mu: drops one reference, freeing the entry with the last. */
static void unref_locked(srv_grammar *g) {
    if (--g->refs > 0) return;
    bc_grammar_free(g->grammar);
    free(g->key);
    free(g);
}

srv_grammar *srv_grammar_get(const bc_tokenizer *tok, srv_grammar_kind kind, const char *text, size_t len, char *err,
                             size_t err_size) {
    char *key = malloc(len + 2);
    if (key == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    key[0] = kind == SRV_GRAMMAR_GBNF ? 'g' : 'j';
    if (len > 0) memcpy(key + 1, text, len);
    key[len + 1] = '\0';

    /* The HTTP thread is the only caller: compiling under the lock holds up
     * no other request's parsing, only the engine's releases. */
    pthread_mutex_lock(&g_mu);
    srv_grammar *hit = NULL;
    for (int i = 0; i < CACHE_SIZE && hit == NULL; i++)
        if (g_cache[i] != NULL && g_cache[i]->key_len == len + 1 && memcmp(g_cache[i]->key, key, len + 1) == 0)
            hit = g_cache[i];
    if (hit != NULL) {
        hit->refs++;
        hit->last_use = ++g_clock;
        g_hits++;
        pthread_mutex_unlock(&g_mu);
        free(key);
        return hit;
    }

    bc_grammar *compiled = NULL;
    bc_status st = kind == SRV_GRAMMAR_GBNF
                       ? bc_grammar_init_gbnf(tok, text, len, &compiled, err, err_size)
                       : bc_grammar_init_json_schema(tok, len > 0 ? text : NULL, len, &compiled, err, err_size);
    srv_grammar *g = st == BC_STATUS_OK ? calloc(1, sizeof *g) : NULL;
    if (g == NULL) {
        if (st == BC_STATUS_OK) snprintf(err, err_size, "out of memory");
        pthread_mutex_unlock(&g_mu);
        bc_grammar_free(compiled);
        free(key);
        return NULL;
    }
    g_compiled++;
    *g = (srv_grammar){.key = key, .key_len = len + 1, .grammar = compiled, .refs = 2, .last_use = ++g_clock};
    int victim = 0; /* an empty entry, else the least recently used */
    for (int i = 0; i < CACHE_SIZE; i++) {
        if (g_cache[i] == NULL) {
            victim = i;
            break;
        }
        if (g_cache[i]->last_use < g_cache[victim]->last_use) victim = i;
    }
    if (g_cache[victim] != NULL) unref_locked(g_cache[victim]);
    g_cache[victim] = g;
    pthread_mutex_unlock(&g_mu);
    return g;
}

const bc_grammar *srv_grammar_compiled(const srv_grammar *g) { return g->grammar; }

void srv_grammar_release(srv_grammar *g) {
    if (g == NULL) return;
    pthread_mutex_lock(&g_mu);
    unref_locked(g);
    pthread_mutex_unlock(&g_mu);
}

void srv_grammar_cache_clear(void) {
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < CACHE_SIZE; i++)
        if (g_cache[i] != NULL) {
            unref_locked(g_cache[i]);
            g_cache[i] = NULL;
        }
    pthread_mutex_unlock(&g_mu);
}

void srv_grammar_cache_counts(long long *compiled, long long *hits) {
    pthread_mutex_lock(&g_mu);
    *compiled = g_compiled;
    *hits = g_hits;
    pthread_mutex_unlock(&g_mu);
}

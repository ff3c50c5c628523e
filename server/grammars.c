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
 * schema as openai.c dumps it (compact, every schema's keywords sorted but
 * each `properties` in the order sent, since that is the output's order),
 * so that the same schema written with other spacing or keyword order is
 * one entry.
 */
#include "grammars.h"

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

/* Under g_mu: the entry of key (key_len bytes), with one more reference
 * and marked as just used, or NULL. */
static srv_grammar *find_locked(const char *key, size_t key_len) {
    for (int i = 0; i < CACHE_SIZE; i++) {
        srv_grammar *g = g_cache[i];
        if (g != NULL && g->key_len == key_len && memcmp(g->key, key, key_len) == 0) {
            g->refs++;
            g->last_use = ++g_clock;
            return g;
        }
    }
    return NULL;
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

    pthread_mutex_lock(&g_mu);
    srv_grammar *hit = find_locked(key, len + 1);
    if (hit != NULL) g_hits++;
    pthread_mutex_unlock(&g_mu);
    if (hit != NULL) {
        free(key);
        return hit;
    }

    /* Compiled outside the lock: the engine thread releases grammars as
     * requests end and must not wait for a compilation. */
    bc_grammar *compiled = NULL;
    bc_status st = kind == SRV_GRAMMAR_GBNF
                       ? bc_grammar_init_gbnf(tok, text, len, &compiled, err, err_size)
                       : bc_grammar_init_json_schema(tok, len > 0 ? text : NULL, len, &compiled, err, err_size);
    srv_grammar *g = st == BC_STATUS_OK ? calloc(1, sizeof *g) : NULL;
    if (g == NULL) {
        if (st == BC_STATUS_OK) snprintf(err, err_size, "out of memory");
        bc_grammar_free(compiled);
        free(key);
        return NULL;
    }
    *g = (srv_grammar){.key = key, .key_len = len + 1, .grammar = compiled, .refs = 2};

    pthread_mutex_lock(&g_mu);
    g_compiled++;
    if ((hit = find_locked(key, len + 1)) != NULL) { /* another thread compiled it meanwhile */
        pthread_mutex_unlock(&g_mu);
        bc_grammar_free(g->grammar);
        free(g->key);
        free(g);
        return hit;
    }
    g->last_use = ++g_clock;
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

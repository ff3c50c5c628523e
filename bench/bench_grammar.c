/*
 * bench_grammar.c - how long a grammar's token mask takes per generated
 * token: simulates generations under a grammar (or JSON Schema) and times
 * every bc_grammar_matcher_allowed call. A benchmark, not a test.
 *
 *   bench_grammar TOKENIZER (GRAMMAR.gbnf | SCHEMA.json) [TOKENS] [RUNS]
 *
 * Each run generates up to TOKENS tokens (default 300) from a fresh
 * matcher, picking among the allowed pieces at random, with a lean towards
 * pieces that carry JSON punctuation so the output goes through keys,
 * values and nesting rather than staying inside one string; when the end
 * is allowed it ends with probability 0.2. The grammar and its mask cache
 * live across runs (as the server keeps compiled grammars): the first run
 * shows the cold cost, the rest the steady state. Prints the median, p99
 * and maximum per token for both, and the cache's size.
 */
#include "baichuan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *t, int n) {
    if (n == 0) return;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += t[i];
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    printf("%-28s %6d tokens  median %.3f ms  p99 %.3f ms  max %.3f ms  mean %.3f ms\n", what, n, 1e3 * t[n / 2],
           1e3 * t[(int)(0.99 * (n - 1))], 1e3 * t[n - 1], 1e3 * sum / n);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s == NULL || fread(s, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(s);
        return NULL;
    }
    fclose(f);
    s[n] = 0;
    *len = (size_t)n;
    return s;
}

static bool structural(const bc_tokenizer *tok, int32_t id) {
    const char *p = bc_tokenizer_piece(tok, id, NULL, NULL);
    return p != NULL && strpbrk(p, "\"{}[],:0123456789") != NULL;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s TOKENIZER (GRAMMAR.gbnf | SCHEMA.json) [TOKENS] [RUNS]\n", argv[0]);
        return 2;
    }
    int n_tokens = argc > 3 ? atoi(argv[3]) : 300, runs = argc > 4 ? atoi(argv[4]) : 20;
    char err[1024];
    bc_tokenizer *tok;
    if (bc_tokenizer_load(argv[1], &tok, err, sizeof err) != BC_STATUS_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t len;
    char *text = read_file(argv[2], &len);
    if (text == NULL) {
        perror(argv[2]);
        return 1;
    }
    bool schema = len > 5 && strcmp(argv[2] + strlen(argv[2]) - 5, ".json") == 0;
    bc_grammar *g;
    double t0 = now();
    bc_status st = schema ? bc_grammar_init_json_schema(tok, text, len, &g, err, sizeof err)
                          : bc_grammar_init_gbnf(tok, text, len, &g, err, sizeof err);
    if (st != BC_STATUS_OK) {
        fprintf(stderr, "%s: %s\n", argv[2], err);
        return 1;
    }
    double t_compile = now() - t0;
    bc_grammar *again; /* a second grammar for the same tokenizer reuses its sorted pieces */
    t0 = now();
    if ((schema ? bc_grammar_init_json_schema(tok, text, len, &again, err, sizeof err)
                : bc_grammar_init_gbnf(tok, text, len, &again, err, sizeof err)) != BC_STATUS_OK)
        return 1;
    double t_again = now() - t0;
    bc_grammar_free(again);
    bc_tokenizer_info info;
    bc_tokenizer_get_info(tok, &info);
    const int V = info.n_vocab;
    uint32_t *bits = malloc((size_t)(V + 31) / 32 * sizeof *bits);
    int32_t *allowed = malloc((size_t)V * sizeof *allowed), *structs = malloc((size_t)V * sizeof *structs);
    double *cold = malloc((size_t)n_tokens * sizeof *cold);
    double *warm = malloc((size_t)n_tokens * (size_t)runs * sizeof *warm);
    int n_cold = 0, n_warm = 0;
    long n_allowed_sum = 0;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    printf("vocabulary %d pieces; grammar compiled in %.2f ms (the tokenizer's first: sorts its pieces), "
           "another in %.2f ms\n",
           V, 1e3 * t_compile, 1e3 * t_again);
    for (int r = 0; r < runs; r++) {
        bc_grammar_matcher *m;
        if (bc_grammar_matcher_init(g, &m) != BC_STATUS_OK) return 1;
        for (int t = 0; t < n_tokens; t++) {
            double a = now();
            if (bc_grammar_matcher_allowed(m, bits, V) != BC_STATUS_OK) {
                fprintf(stderr, "the matcher failed\n");
                return 1;
            }
            double dt = now() - a;
            if (r == 0)
                cold[n_cold++] = dt;
            else
                warm[n_warm++] = dt;
            int n = 0, ns = 0;
            bool can_end = false;
            for (int id = 0; id < V; id++)
                if ((bits[id >> 5] >> (id & 31)) & 1) {
                    if (id == info.eos_id) {
                        can_end = true;
                        continue;
                    }
                    allowed[n++] = id;
                    if (structural(tok, id)) structs[ns++] = id;
                }
            n_allowed_sum += n;
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            if (n == 0 || (can_end && t > 20 && rng % 10 == 0)) break;
            int32_t id =
                ns > 0 && rng % 10 < 4 ? structs[(rng >> 8) % (uint64_t)ns] : allowed[(rng >> 8) % (uint64_t)n];
            if (bc_grammar_matcher_accept(m, id) != BC_STATUS_OK) {
                fprintf(stderr, "an allowed piece was refused\n");
                return 1;
            }
        }
        bc_grammar_matcher_free(m);
    }
    report("first run (cold cache)", cold, n_cold);
    report("later runs (warm cache)", warm, n_warm);
    printf("allowed pieces per token: %.0f on average\n", (double)n_allowed_sum / (n_cold + n_warm));
    bc_grammar_free(g);
    bc_tokenizer_free(tok);
    free(text);
    free(bits);
    free(allowed);
    free(structs);
    free(cold);
    free(warm);
    return 0;
}

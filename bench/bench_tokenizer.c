/*
 * bench_tokenizer.c - tokenizer throughput of the library itself, without
 * the CLI's I/O: encodes every line of a file, then decodes the ids back,
 * and prints MB/s (wall clock and CPU time). A benchmark, not a test.
 *
 *   bench_tokenizer MODEL TEXT_FILE [REPEAT]
 *
 * bench/bench_tokenizer.py runs it beside spm_encode on the same input.
 */
#include "baichuan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL TEXT_FILE [REPEAT]\n", argv[0]);
        return 2;
    }
    int repeat = argc == 4 ? atoi(argv[3]) : 3;
    if (repeat < 1) repeat = 1;
    char err[1024];
    bc_tokenizer *tok;
    double t0 = now(CLOCK_MONOTONIC);
    if (bc_tokenizer_load(argv[1], &tok, err, sizeof err) != BC_STATUS_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double load_s = now(CLOCK_MONOTONIC) - t0;
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (text == NULL || fread(text, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    fclose(f);

    size_t cap = 1 << 16, n_ids_total = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *out = malloc(1 << 20);
    size_t out_cap = 1 << 20;
    double best_enc_wall = 1e30, best_enc_cpu = 1e30, best_dec_wall = 1e30, best_dec_cpu = 1e30;
    for (int r = 0; r < repeat; r++) {
        /* Encode line by line, keeping every line's ids for decoding. */
        size_t n_all = 0;
        double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        for (long pos = 0; pos < size;) {
            const char *nl = memchr(text + pos, '\n', (size_t)(size - pos));
            size_t len = nl ? (size_t)(nl - (text + pos)) : (size_t)(size - pos);
            size_t n;
            if (cap - n_all < 2) { /* room for the length prefix and one id */
                cap *= 2;
                ids = realloc(ids, cap * sizeof *ids);
            }
            for (;;) {
                bc_status st = bc_tokenizer_encode(tok, text + pos, len, BC_SWITCH_OFF, BC_SWITCH_OFF, ids + n_all + 1,
                                                   cap - n_all - 1, &n);
                if (st == BC_STATUS_OK) break;
                if (st != BC_STATUS_ERROR_ARGUMENT) {
                    fprintf(stderr, "encode failed: %s\n", bc_status_name(st));
                    return 1;
                }
                cap = (n_all + 1 + n) * 2;
                ids = realloc(ids, cap * sizeof *ids);
            }
            ids[n_all] = (int32_t)n; /* length prefix */
            n_all += n + 1;
            pos += (long)len + 1;
        }
        double enc_wall = now(CLOCK_MONOTONIC) - w0, enc_cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        /* Decode each line's ids back. */
        w0 = now(CLOCK_MONOTONIC);
        c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        size_t decoded = 0;
        for (size_t i = 0; i < n_all;) {
            size_t n = (size_t)ids[i], len;
            if (bc_tokenizer_decode(tok, ids + i + 1, n, out, out_cap, &len) != BC_STATUS_OK) {
                out_cap = len * 2 + 1;
                out = realloc(out, out_cap);
                bc_tokenizer_decode(tok, ids + i + 1, n, out, out_cap, &len);
            }
            decoded += len + 1;
            i += n + 1;
        }
        double dec_wall = now(CLOCK_MONOTONIC) - w0, dec_cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (enc_wall < best_enc_wall) best_enc_wall = enc_wall;
        if (enc_cpu < best_enc_cpu) best_enc_cpu = enc_cpu;
        if (dec_wall < best_dec_wall) best_dec_wall = dec_wall;
        if (dec_cpu < best_dec_cpu) best_dec_cpu = dec_cpu;
        n_ids_total = n_all;
        (void)decoded;
    }
    double mb = (double)size / 1e6;
    bc_tokenizer_info info;
    bc_tokenizer_get_info(tok, &info);
    printf("model: %s (%d pieces), loaded in %.3f s\n", argv[1], info.n_vocab, load_s);
    printf("input: %s, %.2f MB\n", argv[2], mb);
    printf("library encode: %.2f MB/s wall, %.2f MB/s cpu, %.0f ids/s (best of %d)\n", mb / best_enc_wall,
           mb / best_enc_cpu, (double)n_ids_total / best_enc_wall, repeat);
    printf("library decode: %.2f MB/s wall, %.2f MB/s cpu (best of %d)\n", mb / best_dec_wall, mb / best_dec_cpu,
           repeat);
    free(ids);
    free(out);
    free(text);
    bc_tokenizer_free(tok);
    return 0;
}

/*
 * tok_stream_check.c - for each line of ids in a file, checks that the
 * streaming detokenizer (one push per id, then flush) gives exactly the
 * whole decode, and that every chunk it returns is complete UTF-8 (never
 * part of a character). Uses only the public header.
 *
 *   tok_stream_check MODEL IDS_FILE
 *
 * Prints one line per failure and a final "N passed, M failed".
 */
#include "baichuan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether s[0, n) is a sequence of complete, well-formed UTF-8 characters. */
static int complete_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80)
            len = 1;
        else if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else
            return 0;
        if (n - i < len) return 0;
        if (len > 1 && (s[i + 1] < lo || s[i + 1] > hi)) return 0;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL IDS_FILE\n", argv[0]);
        return 2;
    }
    char err[1024];
    bc_tokenizer *tok;
    if (bc_tokenizer_load(argv[1], &tok, err, sizeof err) != BC_STATUS_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (f == NULL) {
        perror(argv[2]);
        return 2;
    }
    bc_detokenizer *detok;
    if (bc_detokenizer_init(tok, &detok) != BC_STATUS_OK) return 2;
    char *line = NULL;
    size_t line_cap = 0, cap_ids = 0, cap_text = 0, cap_stream = 0;
    int32_t *ids = NULL;
    char *whole = NULL, *stream = NULL;
    long passed = 0, failed = 0, line_no = 0;
    ssize_t got;
    while ((got = getline(&line, &line_cap, f)) >= 0) {
        line_no++;
        size_t n = 0;
        for (char *p = line, *end; *p; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (n == cap_ids) {
                cap_ids = cap_ids ? cap_ids * 2 : 1024;
                ids = realloc(ids, cap_ids * sizeof *ids);
            }
            ids[n++] = (int32_t)v;
        }
        size_t whole_len;
        if (bc_tokenizer_decode(tok, ids, n, whole, cap_text, &whole_len) != BC_STATUS_OK) {
            cap_text = whole_len + 1;
            whole = realloc(whole, cap_text);
            if (bc_tokenizer_decode(tok, ids, n, whole, cap_text, &whole_len) != BC_STATUS_OK) {
                printf("FAIL  line %ld: decode failed\n", line_no);
                failed++;
                continue;
            }
        }
        size_t stream_len = 0;
        int ok = 1;
        for (size_t i = 0; i <= n && ok; i++) {
            const char *chunk;
            size_t chunk_len;
            bc_status st = i < n ? bc_detokenizer_push(detok, ids[i], &chunk, &chunk_len)
                                 : bc_detokenizer_flush(detok, &chunk, &chunk_len);
            if (st != BC_STATUS_OK) {
                printf("FAIL  line %ld: push %zu: %s\n", line_no, i, bc_status_name(st));
                ok = 0;
                break;
            }
            if (!complete_utf8((const unsigned char *)chunk, chunk_len)) {
                printf("FAIL  line %ld: chunk after id %zu is not complete UTF-8\n", line_no, i);
                ok = 0;
            }
            if (stream_len + chunk_len > cap_stream) {
                cap_stream = (stream_len + chunk_len) * 2 + 64;
                stream = realloc(stream, cap_stream);
            }
            if (chunk_len > 0) memcpy(stream + stream_len, chunk, chunk_len);
            stream_len += chunk_len;
        }
        if (ok && (stream_len != whole_len || (whole_len > 0 && memcmp(stream, whole, whole_len) != 0))) {
            printf("FAIL  line %ld: streaming (%zu bytes) differs from whole decode (%zu bytes)\n", line_no, stream_len,
                   whole_len);
            ok = 0;
        }
        if (!ok) bc_detokenizer_reset(detok);
        if (ok)
            passed++;
        else
            failed++;
    }
    fclose(f);
    free(line);
    free(ids);
    free(whole);
    free(stream);
    bc_detokenizer_free(detok);
    bc_tokenizer_free(tok);
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed ? 1 : 0;
}

/*
 * replay.c - runs a libFuzzer target without libFuzzer (any compiler): each
 * file named on the command line is one input, and so is each of its lines.
 * The tests use it to run the fuzz targets over seed inputs under ASan.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    long runs = 0;
    for (int a = 1; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (f == NULL) {
            perror(argv[a]);
            return 2;
        }
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
        if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) return 2;
        fclose(f);
        LLVMFuzzerTestOneInput(data, (size_t)size);
        runs++;
        for (long pos = 0; pos < size;) {
            const uint8_t *nl = memchr(data + pos, '\n', (size_t)(size - pos));
            long len = nl ? (long)(nl - (data + pos)) : size - pos;
            LLVMFuzzerTestOneInput(data + pos, (size_t)len);
            runs++;
            pos += len + 1;
        }
        free(data);
    }
    printf("%ld passed, 0 failed\n", runs);
    return 0;
}

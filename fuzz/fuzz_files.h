/*
 * fuzz_files.h - a per-process scratch directory for fuzz targets whose
 * parser reads a path (a mapped file, or a model directory): each input is
 * written into it, read back by the parser, and removed.
 */
#ifndef BC_FUZZ_FILES_H
#define BC_FUZZ_FILES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The directory, made on first use and removed at exit (its files are
 * removed by the targets that write them). Aborts if it cannot be made:
 * a fuzzer without it would test nothing. */
static char fuzz__dir[64];

static void fuzz__remove_dir(void) { rmdir(fuzz__dir); }

static const char *fuzz_dir(void) {
    if (fuzz__dir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        snprintf(fuzz__dir, sizeof fuzz__dir, "%s/bc_fuzz_XXXXXX", base && strlen(base) < 40 ? base : "/tmp");
        if (mkdtemp(fuzz__dir) == NULL) {
            perror(fuzz__dir);
            abort();
        }
        atexit(fuzz__remove_dir);
    }
    return fuzz__dir;
}

/* fuzz_dir()/name, in a static buffer per call site's choice of out. */
static const char *fuzz_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", fuzz_dir(), name);
    return out;
}

/* Writes size bytes to path; 0, or -1 (the input is then skipped). */
static int fuzz_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    return fclose(f) == 0 && w == size ? 0 : -1;
}

#endif /* BC_FUZZ_FILES_H */

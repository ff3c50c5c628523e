/*
 * fuzz_checks.h - what every checkpoint reader's output must satisfy,
 * checked by the fuzz targets after a read (whether or not it succeeded:
 * a failed read may leave a partial table, which must be just as sound).
 * Mapped files sit outside ASan's view, so bounds are checked here.
 */
#ifndef BC_FUZZ_CHECKS_H
#define BC_FUZZ_CHECKS_H

#include "formats/tensor_table.h"

#include <stdlib.h>

/* Every tensor's bytes lie inside its file (or in an owned copy), its name
 * is set, and touching its first and last byte is harmless. */
static void fuzz_check_table(const bc__tensor_table *t) {
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < t->n_tensors; i++) {
        const bc__tensor *x = &t->tensors[i];
        if (x->name == NULL || x->file == NULL || x->n_dims < 0 || x->n_dims > BC__MAX_DIMS) abort();
        const uint8_t *p = x->data, *lo = x->file->data, *hi = x->file->data + x->file->size;
        int in_file = p >= lo && p <= hi;
        if (in_file && (x->n_bytes > (uint64_t)(hi - p) || x->file_offset != (uint64_t)(p - lo))) abort();
        if (!in_file && x->file_offset + x->n_bytes > x->file->size) abort(); /* a copy of bytes in the file */
        if (x->n_bytes > 0) sink ^= p[0] ^ p[x->n_bytes - 1];
    }
    (void)sink;
}

#endif /* BC_FUZZ_CHECKS_H */

/*
 * bnb4.c - bitsandbytes 4-bit checkpoints (Baichuan2-*-Chat-4bits).
 */
#include "model.h"

int bc__bnb4_bind(bc_model *m, bool *used, const char *name, int64_t rows, int64_t cols, bc__weight *w, bc__err *err) {
    (void)used;
    (void)rows;
    (void)cols;
    (void)w;
    return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: tensor '%s': bitsandbytes checkpoints cannot be loaded yet",
                      m->path, name);
}

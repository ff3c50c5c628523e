/*
 * gptq.c - GPTQ int4 checkpoints (AutoGPTQ layout): qweight, qzeros,
 * scales and g_idx of each linear layer, converted at load into q4_gptq
 * blocks. Not written yet: every GPTQ matrix is refused.
 */
#include "model.h"

int bc__gptq_bind(bc_model *m, bool *used, const char *name, int64_t rows, int64_t cols, bc__weight *w, bc__err *err) {
    (void)used;
    (void)rows;
    (void)cols;
    (void)w;
    return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: tensor '%s': GPTQ checkpoints cannot be loaded yet", m->path,
                      name);
}

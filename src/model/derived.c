/*
 * derived.c - data computed once at load from the weights and the
 * hyper-parameters (see derived.h).
 */
#include "model/derived.h"

#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>

/* NormHead: logits are computed with the stored head and then scaled per row
 * by 1 / max(|row|, 1e-12), which equals using the normalized head (and works
 * unchanged for quantized heads). */
int bc__model_head_scale(bc_model *m, bc__err *err) {
    const bc__weight *w = &m->lm_head;
    m->lm_head_scale = malloc((size_t)w->rows * sizeof(float));
    float *row = malloc((size_t)w->cols * sizeof(float));
    if (m->lm_head_scale == NULL || row == NULL) {
        free(row);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory for the NormHead scales");
    }
    for (int64_t i = 0; i < w->rows; i++) {
        bc__weight_row_f32(w, i, row);
        double ss = 0.0;
        for (int64_t j = 0; j < w->cols; j++) ss += (double)row[j] * row[j];
        double norm = sqrt(ss);
        m->lm_head_scale[i] = (float)(1.0 / (norm > 1e-12 ? norm : 1e-12));
    }
    free(row);
    return 0;
}

/* ALiBi slopes by the interleave rule: for n heads, with p the largest power
 * of two <= n, heads 0..p-1 get 2^(-8(i+1)/p) and the remaining n-p heads take
 * every other slope of the 2p rule: 2^(-8(2k+1)/(2p)). For 40 heads that is
 * 2^(-(h+1)/4) for h < 32 and 2^(-(2k+1)/8) for the 8 extra heads. */
static void compute_alibi_slopes(int n_head, float *slopes) {
    int p = 1;
    while (p * 2 <= n_head) p *= 2;
    for (int h = 0; h < p; h++) slopes[h] = (float)pow(2.0, -8.0 * (h + 1) / p);
    for (int k = 0; k < n_head - p; k++) slopes[p + k] = (float)pow(2.0, -8.0 * (2 * k + 1) / (2.0 * p));
}

int bc__model_position_tables(bc_model *m, bc__err *err) {
    const bc__hparams *hp = &m->hp;
    if (hp->pos_encoding == BC_POS_ENCODING_ALIBI) {
        m->alibi_slopes = malloc((size_t)hp->n_head * sizeof(float));
        if (m->alibi_slopes == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
        compute_alibi_slopes(hp->n_head, m->alibi_slopes);
    } else {
        int half = hp->head_dim / 2;
        m->rope_inv_freq = malloc((size_t)half * sizeof(double));
        if (m->rope_inv_freq == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
        for (int i = 0; i < half; i++) m->rope_inv_freq[i] = pow((double)hp->rope_theta, -2.0 * i / hp->head_dim);
    }
    return 0;
}

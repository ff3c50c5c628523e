/*
 * attend.c - attention of one head over the paged KV pool (see attend.h):
 * the portable C kernel, bc__attend_ref, and the dispatch to the AVX2 one
 * of avx2_attend.c.
 */
#include "kernels/attend.h"

#include "kernels/avx2_attend.h"
#include "kernels/isa.h"
#include "quant/blocks.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define F16(h) bc__f16_to_f32(h)

/* q . row for the D values of a key row of dtype: eight partial sums over
 * the values converted to f32 (exactly), as bc__dot_f32. */
static float kv_dot_ref(const float *q, const uint8_t *row, bc_dtype dtype, int D) {
    float s[8] = {0}, x[8];
    for (int i = 0; i < D; i += 8) {
        const int n = D - i < 8 ? D - i : 8;
        if (dtype == BC_DTYPE_F32) {
            memcpy(x, row + (size_t)i * sizeof(float), (size_t)n * sizeof(float));
        } else if (dtype == BC_DTYPE_F16) {
            for (int t = 0; t < n; t++) {
                uint16_t h;
                memcpy(&h, row + (size_t)(i + t) * sizeof h, sizeof h);
                x[t] = F16(h);
            }
        } else { /* q8_0: 8 values never straddle a block of 32 */
            const bc__block_q8_0 *b = (const bc__block_q8_0 *)row + i / 32;
            const float d = F16(b->d);
            for (int t = 0; t < n; t++) x[t] = d * (float)b->qs[i % 32 + t];
        }
        if (n == 8)
            for (int t = 0; t < 8; t++) s[t] += q[i + t] * x[t];
        else
            for (int t = 0; t < n; t++) s[0] += q[i + t] * x[t];
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* out[i] += p * v[i] for the D values of a value row of dtype. */
static void kv_axpy_ref(float p, const uint8_t *row, bc_dtype dtype, int D, float *out) {
    if (dtype == BC_DTYPE_F32) {
        for (int i = 0; i < D; i++) {
            float x;
            memcpy(&x, row + (size_t)i * sizeof x, sizeof x);
            out[i] += p * x;
        }
    } else if (dtype == BC_DTYPE_F16) {
        for (int i = 0; i < D; i++) {
            uint16_t h;
            memcpy(&h, row + (size_t)i * sizeof h, sizeof h);
            out[i] += p * F16(h);
        }
    } else {
        for (int b = 0; b < D / 32; b++) {
            const bc__block_q8_0 *x = (const bc__block_q8_0 *)row + b;
            const float d = F16(x->d);
            for (int i = 0; i < 32; i++) out[32 * b + i] += p * (d * (float)x->qs[i]);
        }
    }
}

void bc__attend_ref(const float *q, const bc__kv_rows *k, const bc__kv_rows *v, int n_keys, int D, float scale,
                    const float *slope, int pos, float *scores, float *out) {
    float max = -INFINITY;
    for (int j = 0; j < n_keys;) {
        const uint8_t *row;
        for (int run = bc__kv_run(k, j, n_keys, &row); run > 0; run--, j++, row += k->row_stride) {
            float s = kv_dot_ref(q, row, k->dtype, D) * scale;
            if (slope) s += *slope * (float)(j - pos);
            scores[j] = s;
            if (s > max) max = s;
        }
    }
    float sum = 0.0f;
    for (int j = 0; j < n_keys; j++) {
        scores[j] = expf(scores[j] - max);
        sum += scores[j];
    }
    for (int j = 0; j < n_keys; j++) scores[j] /= sum;
    memset(out, 0, (size_t)D * sizeof(float));
    for (int j = 0; j < n_keys;) {
        const uint8_t *row;
        for (int run = bc__kv_run(v, j, n_keys, &row); run > 0; run--, j++, row += v->row_stride)
            kv_axpy_ref(scores[j], row, v->dtype, D, out);
    }
}

void bc__attend(const float *q, const bc__kv_rows *k, const bc__kv_rows *v, int n_keys, int D, float scale,
                const float *slope, int pos, float *scores, float *out) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (D % 32 == 0 && bc__kernels_isa() >= BC__ISA_AVX2) {
        bc__attend_avx2(q, k, v, n_keys, D, scale, slope, pos, scores, out);
        return;
    }
#endif
    bc__attend_ref(q, k, v, n_keys, D, scale, slope, pos, scores, out);
}

/*
 * attend.c - attention of a tile of query rows over the paged KV pool (see
 * attend.h): the portable C part kernel, the merge of parts, the tile
 * driver, and the dispatch to the x86 part kernels of x86_attend.c.
 */
#include "kernels/attend.h"

#include "kernels/x86_attend.h"
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

size_t bc__attend_scratch_floats(int n_rows, int D) {
    /* the part kernels' scores (BC__ATT_SEGMENT per row), then the tile
     * driver's part and running state ((D + 2) per row each) */
    return (size_t)n_rows * BC__ATT_SEGMENT + 2 * (size_t)n_rows * ((size_t)D + 2);
}

void bc__attend_part_ref(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m, float *l,
                         float *o) {
    const int D = h->D, j0 = seg * BC__ATT_SEGMENT;
    float *s = scratch;
    for (int r = 0; r < t->n_rows; r++) {
        const float *q = t->q + (size_t)r * t->q_stride;
        const int pos = t->pos0 + r, end = pos + 1 < j0 + BC__ATT_SEGMENT ? pos + 1 : j0 + BC__ATT_SEGMENT;
        float *out = o + (size_t)r * (size_t)D;
        memset(out, 0, (size_t)D * sizeof(float));
        m[r] = -INFINITY;
        l[r] = 0.0f;
        if (end <= j0) continue;
        float max = -INFINITY;
        for (int j = j0; j < end; j++) {
            float x = kv_dot_ref(q, bc__kv_row(&h->k, j), h->k.dtype, D) * h->scale;
            if (h->slope) x += *h->slope * (float)(j - pos);
            s[j - j0] = x;
            if (x > max) max = x;
        }
        float sum = 0.0f;
        for (int j = j0; j < end; j++) sum += s[j - j0] = expf(s[j - j0] - max);
        for (int j = j0; j < end; j++) kv_axpy_ref(s[j - j0], bc__kv_row(&h->v, j), h->v.dtype, D, out);
        m[r] = max;
        l[r] = sum;
    }
}

void bc__attend_merge(int D, float *M, float *L, float *O, float m, float l, const float *o) {
    const float top = m > *M ? m : *M;
    if (top == -INFINITY) return; /* both empty */
    const float a = expf(*M - top), b = expf(m - top);
    *M = top;
    *L = *L * a + l * b;
    for (int i = 0; i < D; i++) O[i] = O[i] * a + o[i] * b;
}

void bc__attend_finish(int D, float L, const float *O, float *out) {
    for (int i = 0; i < D; i++) out[i] = O[i] / L;
}

void bc__attend_part(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m, float *l,
                     float *o) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (h->D % 32 == 0 && bc__kernels_isa() >= BC__ISA_AVX512) {
        bc__attend_part_avx512(t, h, seg, scratch, m, l, o);
        return;
    }
    if (h->D % 32 == 0 && bc__kernels_isa() >= BC__ISA_AVX2) {
        bc__attend_part_avx2(t, h, seg, scratch, m, l, o);
        return;
    }
#endif
    bc__attend_part_ref(t, h, seg, scratch, m, l, o);
}

void bc__attend_tile(const bc__att_tile *t, const bc__att_head *h, float *scratch, float *out, size_t out_stride) {
    const int D = h->D, R = t->n_rows;
    float *pm = scratch + (size_t)R * BC__ATT_SEGMENT, *pl = pm + R, *po = pl + R;
    float *M = po + (size_t)R * (size_t)D, *L = M + R, *O = L + R;
    for (int r = 0; r < R; r++) {
        M[r] = -INFINITY;
        L[r] = 0.0f;
    }
    memset(O, 0, (size_t)R * (size_t)D * sizeof(float));
    const int n_seg = bc__att_segments(t);
    for (int seg = 0; seg < n_seg; seg++) {
        bc__attend_part(t, h, seg, scratch, pm, pl, po);
        for (int r = 0; r < R; r++)
            bc__attend_merge(D, &M[r], &L[r], O + (size_t)r * (size_t)D, pm[r], pl[r], po + (size_t)r * (size_t)D);
    }
    for (int r = 0; r < R; r++) bc__attend_finish(D, L[r], O + (size_t)r * (size_t)D, out + (size_t)r * out_stride);
}

/*
 * ref.c - the portable C kernel of every dtype (bc__dot_c, see ref.h): the
 * path of CPUs without AVX2 and the spec the SIMD kernels are tested
 * against (tests/unit/test_kernels.c). f32, f16 and bf16 weights are widened
 * to f32 (exactly) against f32 activations; the block formats unpack a
 * block's quants to integers, take the exact integer dot product with the
 * activation block, and scale it in f32.
 */
#include "kernels/ref.h"

#include "kernels/code4.h"
#include "kernels/vec.h"
#include "quant/blocks.h"

#include <stdint.h>
#include <string.h>

#define F16(h)                  bc__f16_to_f32(h)
#define ACT(type, a, k, stride) ((const type *)((const char *)(a) + (size_t)(k) * (stride)))

/* f32 weights, f32 activations. */
static void dot_f32_c(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    for (int k = 0; k < na; k++) out[k] = bc__dot_f32(w, ACT(float, a, k, as), cols);
}

/* f16 / bf16 weights (u16 each), f32 activations: 256 weights at a time
 * widened to f32 (exact), then the vectorizable f32 dot per activation row. */
static void dot_half_c(int64_t cols, const uint16_t *w, int bf16, const void *a, size_t as, int na, float *out) {
    float s[BC__MAX_NA] = {0}, wf[256];
    for (int64_t i = 0; i < cols; i += 256) {
        int64_t len = cols - i < 256 ? cols - i : 256;
        for (int64_t j = 0; j < len; j++) wf[j] = bf16 ? bc__bf16_to_f32(w[i + j]) : F16(w[i + j]);
        for (int k = 0; k < na; k++) s[k] += bc__dot_f32(wf, ACT(float, a, k, as) + i, len);
    }
    for (int k = 0; k < na; k++) out[k] = s[k];
}
static void dot_f16_c(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    dot_half_c(cols, w, 0, a, as, na, out);
}
static void dot_bf16_c(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    dot_half_c(cols, w, 1, a, as, na, out);
}

/* The 32-weight formats against a8 blocks: each block is unpacked to q[32]
 * (unsigned for q4/q5, signed for q8_0), then per activation row
 *   q8_0       dw*da * sum(q*qa)
 *   q4_0/q5_0  dw*da * (sum(q*qa) - zp*sum(qa)),  zp = 8 / 16
 *   q4_1/q5_1  dw*da * sum(q*qa) + mw*da*sum(qa) */
static void dot_32_c(bc_dtype t, int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    float s[BC__MAX_NA] = {0};
    int q[32];
    for (int64_t b = 0; b < cols / 32; b++) {
        float dw = 0, mw = 0;
        int zp = 0;
        switch (t) {
        case BC_DTYPE_Q8_0: {
            const bc__block_q8_0 *x = (const bc__block_q8_0 *)w + b;
            dw = F16(x->d);
            for (int j = 0; j < 32; j++) q[j] = x->qs[j];
            break;
        }
        case BC_DTYPE_Q4_0:
        case BC_DTYPE_Q4_1: {
            const uint8_t *qs;
            if (t == BC_DTYPE_Q4_0) {
                const bc__block_q4_0 *x = (const bc__block_q4_0 *)w + b;
                dw = F16(x->d);
                zp = 8;
                qs = x->qs;
            } else {
                const bc__block_q4_1 *x = (const bc__block_q4_1 *)w + b;
                dw = F16(x->d);
                mw = F16(x->m);
                qs = x->qs;
            }
            for (int j = 0; j < 16; j++) {
                q[j] = qs[j] & 0xF;
                q[j + 16] = qs[j] >> 4;
            }
            break;
        }
        default: { /* q5_0, q5_1 */
            const uint8_t *qs, *qhp;
            if (t == BC_DTYPE_Q5_0) {
                const bc__block_q5_0 *x = (const bc__block_q5_0 *)w + b;
                dw = F16(x->d);
                zp = 16;
                qs = x->qs;
                qhp = x->qh;
            } else {
                const bc__block_q5_1 *x = (const bc__block_q5_1 *)w + b;
                dw = F16(x->d);
                mw = F16(x->m);
                qs = x->qs;
                qhp = x->qh;
            }
            uint32_t qh;
            memcpy(&qh, qhp, 4);
            for (int j = 0; j < 16; j++) {
                q[j] = (qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
                q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            }
            break;
        }
        }
        for (int k = 0; k < na; k++) {
            const bc__block_a8 *y = ACT(bc__block_a8, a, k, as) + b;
            int isum = 0;
            for (int j = 0; j < 32; j++) isum += q[j] * y->qs[j];
            s[k] += dw * y->d * (float)(isum - zp * y->sum) + mw * y->d * (float)y->sum;
        }
    }
    for (int k = 0; k < na; k++) out[k] = s[k];
}

#define DOT32_C(name, T)                                                                                               \
    static void name(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {                      \
        dot_32_c(T, cols, w, a, as, na, out);                                                                          \
    }
DOT32_C(dot_q8_0_c, BC_DTYPE_Q8_0)
DOT32_C(dot_q4_0_c, BC_DTYPE_Q4_0)
DOT32_C(dot_q4_1_c, BC_DTYPE_Q4_1)
DOT32_C(dot_q5_0_c, BC_DTYPE_Q5_0)
DOT32_C(dot_q5_1_c, BC_DTYPE_Q5_1)

/* q4_gptq against a16d blocks: dw*da * (sum(q * (128 hi + lo)) - z*sum(qa)),
 * exact in int32 (|q * qa| <= 15 * 8191). */
static void dot_q4_gptq_c(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    float s[BC__MAX_NA] = {0};
    for (int64_t b = 0; b < cols / 32; b++) {
        const bc__block_q4_gptq *x = (const bc__block_q4_gptq *)w + b;
        int q[32];
        for (int j = 0; j < 16; j++) {
            q[j] = x->qs[j] & 0xF;
            q[j + 16] = x->qs[j] >> 4;
        }
        for (int k = 0; k < na; k++) {
            const bc__block_a16d *y = ACT(bc__block_a16d, a, k, as) + b;
            int isum = 0;
            for (int j = 0; j < 32; j++) isum += q[j] * (128 * y->hi[j] + y->lo[j]);
            s[k] += F16(x->d) * y->d * (float)(isum - x->z * y->sum);
        }
    }
    for (int k = 0; k < na; k++) out[k] = s[k];
}

/* nf4 / fp4 against a16 blocks: per 64-weight block and activation row,
 *   absmax * (da_0 * sum_0(t[q] * qa) + da_1 * sum_1(t[q] * qa))
 * over its two halves of 32 (each one a16 block; the int32 sums are exact:
 * |t| <= 2^14, |qa| <= 8191), times 2^-14 at the end. */
static void dot_code4_c(const int16_t *tab, int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    float s[BC__MAX_NA] = {0};
    int q[64];
    for (int64_t b = 0; b < cols / 64; b++) {
        const bc__block_nf4 *x = (const bc__block_nf4 *)w + b;
        for (int p = 0; p < 32; p++) {
            q[bc__nf4_slot(p)] = tab[x->qs[p] & 0xF];
            q[32 + bc__nf4_slot(p)] = tab[x->qs[p] >> 4];
        }
        for (int k = 0; k < na; k++) {
            const bc__block_a16 *y = ACT(bc__block_a16, a, k, as) + 2 * b;
            int i0 = 0, i1 = 0;
            for (int j = 0; j < 32; j++) {
                i0 += q[j] * y[0].qs[j];
                i1 += q[32 + j] * y[1].qs[j];
            }
            s[k] += x->d * (y[0].d * (float)i0 + y[1].d * (float)i1);
        }
    }
    for (int k = 0; k < na; k++) out[k] = s[k] * 0x1p-14f;
}
static void dot_nf4_c(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    dot_code4_c(bc__nf4_i16, cols, w, a, as, na, out);
}
static void dot_fp4_c(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    dot_code4_c(bc__fp4_i16, cols, w, a, as, na, out);
}

/* q4_K / q5_K against a8k: per sub-block j of 32 (scale sc_j, min m_j)
 *   d*da * sum_j sc_j * sum(q*qa) - dmin*da * sum_j m_j * (bsums[2j] + bsums[2j+1]) */
static void dot_k45_c(int bits, int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    float s[BC__MAX_NA] = {0};
    uint8_t q[256];
    for (int64_t b = 0; b < cols / 256; b++) {
        const uint8_t *qs, *qh = NULL, *scales;
        float d, dmin;
        if (bits == 4) {
            const bc__block_q4_K *x = (const bc__block_q4_K *)w + b;
            qs = x->qs;
            scales = x->scales;
            d = F16(x->d);
            dmin = F16(x->dmin);
        } else {
            const bc__block_q5_K *x = (const bc__block_q5_K *)w + b;
            qs = x->qs;
            qh = x->qh;
            scales = x->scales;
            d = F16(x->d);
            dmin = F16(x->dmin);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = qs[32 * c + l] & 0xF;
                q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
                if (qh) {
                    q[64 * c + l] |= (uint8_t)(((qh[l] >> (2 * c)) & 1) << 4);
                    q[64 * c + 32 + l] |= (uint8_t)(((qh[l] >> (2 * c + 1)) & 1) << 4);
                }
            }
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; j++) bc__k_scale_min(j, scales, &sc[j], &m[j]);
        for (int k = 0; k < na; k++) {
            const bc__block_a8k *y = ACT(bc__block_a8k, a, k, as) + b;
            int sumi = 0, summ = 0;
            for (int j = 0; j < 8; j++) {
                int isum = 0;
                for (int l = 0; l < 32; l++) isum += q[32 * j + l] * y->qs[32 * j + l];
                sumi += sc[j] * isum;
                summ += m[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
            }
            s[k] += d * y->d * (float)sumi - dmin * y->d * (float)summ;
        }
    }
    for (int k = 0; k < na; k++) out[k] = s[k];
}
static void dot_q4_K_c(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    dot_k45_c(4, cols, w, a, as, na, out);
}
static void dot_q5_K_c(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    dot_k45_c(5, cols, w, a, as, na, out);
}

/* q6_K against a8k: d*da * sum_g sc_g * (sum(q*qa) - 32 * bsums[g]) over the
 * 16 groups of 16 (q in [0, 63]). */
static void dot_q6_K_c(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {
    float s[BC__MAX_NA] = {0};
    uint8_t q[256];
    for (int64_t b = 0; b < cols / 256; b++) {
        const bc__block_q6_K *x = (const bc__block_q6_K *)w + b;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
            uint8_t *o = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                o[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
                o[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                o[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
            }
        }
        const float d = F16(x->d);
        for (int k = 0; k < na; k++) {
            const bc__block_a8k *y = ACT(bc__block_a8k, a, k, as) + b;
            int sumi = 0;
            for (int g = 0; g < 16; g++) {
                int isum = 0;
                for (int l = 0; l < 16; l++) isum += q[16 * g + l] * y->qs[16 * g + l];
                sumi += x->scales[g] * (isum - 32 * y->bsums[g]);
            }
            s[k] += d * y->d * (float)sumi;
        }
    }
    for (int k = 0; k < na; k++) out[k] = s[k];
}

const bc__dot_fn bc__dot_c[BC_DTYPE_COUNT] = {
    [BC_DTYPE_F32] = dot_f32_c,   [BC_DTYPE_F16] = dot_f16_c,         [BC_DTYPE_BF16] = dot_bf16_c,
    [BC_DTYPE_Q8_0] = dot_q8_0_c, [BC_DTYPE_Q4_0] = dot_q4_0_c,       [BC_DTYPE_Q4_1] = dot_q4_1_c,
    [BC_DTYPE_Q5_0] = dot_q5_0_c, [BC_DTYPE_Q5_1] = dot_q5_1_c,       [BC_DTYPE_Q4_K] = dot_q4_K_c,
    [BC_DTYPE_Q5_K] = dot_q5_K_c, [BC_DTYPE_Q6_K] = dot_q6_K_c,       [BC_DTYPE_NF4] = dot_nf4_c,
    [BC_DTYPE_FP4] = dot_fp4_c,   [BC_DTYPE_Q4_GPTQ] = dot_q4_gptq_c,
};

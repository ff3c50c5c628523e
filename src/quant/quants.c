/*
 * quants.c - llama.cpp block formats: reference quantizers, dequantizers and
 * the reference dot product (see quants.h for the layouts).
 *
 *   half precision    f32 <-> f16 / bf16 with round-to-nearest-even
 *   block structs     the ggml layouts, sizes pinned with static_assert
 *   32-weight blocks  q8_0, q4_0, q4_1, q5_0, q5_1
 *   K blocks          the scale searches (make_qx / make_qkx2 rules), q4_K, q5_K, q6_K
 *   4-bit checkpoints nf4 / fp4 (bitsandbytes) and q4_gptq blocks of ours
 *   row entry points  bc__quantize_row, bc__dequantize_row, bc__dot_ref
 *
 * The quantizers reproduce the rules of llama.cpp's quantize_row_*_ref
 * (the path llama-quantize takes without an importance matrix): the same
 * searches, the same float operations in the same order, and the same
 * rounding (round-half-even through the 1.5*2^23 trick where ggml uses it,
 * roundf for q8_0, truncating casts for q4_0/q4_1/q5_0/q5_1).
 */
#include "quant/quants.h"

#include "quant/blocks.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Half precision                                                           */
/* ------------------------------------------------------------------------ */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The float-arithmetic conversion of the FP16 library (also ggml's portable
 * path): scaling by 2^112 then 2^-110 makes the FPU round the mantissa to 10
 * bits (nearest even), including for subnormal halves; overflow gives inf. */
uint16_t bc__f32_to_f16(float f) {
    const float scale_to_inf = 0x1.0p+112f, scale_to_zero = 0x1.0p-110f;
    float base = (fabsf(f) * scale_to_inf) * scale_to_zero;
    const uint32_t w = f32_bits(f), shl1_w = w + w, sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u, mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

uint16_t bc__f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#define F16(h) bc__f16_to_f32(h)

/* ggml's nearest_int: round half to even by adding 1.5 * 2^23 (|f| < 2^22). */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* ------------------------------------------------------------------------ */
/* 32-weight blocks                                                         */
/* ------------------------------------------------------------------------ */

/* q8_0: d = amax / 127, q = roundf(x / d). */
static void quantize_q8_0(const float *x, bc__block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = MAX(amax, fabsf(x[j]));
        const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        y[i].d = bc__f32_to_f16(d);
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void dequantize_q8_0(const bc__block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = F16(x[i].d);
        for (int j = 0; j < 32; j++) y[j] = x[i].qs[j] * d;
    }
}

/* The signed value of largest magnitude (the first one on ties). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

/* q4_0: d = max / -8 (max = the signed absmax), q = min(15, trunc(x/d + 8.5)). */
static void quantize_q4_0(const float *x, bc__block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float d = signed_absmax(x, 32) / -8, id = d ? 1.0f / d : 0.0f;
        y[i].d = bc__f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            const int q0 = MIN(15, (int)(int8_t)(x[j] * id + 8.5f));
            const int q1 = MIN(15, (int)(int8_t)(x[j + 16] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void dequantize_q4_0(const bc__block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = F16(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void min_max(const float *x, int n, float *min, float *max) {
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min) *min = x[j];
        if (x[j] > *max) *max = x[j];
    }
}

/* q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min)/d + 0.5)). */
static void quantize_q4_1(const float *x, bc__block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min, max;
        min_max(x, 32, &min, &max);
        const float d = (max - min) / 15, id = d ? 1.0f / d : 0.0f;
        y[i].d = bc__f32_to_f16(d);
        y[i].m = bc__f32_to_f16(min);
        for (int j = 0; j < 16; j++) {
            const int q0 = MIN(15, (int)(int8_t)((x[j] - min) * id + 0.5f));
            const int q1 = MIN(15, (int)(int8_t)((x[j + 16] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void dequantize_q4_1(const bc__block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = F16(x[i].d), m = F16(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (x[i].qs[j] & 0x0F) * d + m;
            y[j + 16] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* q5_0: d = max / -16, q = min(31, trunc(x/d + 16.5)); low 4 bits in qs as
 * q4_0, bit 4 of weight j in bit j of qh. */
static void quantize_q5_0(const float *x, bc__block_q5_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float d = signed_absmax(x, 32) / -16, id = d ? 1.0f / d : 0.0f;
        y[i].d = bc__f32_to_f16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = MIN(31, (int)(int8_t)(x[j] * id + 16.5f));
            const int q1 = MIN(31, (int)(int8_t)(x[j + 16] * id + 16.5f));
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, sizeof qh);
    }
}

static void dequantize_q5_0(const bc__block_q5_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = F16(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < 16; j++) {
            const int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (((x[i].qs[j] & 0x0F) | h0) - 16) * d;
            y[j + 16] = (((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

/* q5_1: d = (max - min) / 31, m = min, q = trunc((x - min)/d + 0.5). */
static void quantize_q5_1(const float *x, bc__block_q5_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min, max;
        min_max(x, 32, &min, &max);
        const float d = (max - min) / 31, id = d ? 1.0f / d : 0.0f;
        y[i].d = bc__f32_to_f16(d);
        y[i].m = bc__f32_to_f16(min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = (uint8_t)((x[j] - min) * id + 0.5f);
            const int q1 = (uint8_t)((x[j + 16] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, sizeof qh);
    }
}

static void dequantize_q5_1(const bc__block_q5_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = F16(x[i].d), m = F16(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < 16; j++) {
            const int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = ((x[i].qs[j] & 0x0F) | h0) * d + m;
            y[j + 16] = ((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* K blocks: scale searches                                                 */
/* ------------------------------------------------------------------------ */

#define GROUP_MAX_EPS 1e-15f

/* Symmetric search (ggml's make_qx_quants with rmse_type 1, no weights):
 * L[i] in [0, 2*nmax) with x ~ scale * (L - nmax); tries 18 scales around
 * -nmax/max and keeps the one maximising sum(w x l)^2 / sum(w l^2), w = x^2. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = MAX(-nmax, MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = MAX(-nmax, MIN(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + MAX(-nmax, MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Asymmetric search (ggml's make_qkx2_quants, squared error): x ~ scale * L -
 * the_min with L in [0, nmax]; tries nstep+1 scales (nmax + rmin + rdelta*k)
 * / (max - min), each with the weighted least-squares scale and min, and keeps
 * the lowest weighted squared error. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAX(0, MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = diff * diff;
        best_mad += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MAX(0, MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = diff * diff;
                mad += weights[i] * diff;
            }
            if (mad < best_mad) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Shared by q4_K and q5_K: per 32-weight sub-block the qkx2 search, then the
 * 8 scales and mins quantized to 6 bits against d = max_scale/63 and
 * dmin = max_min/63, and the weights re-quantized against the stored scales.
 * Fills L (256 values in [0, nmax]). */
static void quantize_k_scales(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out, uint16_t *dmin_out,
                              uint8_t *scales_out, uint8_t *L) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales_out, 0, 12);
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = MIN(63, ls);
        lm = MIN(63, lm);
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales_out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales_out[j - 0] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = bc__f32_to_f16(max_scale / 63.f);
    *dmin_out = bc__f32_to_f16(max_min / 63.f);
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        bc__k_scale_min(j, scales_out, &sc, &m);
        const float d = F16(*d_out) * sc;
        if (!d) continue;
        const float dm = F16(*dmin_out) * m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)MAX(0, MIN(nmax, l));
        }
    }
}

/* q4_K: weights 64k..64k+31 in the low nibbles of qs[32k..32k+31], weights
 * 64k+32..64k+63 in the high nibbles; sub-block j uses scale/min j. */
static void quantize_q4_K(const float *x, bc__block_q4_K *y, int64_t nb) {
    uint8_t L[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        quantize_k_scales(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void dequantize_q4_K(const bc__block_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q = x[i].qs;
        const float d = F16(x[i].d), min = F16(x[i].dmin);
        for (int j = 0, is = 0; j < 256; j += 64, q += 32, is += 2) {
            uint8_t sc, m;
            bc__k_scale_min(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            bc__k_scale_min(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* q5_K: low 4 bits as q4_K; bit 4 of weight 64k+l (l < 32) is bit 2k of
 * qh[l], of weight 64k+32+l bit 2k+1. */
static void quantize_q5_K(const float *x, bc__block_q5_K *y, int64_t nb) {
    uint8_t L[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        quantize_k_scales(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        uint8_t *qh = y[i].qh, *ql = y[i].qs;
        memset(qh, 0, 32);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < 256; n += 64, ql += 32) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
        }
    }
}

static void dequantize_q5_K(const bc__block_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        const float d = F16(x[i].d), min = F16(x[i].dmin);
        unsigned u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < 256; j += 64, ql += 32, is += 2, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            bc__k_scale_min(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            bc__k_scale_min(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* q6_K: 16 sub-blocks of 16 with int8 scales against d = max_scale / -128.
 * Per 128-weight half h (ql += 64, qh += 32 per half), for l < 32: weight
 * l: low nibble of ql[l], bits 0-1 of qh[l]; l+32: low nibble of ql[l+32],
 * bits 2-3; l+64: high nibble of ql[l], bits 4-5; l+96: high nibble of
 * ql[l+32], bits 6-7. Value = q - 32. */
static void quantize_q6_K(const float *x, bc__block_q6_K *y, int64_t nb) {
    int8_t L[256];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = bc__f32_to_f16(1 / iscale);
        for (int ib = 0; ib < 16; ++ib) y[i].scales[ib] = (int8_t)MIN(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < 16; ++j) {
            float d = F16(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = MAX(-32, MIN(31, l));
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < 256; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
                const int q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

static void dequantize_q6_K(const bc__block_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = F16(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                int is = l / 16;
                const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* 4-bit checkpoints                                                        */
/* ------------------------------------------------------------------------ */

/* bitsandbytes' dequantize_4bit: w = code[q] * absmax in f32. NF4 from
 * dDequantizeNF4; FP4 from dDequantizeFP4Tree, the same values as
 * get_4bit_type("fp4") = [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12 with the sign
 * in bit 3 (so code 8 is -0). */
const float bc__nf4_code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};
const float bc__fp4_code[16] = {
    0.0f,  0.0625f / 12,  8.0f / 12,  12.0f / 12,  4.0f / 12,  6.0f / 12,  2.0f / 12,  3.0f / 12,
    -0.0f, -0.0625f / 12, -8.0f / 12, -12.0f / 12, -4.0f / 12, -6.0f / 12, -2.0f / 12, -3.0f / 12,
};

const float *bc__code4_table(bc_dtype dtype) {
    return dtype == BC_DTYPE_NF4 ? bc__nf4_code : dtype == BC_DTYPE_FP4 ? bc__fp4_code : NULL;
}

/* For tests and benchmarks (the checkpoints come quantized): absmax of the
 * block, then the nearest code (the lower on a tie). */
static void quantize_code4(const float *code, const float *x, bc__block_nf4 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 64) {
        float amax = 0.0f;
        for (int j = 0; j < 64; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float id = amax ? 1.0f / amax : 0.0f;
        uint8_t q[64];
        for (int j = 0; j < 64; j++) {
            float v = x[j] * id, best = INFINITY;
            for (int c = 0; c < 16; c++)
                if (fabsf(code[c] - v) < best) {
                    best = fabsf(code[c] - v);
                    q[j] = (uint8_t)c;
                }
        }
        y[i].d = amax;
        for (int p = 0; p < 32; p++) y[i].qs[p] = (uint8_t)(q[bc__nf4_slot(p)] | q[32 + bc__nf4_slot(p)] << 4);
    }
}

static void dequantize_code4(const float *code, const bc__block_nf4 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 64)
        for (int p = 0; p < 32; p++) {
            y[bc__nf4_slot(p)] = code[x[i].qs[p] & 0x0F] * x[i].d;
            y[32 + bc__nf4_slot(p)] = code[x[i].qs[p] >> 4] * x[i].d;
        }
}

/* For tests: asymmetric, d = (max - min) / 15, z = round(-min / d). */
static void quantize_q4_gptq(const float *x, bc__block_q4_gptq *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min, max;
        min_max(x, 32, &min, &max);
        if (min > 0) min = 0;
        if (max < 0) max = 0;
        const float d = F16(bc__f32_to_f16((max - min) / 15)), id = d ? 1.0f / d : 0.0f;
        const int z = MIN(15, (int)lrintf(-min * id));
        y[i].d = bc__f32_to_f16(d);
        y[i].z = (uint8_t)z;
        y[i].zero = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = MAX(0, MIN(15, (int)lrintf(x[j] * id) + z));
            const int q1 = MAX(0, MIN(15, (int)lrintf(x[j + 16] * id) + z));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void dequantize_q4_gptq(const bc__block_q4_gptq *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = F16(x[i].d);
        const int z = x[i].z;
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - z) * d;
            y[j + 16] = (float)((x[i].qs[j] >> 4) - z) * d;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Row entry points                                                         */
/* ------------------------------------------------------------------------ */

/* Number of blocks in n elements, or -1 when n is not whole blocks. */
static int64_t n_blocks(bc_dtype dtype, int64_t n) {
    const bc__dtype_traits *t = bc__dtype_traits_of(dtype);
    if (t == NULL || n < 0 || n % t->block_elems != 0) return -1;
    return n / t->block_elems;
}

int bc__quantize_row(bc_dtype dtype, const float *src, void *dst, int64_t n) {
    int64_t nb = n_blocks(dtype, n);
    if (nb < 0) return -1;
    switch (dtype) {
    case BC_DTYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case BC_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = bc__f32_to_f16(src[i]);
        break;
    case BC_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = bc__f32_to_bf16(src[i]);
        break;
    case BC_DTYPE_Q8_0: quantize_q8_0(src, dst, nb); break;
    case BC_DTYPE_Q4_0: quantize_q4_0(src, dst, nb); break;
    case BC_DTYPE_Q4_1: quantize_q4_1(src, dst, nb); break;
    case BC_DTYPE_Q5_0: quantize_q5_0(src, dst, nb); break;
    case BC_DTYPE_Q5_1: quantize_q5_1(src, dst, nb); break;
    case BC_DTYPE_Q4_K: quantize_q4_K(src, dst, nb); break;
    case BC_DTYPE_Q5_K: quantize_q5_K(src, dst, nb); break;
    case BC_DTYPE_Q6_K: quantize_q6_K(src, dst, nb); break;
    case BC_DTYPE_NF4:
    case BC_DTYPE_FP4: quantize_code4(bc__code4_table(dtype), src, dst, nb); break;
    case BC_DTYPE_Q4_GPTQ: quantize_q4_gptq(src, dst, nb); break;
    default: return -1;
    }
    return 0;
}

int bc__dequantize_row(bc_dtype dtype, const void *src, float *dst, int64_t n) {
    int64_t nb = n_blocks(dtype, n);
    if (nb < 0) return -1;
    switch (dtype) {
    case BC_DTYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case BC_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = F16(((const uint16_t *)src)[i]);
        break;
    case BC_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = bc__bf16_to_f32(((const uint16_t *)src)[i]);
        break;
    case BC_DTYPE_Q8_0: dequantize_q8_0(src, dst, nb); break;
    case BC_DTYPE_Q4_0: dequantize_q4_0(src, dst, nb); break;
    case BC_DTYPE_Q4_1: dequantize_q4_1(src, dst, nb); break;
    case BC_DTYPE_Q5_0: dequantize_q5_0(src, dst, nb); break;
    case BC_DTYPE_Q5_1: dequantize_q5_1(src, dst, nb); break;
    case BC_DTYPE_Q4_K: dequantize_q4_K(src, dst, nb); break;
    case BC_DTYPE_Q5_K: dequantize_q5_K(src, dst, nb); break;
    case BC_DTYPE_Q6_K: dequantize_q6_K(src, dst, nb); break;
    case BC_DTYPE_NF4:
    case BC_DTYPE_FP4: dequantize_code4(bc__code4_table(dtype), src, dst, nb); break;
    case BC_DTYPE_Q4_GPTQ: dequantize_q4_gptq(src, dst, nb); break;
    default: return -1;
    }
    return 0;
}

float bc__dot_ref(bc_dtype dtype, const void *row, const float *x, int64_t n) {
    const bc__dtype_traits *t = bc__dtype_traits_of(dtype);
    /* One 256-weight chunk at a time (a whole number of blocks of every dtype). */
    const int64_t chunk = 256;
    float w[256];
    double sum = 0.0;
    const uint8_t *p = row;
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t len = n - i < chunk ? n - i : chunk;
        bc__dequantize_row(dtype, p, w, len);
        for (int64_t j = 0; j < len; j++) sum += (double)w[j] * x[i + j];
        p += (size_t)(len / t->block_elems) * (size_t)t->block_bytes;
    }
    return (float)sum;
}

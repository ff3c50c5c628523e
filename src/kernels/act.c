/*
 * act.c - activation rows into the formats the kernels read (see act.h and
 * kernel_types.h): symmetric 8-bit blocks per 32 (a8) and per 256 with
 * per-16 sums (a8k), 13 bits per 32 as int16 (a16) or as two bytes (a16d),
 * bf16. The AVX2 quantizer of x86.c writes the same a8 / a8k blocks.
 */
#include "kernels/act.h"

#include "kernels/isa.h"
#include "kernels/x86.h"
#include "quant/blocks.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

int bc__act_kind(bc_dtype dtype) {
    switch (dtype) {
    case BC_DTYPE_Q8_0:
    case BC_DTYPE_Q4_0:
    case BC_DTYPE_Q4_1:
    case BC_DTYPE_Q5_0:
    case BC_DTYPE_Q5_1: return BC__ACT_A8;
    case BC_DTYPE_Q4_GPTQ: return BC__ACT_A16D;
    case BC_DTYPE_NF4:
    case BC_DTYPE_FP4: return BC__ACT_A16;
    case BC_DTYPE_Q4_K:
    case BC_DTYPE_Q5_K:
    case BC_DTYPE_Q6_K: return BC__ACT_A8K;
    default: return BC__ACT_F32;
    }
}

size_t bc__act_row_bytes(int kind, int64_t cols) {
    switch (kind) {
    case BC__ACT_A8: return (size_t)(cols / 32) * sizeof(bc__block_a8);
    case BC__ACT_A8K: return (size_t)(cols / 256) * sizeof(bc__block_a8k);
    case BC__ACT_BF16: return (size_t)cols * sizeof(uint16_t);
    case BC__ACT_A16: return (size_t)(cols / 32) * sizeof(bc__block_a16);
    case BC__ACT_A16D: return (size_t)(cols / 32) * sizeof(bc__block_a16d);
    default: return (size_t)cols * sizeof(float);
    }
}

/* Round half to even by adding 1.5 * 2^23 (|f| < 2^22). */
static inline int round_even(float f) {
    float v = f + 12582912.f;
    int i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Symmetric 8-bit: d = amax / 127, q = round(x / d); *sum = sum of q. */
static float quantize_a8_block(const float *x, int n, int8_t *q) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) q[i] = (int8_t)round_even(x[i] * id);
    return d;
}

void bc__quantize_act(int kind, const float *x, void *dst, int64_t cols) {
#if defined(__x86_64__) && defined(__GNUC__)
    if ((kind == BC__ACT_A8 || kind == BC__ACT_A8K) && bc__kernels_isa() >= BC__ISA_AVX2) {
        bc__quantize_act_avx2(kind, x, dst, cols);
        return;
    }
#endif
    if (kind == BC__ACT_BF16) {
        uint16_t *y = dst;
        for (int64_t i = 0; i < cols; i++) {
            uint32_t bits;
            memcpy(&bits, &x[i], sizeof bits);
            y[i] = (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16); /* finite activations */
        }
    } else if (kind == BC__ACT_A16 || kind == BC__ACT_A16D) {
        for (int64_t b = 0; b < cols / 32; b++, x += 32) {
            float amax = 0.0f;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
            const float d = amax / 8191, id = d ? 1.0f / d : 0.0f;
            int sum = 0;
            int16_t q[32];
            for (int i = 0; i < 32; i++) sum += q[i] = (int16_t)round_even(x[i] * id);
            if (kind == BC__ACT_A16) {
                bc__block_a16 *y = (bc__block_a16 *)dst + b;
                memcpy(y->qs, q, sizeof q);
                y->d = d;
                y->sum = sum;
            } else {
                bc__block_a16d *y = (bc__block_a16d *)dst + b;
                for (int i = 0; i < 32; i++) {
                    y->hi[i] = (int8_t)(q[i] >> 7); /* arithmetic: floor(q / 128) */
                    y->lo[i] = (int8_t)(q[i] & 127);
                }
                y->d = d;
                y->sum = sum;
            }
        }
    } else if (kind == BC__ACT_A8) {
        bc__block_a8 *y = dst;
        for (int64_t b = 0; b < cols / 32; b++, x += 32) {
            y[b].d = quantize_a8_block(x, 32, y[b].qs);
            int s = 0;
            for (int i = 0; i < 32; i++) s += y[b].qs[i];
            y[b].sum = s;
        }
    } else if (kind == BC__ACT_A8K) {
        bc__block_a8k *y = dst;
        for (int64_t b = 0; b < cols / 256; b++, x += 256) {
            y[b].d = quantize_a8_block(x, 256, y[b].qs);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int i = 0; i < 16; i++) s += y[b].qs[16 * g + i];
                y[b].bsums[g] = (int16_t)s;
            }
        }
    } else {
        memcpy(dst, x, (size_t)cols * sizeof(float));
    }
}

/*
 * kernels.c - dispatch, portable C kernels and the threaded matmul (see
 * kernels.h). The SIMD kernels live in x86.c and the avx2_*.c files.
 *
 *   dispatch          CPU feature detection and the forced level
 *   activations       f32 rows -> a8 / a8k blocks
 *   C kernels         one per dtype: the portable path and the spec of the SIMD ones
 *   repacking         interleaved layouts (kernels.h), looked up per dtype and level
 *   matmul            row split across threads, tiles of rows x activation rows
 *   small kernels     dot_f32, weight_row_f32, attention over the paged KV pool, rmsnorm
 */
#include "kernels/kernels.h"

#include "quant/quants.h"
#include "quant/blocks.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                 */
/* ------------------------------------------------------------------------ */

static atomic_int forced_isa = -1;

bc__isa bc__kernels_detect(void) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return BC__ISA_C;
    /* F16C has no __builtin_cpu_supports name in older compilers; every AVX2
     * CPU made has it. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni"))
        return BC__ISA_AVX512;
    return BC__ISA_AVX2;
#else
    return BC__ISA_C;
#endif
}

bc__isa bc__kernels_isa(void) {
    static atomic_int detected = -1;
    int d = atomic_load(&detected);
    if (d < 0) {
        d = (int)bc__kernels_detect();
        atomic_store(&detected, d);
    }
    int f = atomic_load(&forced_isa);
    return (bc__isa)(f >= 0 && f < d ? f : d);
}

bc__isa bc__kernels_force(int level) {
    atomic_store(&forced_isa, level);
    return bc__kernels_isa();
}

bool bc__kernels_bf16(void) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    if (bc__kernels_isa() < BC__ISA_AVX512 || bc__gemm4_bf16_act_bf16 == NULL) return false;
    /* CPUID leaf 7 sub-leaf 1, EAX bit 5: AVX512_BF16 (no __builtin_cpu_supports
     * name for it in gcc 12). Asked once: CPUID traps to the hypervisor. */
    static atomic_int has = -1;
    int h = atomic_load(&has);
    if (h < 0) {
        unsigned eax = 7, ebx, ecx = 1, edx;
        __asm__("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
        h = (int)((eax >> 5) & 1);
        atomic_store(&has, h);
    }
    return h != 0;
#else
    return false;
#endif
}

const char *bc__isa_name(bc__isa isa) {
    switch (isa) {
    case BC__ISA_C: return "c";
    case BC__ISA_AVX2: return "avx2";
    case BC__ISA_AVX512: return "avx512";
    default: return "?";
    }
}

/* ------------------------------------------------------------------------ */
/* Activations                                                              */
/* ------------------------------------------------------------------------ */

int bc__act_kind(bc_dtype dtype) {
    switch (dtype) {
    case BC_DTYPE_Q8_0:
    case BC_DTYPE_Q4_0:
    case BC_DTYPE_Q4_1:
    case BC_DTYPE_Q5_0:
    case BC_DTYPE_Q5_1: return 1;
    case BC_DTYPE_Q4_GPTQ: return BC__ACT_A16D;
    case BC_DTYPE_NF4:
    case BC_DTYPE_FP4: return BC__ACT_A16;
    case BC_DTYPE_Q4_K:
    case BC_DTYPE_Q5_K:
    case BC_DTYPE_Q6_K: return 2;
    default: return 0;
    }
}

size_t bc__act_row_bytes(int kind, int64_t cols) {
    switch (kind) {
    case 1: return (size_t)(cols / 32) * sizeof(bc__block_a8);
    case 2: return (size_t)(cols / 256) * sizeof(bc__block_a8k);
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
    if ((kind == 1 || kind == 2) && bc__kernels_isa() >= BC__ISA_AVX2) {
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
    } else if (kind == 1) {
        bc__block_a8 *y = dst;
        for (int64_t b = 0; b < cols / 32; b++, x += 32) {
            y[b].d = quantize_a8_block(x, 32, y[b].qs);
            int s = 0;
            for (int i = 0; i < 32; i++) s += y[b].qs[i];
            y[b].sum = s;
        }
    } else if (kind == 2) {
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

/* ------------------------------------------------------------------------ */
/* C kernels                                                                */
/* ------------------------------------------------------------------------ */

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

/* The NF4 and FP4 code tables as int16: round(code * 2^14), within 2^-15
 * of the code (3e-5 of a block's absmax; bitsandbytes itself rounds the
 * weights to f16, 2^-11 relative). Checked against bc__nf4_code /
 * bc__fp4_code in test_kernels. */
const int16_t bc__nf4_i16[16] = {-16384, -11406, -8603, -6470, -4660, -3027, -1492, 0,
                                 1304,   2637,   4032,  5536,  7221,  9218,  11845, 16384};
const int16_t bc__fp4_i16[16] = {0, 85,  10923,  16384,  5461,  8192,  2731,  4096,
                                 0, -85, -10923, -16384, -5461, -8192, -2731, -4096};

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

static const bc__dot_fn dot_c[BC_DTYPE_COUNT] = {
    [BC_DTYPE_F32] = dot_f32_c,   [BC_DTYPE_F16] = dot_f16_c,         [BC_DTYPE_BF16] = dot_bf16_c,
    [BC_DTYPE_Q8_0] = dot_q8_0_c, [BC_DTYPE_Q4_0] = dot_q4_0_c,       [BC_DTYPE_Q4_1] = dot_q4_1_c,
    [BC_DTYPE_Q5_0] = dot_q5_0_c, [BC_DTYPE_Q5_1] = dot_q5_1_c,       [BC_DTYPE_Q4_K] = dot_q4_K_c,
    [BC_DTYPE_Q5_K] = dot_q5_K_c, [BC_DTYPE_Q6_K] = dot_q6_K_c,       [BC_DTYPE_NF4] = dot_nf4_c,
    [BC_DTYPE_FP4] = dot_fp4_c,   [BC_DTYPE_Q4_GPTQ] = dot_q4_gptq_c,
};

bc__dot_fn bc__dot_kernel(bc_dtype dtype, bc__isa isa) {
    if ((unsigned)dtype >= BC_DTYPE_COUNT) return NULL;
    if (isa >= BC__ISA_AVX512 && bc__dot_avx512[dtype]) return bc__dot_avx512[dtype];
    if (isa >= BC__ISA_AVX2 && bc__dot_avx2[dtype]) return bc__dot_avx2[dtype];
    return dot_c[dtype];
}

bc__gemm4_fn bc__gemm4_kernel(bc_dtype dtype, bc__isa isa) {
    if ((unsigned)dtype >= BC_DTYPE_COUNT) return NULL;
    if (isa >= BC__ISA_AVX512 && bc__gemm4_avx512[dtype]) return bc__gemm4_avx512[dtype];
    if (isa >= BC__ISA_AVX2) return bc__gemm4_avx2[dtype];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Repacking (layouts in kernels.h)                                         */
/* ------------------------------------------------------------------------ */

const bc__pack_layout *bc__pack_layout_of(bc_dtype dtype, bc__isa isa) {
    if ((unsigned)dtype >= BC_DTYPE_COUNT) return NULL;
    if (isa >= BC__ISA_AVX512 && bc__pack_avx512[dtype]) return bc__pack_avx512[dtype];
    if (isa >= BC__ISA_AVX2 && bc__pack_avx2[dtype]) return bc__pack_avx2[dtype];
    return NULL;
}

bool bc__pack_supported(const bc__weight *w) {
    const bc__pack_layout *l = bc__pack_layout_of(w->dtype, bc__kernels_isa());
    const int64_t block = bc__dtype_traits_of(w->dtype)->block_elems;
    return l != NULL && w->rows > 0 && w->rows % l->rows == 0 && w->cols > 0 && w->cols % block == 0;
}

static size_t repack_bytes_of(const bc__pack_layout *l, const bc__weight *w) {
    return (size_t)(w->rows / l->rows) * l->group_bytes(w->cols);
}

size_t bc__repack_bytes(const bc__weight *w) { return w->pack != NULL ? repack_bytes_of(w->pack, w) : 0; }

bool bc__weight_repack(bc__weight *w) {
    if (!bc__pack_supported(w)) return false;
    const bc__pack_layout *l = bc__pack_layout_of(w->dtype, bc__kernels_isa());
    const size_t bytes = repack_bytes_of(l, w), group_bytes = l->group_bytes(w->cols);
    const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
    const size_t row_bytes = (size_t)(w->cols / tr->block_elems) * (size_t)tr->block_bytes;
    /* Big copies on 2 MiB boundaries and advised as huge pages: a matrix
     * streamed once per token then costs a TLB miss per 2 MiB, not per 4 KiB,
     * and the load takes fewer page faults. */
    size_t align = bytes >= ((size_t)2 << 20) ? (size_t)2 << 20 : 64;
    void *p = aligned_alloc(align, (bytes + align - 1) / align * align);
    if (p == NULL) return false;
#ifdef MADV_HUGEPAGE
    if (align > 64) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    for (int64_t g = 0; g < w->rows / l->rows; g++)
        l->pack((const char *)w->data + (size_t)g * (size_t)l->rows * row_bytes, row_bytes, w->cols,
                (char *)p + (size_t)g * group_bytes);
    w->packed = p;
    w->pack = l;
    return true;
}

void bc__weight_repack_free(bc__weight *w) {
    free(w->packed);
    w->packed = NULL;
    w->pack = NULL;
}

/* ------------------------------------------------------------------------ */
/* Matmul                                                                   */
/* ------------------------------------------------------------------------ */

/* Activation formats a matmul may need at once (f32 rows need no scratch). */
static const int scratch_kinds[] = {1, 2, BC__ACT_BF16, BC__ACT_A16, BC__ACT_A16D};

size_t bc__matmul_scratch_bytes(int64_t max_cols, int n) {
    /* The activations gathered into a weight's column order (bc__weight.perm). */
    size_t bytes = ((size_t)n * (size_t)max_cols * sizeof(float) + 63) / 64 * 64;
    for (size_t i = 0; i < sizeof scratch_kinds / sizeof scratch_kinds[0]; i++)
        bytes += ((size_t)n * bc__act_row_bytes(scratch_kinds[i], max_cols) + 63) / 64 * 64;
    return bytes + 64;
}

/* Weight rows per tile of the row-major kernels: a tile's rows are run
 * against every group of BC__MAX_NA activation rows while they sit in cache.
 * On a repacked matrix a tile is one group. Threads take chunks of whole
 * ROW_TILE tiles, which every layout's group divides. */
#define ROW_TILE 16

/* One weight of a matmul task and how it is read. */
typedef struct matmul_part {
    const bc__weight *w;
    bc__dot_fn fn;
    bc__gemm4_fn gemm4;          /* NULL: none for this dtype and level */
    const bc__pack_layout *pack; /* non-NULL: w->packed is read, one group per tile */
    size_t row_bytes;            /* of the row-major data */
    const void *act;             /* (n) activation rows in the format of this weight, act_stride bytes each */
    size_t act_stride;
    int act_kind;
    float *y; /* (n, rows) */
} matmul_part;

typedef struct matmul_task {
    matmul_part parts[BC__MATMUL_MAX_PARTS];
    int n_parts;
    int64_t rows, cols;
    int n;
    const float *x; /* (n, cols) f32 */
    int64_t n_tiles, tiles_per_chunk;
    unsigned flags;
    /* The activation formats to make: quantize_worker chunk i is row i % n of kind q_kinds[i / n]. */
    int n_q_kinds, q_kinds[BC__MATMUL_MAX_PARTS];
    void *q_act[BC__MATMUL_MAX_PARTS];
    size_t q_stride[BC__MATMUL_MAX_PARTS];
} matmul_task;

static void quantize_worker(void *p, int64_t i, int ith) {
    (void)ith;
    const matmul_task *t = p;
    int k = (int)(i / t->n), row = (int)(i % t->n);
    bc__quantize_act(t->q_kinds[k], t->x + (size_t)row * (size_t)t->cols, (char *)t->q_act[k] + row * t->q_stride[k],
                     t->cols);
}

/* Rows [rb, re) of one part (rb a multiple of the part's tile), against
 * every group of BC__MAX_NA activation rows while they sit in cache. Each
 * output is computed by exactly one kernel call, so results do not depend on
 * which thread ran the tile. */
static void matmul_rows(const matmul_task *t, const matmul_part *p, int64_t rb, int64_t re) {
    const bc__weight *w = p->w;
    /* Outputs gather here and go out as whole rows of the tile: the rows of
     * y are rows * 4 bytes apart, often a multiple of 4096, so writing them
     * one float at a time would keep evicting each other from the same L1
     * cache set. */
    float tile[BC__MAX_NA][ROW_TILE];
    static_assert(BC__PACK_MAX_ROWS <= ROW_TILE, "a group's outputs fit the tile buffer");
    if (p->pack != NULL) {
        const int R = p->pack->rows;
        const size_t group_bytes = p->pack->group_bytes(w->cols);
        float *out = &tile[0][0]; /* (na, R) */
        for (int64_t r = rb; r < re; r += R) {
            const char *group = (const char *)w->packed + (size_t)(r / R) * group_bytes;
            for (int i = 0; i < t->n; i += BC__MAX_NA) {
                int na = t->n - i < BC__MAX_NA ? t->n - i : BC__MAX_NA;
                p->pack->kernel(w->cols, group, (const char *)p->act + (size_t)i * p->act_stride, p->act_stride, na,
                                out);
                for (int k = 0; k < na; k++)
                    memcpy(p->y + (size_t)(i + k) * (size_t)w->rows + (size_t)r, out + k * R,
                           (size_t)R * sizeof(float));
            }
        }
        return;
    }
    for (; rb < re; rb += ROW_TILE) {
        const int64_t te = rb + ROW_TILE < re ? rb + ROW_TILE : re;
        for (int i = 0; i < t->n; i += BC__MAX_NA) {
            int na = t->n - i < BC__MAX_NA ? t->n - i : BC__MAX_NA;
            const char *act = (const char *)p->act + (size_t)i * p->act_stride;
            int64_t r = rb;
            if (p->gemm4 != NULL)
                for (; r + 4 <= te; r += 4) {
                    float out[4 * BC__MAX_NA];
                    p->gemm4(w->cols, (const char *)w->data + (size_t)r * p->row_bytes, p->row_bytes, act,
                             p->act_stride, na, out);
                    for (int j = 0; j < 4; j++)
                        for (int k = 0; k < na; k++) tile[k][r - rb + j] = out[j * BC__MAX_NA + k];
                }
            for (; r < te; r++) {
                float out[BC__MAX_NA];
                p->fn(w->cols, (const char *)w->data + (size_t)r * p->row_bytes, act, p->act_stride, na, out);
                for (int k = 0; k < na; k++) tile[k][r - rb] = out[k];
            }
            for (int k = 0; k < na; k++)
                memcpy(p->y + (size_t)(i + k) * (size_t)w->rows + (size_t)rb, tile[k],
                       (size_t)(te - rb) * sizeof(float));
        }
    }
}

/* y0 = silu(y0) * y1 on rows [rb, re) of every activation row. */
static void silu_mul_rows(const matmul_task *t, int64_t rb, int64_t re) {
    for (int k = 0; k < t->n; k++) {
        float *g = t->parts[0].y + (size_t)k * (size_t)t->rows, *u = t->parts[1].y + (size_t)k * (size_t)t->rows;
        bc__silu_mul(g + rb, u + rb, (int)(re - rb));
    }
}

/* Chunk c is the run of tiles [c * tiles_per_chunk, (c + 1) * tiles_per_chunk)
 * of every part: a thread streams long contiguous stretches of the matrices
 * (the hardware and software prefetches run ahead within them) instead of
 * every other tile, and an epilogue on those rows runs while they are in
 * cache. */
static void matmul_worker(void *p, int64_t c, int ith) {
    (void)ith;
    const matmul_task *t = p;
    int64_t rb = c * t->tiles_per_chunk * ROW_TILE, re = rb + t->tiles_per_chunk * ROW_TILE;
    if (re > t->rows) re = t->rows;
    for (int i = 0; i < t->n_parts; i++) matmul_rows(t, &t->parts[i], rb, re);
    if (t->flags & BC__MATMUL_SILU_MUL) silu_mul_rows(t, rb, re);
}

/* Whether two weights' columns are in the same order. */
static bool same_perm(const bc__weight *a, const bc__weight *b) {
    if (a->perm == b->perm) return true;
    return a->perm != NULL && b->perm != NULL && memcmp(a->perm, b->perm, (size_t)a->cols * sizeof *a->perm) == 0;
}

void bc__matmul_multi(bc__pool *pool, const bc__weight *const *ws, int n_parts, const float *x, int n, float *const *ys,
                      void *scratch, unsigned flags) {
    matmul_task t;
    const bc__isa isa = bc__kernels_isa();
    char *free_scratch = (char *)(((uintptr_t)scratch + 63) / 64 * 64);
    /* Columns stored in another order (GPTQ desc_act, bc__weight.perm): the
     * activations are gathered into that order first, x[:, perm], in the
     * first region of the scratch. Parts whose orders differ run one at a
     * time (the fused epilogue then runs over the whole outputs). */
    for (int i = 1; i < n_parts; i++)
        if (!same_perm(ws[0], ws[i])) {
            for (int k = 0; k < n_parts; k++)
                bc__matmul_multi(pool, &ws[k], 1, x, n, &ys[k], scratch, flags & ~BC__MATMUL_SILU_MUL);
            if (flags & BC__MATMUL_SILU_MUL)
                for (int k = 0; k < n; k++)
                    bc__silu_mul(ys[0] + (size_t)k * (size_t)ws[0]->rows, ys[1] + (size_t)k * (size_t)ws[0]->rows,
                                 (int)ws[0]->rows);
            return;
        }
    const int32_t *perm = ws[0]->perm;
    const int64_t cols = ws[0]->cols;
    if (perm != NULL) {
        float *gathered = (float *)free_scratch; /* (n, cols) */
        for (int k = 0; k < n; k++)
            for (int64_t c = 0; c < cols; c++)
                gathered[(size_t)k * (size_t)cols + (size_t)c] = x[(size_t)k * (size_t)cols + (size_t)perm[c]];
        x = gathered;
    }
    free_scratch += ((size_t)n * (size_t)cols * sizeof(float) + 63) / 64 * 64;
    t.n_parts = n_parts;
    t.rows = ws[0]->rows;
    t.cols = ws[0]->cols;
    t.n = n;
    t.x = x;
    t.flags = flags;
    t.n_q_kinds = 0;
    for (int i = 0; i < n_parts; i++) {
        matmul_part *p = &t.parts[i];
        const bc__weight *w = ws[i];
        const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
        p->w = w;
        p->y = ys[i];
        p->row_bytes = (size_t)(w->cols / tr->block_elems) * (size_t)tr->block_bytes;
        p->fn = bc__dot_kernel(w->dtype, isa);
        /* Single rows stream faster one weight row at a time (measured with
         * bench_matmul: the four-row kernel halves n = 1 speed on 11008 x 4096). */
        p->gemm4 = n >= 2 ? bc__gemm4_kernel(w->dtype, isa) : NULL;
        /* A lower level forced after the repack reads the row-major data. */
        /* Without row-major data (a matrix quantized at load, freed once
         * repacked) the repacked copy is read even below its level: the CPU
         * has that level, it was detected when the copy was made. */
        p->pack = w->packed != NULL && w->pack != NULL && (isa >= w->pack->isa || w->data == NULL) ? w->pack : NULL;
        p->act_kind = bc__act_kind(w->dtype);
        if ((flags & BC__MATMUL_BF16_ACT) && w->dtype == BC_DTYPE_BF16 && bc__kernels_bf16()) {
            p->act_kind = BC__ACT_BF16;
            p->fn = bc__dot_bf16_act_bf16;
            p->gemm4 = bc__gemm4_bf16_act_bf16;
        }
        if (p->act_kind == 0) {
            p->act = x;
            p->act_stride = (size_t)w->cols * sizeof(float);
            continue;
        }
        /* Each activation format once, shared by the parts that read it. */
        int k = 0;
        while (k < t.n_q_kinds && t.q_kinds[k] != p->act_kind) k++;
        if (k == t.n_q_kinds) {
            t.q_kinds[k] = p->act_kind;
            t.q_stride[k] = bc__act_row_bytes(p->act_kind, t.cols);
            t.q_act[k] = free_scratch;
            free_scratch += ((size_t)n * t.q_stride[k] + 63) / 64 * 64;
            t.n_q_kinds++;
        }
        p->act = t.q_act[k];
        p->act_stride = t.q_stride[k];
    }
    const int64_t n_q = (int64_t)t.n_q_kinds * n;
    if (n_q >= 4)
        bc__pool_run(pool, quantize_worker, &t, n_q);
    else
        for (int64_t i = 0; i < n_q; i++) quantize_worker(&t, i, 0);
    /* About 8 chunks per thread: long runs, and still enough of them that the
     * threads that are running take over from one that is descheduled. */
    t.n_tiles = (t.rows + ROW_TILE - 1) / ROW_TILE;
    int64_t want = 8 * (int64_t)bc__pool_size(pool);
    t.tiles_per_chunk = (t.n_tiles + want - 1) / want;
    bc__pool_run(pool, matmul_worker, &t, (t.n_tiles + t.tiles_per_chunk - 1) / t.tiles_per_chunk);
}

void bc__matmul(bc__pool *pool, const bc__weight *w, const float *x, int n, float *y, void *scratch, unsigned flags) {
    bc__matmul_multi(pool, &w, 1, x, n, &y, scratch, flags & ~BC__MATMUL_SILU_MUL);
}

/* ------------------------------------------------------------------------ */
/* Small kernels                                                            */
/* ------------------------------------------------------------------------ */

float bc__dot_f32(const float *a, const float *b, int64_t n) {
    /* Eight partial sums: independent chains the compiler can vectorize. */
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

void bc__weight_row_f32(const bc__weight *w, int64_t i, float *row) {
    const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
    size_t row_bytes = (size_t)(w->cols / tr->block_elems) * (size_t)tr->block_bytes;
    const char *src = (const char *)w->data + (size_t)i * row_bytes;
    if (w->perm == NULL) {
        bc__dequantize_row(w->dtype, src, row, w->cols);
        return;
    }
    /* Stored column c is input column perm[c]: a block at a time, scattered
     * back into the input order. */
    float block[256];
    for (int64_t c = 0; c < w->cols; c += tr->block_elems) {
        bc__dequantize_row(w->dtype, src + (size_t)(c / tr->block_elems) * (size_t)tr->block_bytes, block,
                           tr->block_elems);
        for (int j = 0; j < tr->block_elems; j++) row[w->perm[c + j]] = block[j];
    }
}

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

void bc__silu_mul(float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void bc__rmsnorm(const float *x, const float *w, int n, float eps, float *out) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

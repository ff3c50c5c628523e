/*
 * blocks.h - the block structs of the quantized formats (ggml's
 * layouts, see quants.h) and of the 8-bit activation blocks the integer
 * kernels multiply them with. Shared by quants.c, the 4-bit converters
 * (bnb4.c, gptq.c) and the kernels only.
 */
#ifndef BC_QUANTS_BLOCKS_H
#define BC_QUANTS_BLOCKS_H

#include "base/base.h"

#include <assert.h>

/* Weight blocks: f16 fields are raw IEEE half bits. */
typedef struct bc__block_q8_0 {
    uint16_t d;    /* scale */
    int8_t qs[32]; /* w = d * q */
} bc__block_q8_0;

typedef struct bc__block_q4_0 {
    uint16_t d;
    uint8_t qs[16]; /* weight j: low nibble of qs[j] (j < 16), high nibble of qs[j-16] */
} bc__block_q4_0;

typedef struct bc__block_q4_1 {
    uint16_t d, m; /* w = d * q + m */
    uint8_t qs[16];
} bc__block_q4_1;

typedef struct bc__block_q5_0 {
    uint16_t d;
    uint8_t qh[4]; /* bit j of the little-endian u32: bit 4 of weight j */
    uint8_t qs[16];
} bc__block_q5_0;

typedef struct bc__block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} bc__block_q5_1;

typedef struct bc__block_q4_K {
    uint16_t d, dmin;   /* super-block scales of the 6-bit scales and mins */
    uint8_t scales[12]; /* 8 (scale, min) pairs, 6 bits each */
    uint8_t qs[128];
} bc__block_q4_K;

typedef struct bc__block_q5_K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} bc__block_q5_K;

typedef struct bc__block_q6_K {
    uint8_t ql[128];   /* low 4 bits */
    uint8_t qh[64];    /* high 2 bits */
    int8_t scales[16]; /* per 16 weights */
    uint16_t d;
} bc__block_q6_K;

/* Ours, for the published 4-bit checkpoints (converted at load; see
 * quants.h). NF4 and FP4: 64 weights, the f32 absmax of bitsandbytes after
 * its double quantization, and 32 bytes of codes into the format's table:
 * byte p holds weight bc__nf4_slot(p) in its low nibble and weight 32 +
 * bc__nf4_slot(p) in its high one. The slot order is the identity except
 * that bytes 8..15 and 16..23 trade places, so that the AVX2 kernel's
 * in-lane unpack of the table's int16 values yields weights in order. */
typedef struct bc__block_nf4 {
    float d; /* absmax: w = d * code[q] */
    uint8_t qs[32];
} bc__block_nf4;
static inline int bc__nf4_slot(int p) { return (p & ~0x18) | ((p & 8) << 1) | ((p & 16) >> 1); }

/* GPTQ int4: 32 weights of one group, w = d * (q - z), z the AutoGPTQ
 * stored zero plus one (0..16); nibbles in q4_0's order. */
typedef struct bc__block_q4_gptq {
    uint16_t d;   /* the group's f16 scale */
    uint8_t z;    /* zero point */
    uint8_t zero; /* unused, 0 */
    uint8_t qs[16];
} bc__block_q4_gptq;

static_assert(sizeof(bc__block_q8_0) == 34, "q8_0 block is 34 bytes");
static_assert(sizeof(bc__block_q4_0) == 18, "q4_0 block is 18 bytes");
static_assert(sizeof(bc__block_q4_1) == 20, "q4_1 block is 20 bytes");
static_assert(sizeof(bc__block_q5_0) == 22, "q5_0 block is 22 bytes");
static_assert(sizeof(bc__block_q5_1) == 24, "q5_1 block is 24 bytes");
static_assert(sizeof(bc__block_q4_K) == 144, "q4_K block is 144 bytes");
static_assert(sizeof(bc__block_q5_K) == 176, "q5_K block is 176 bytes");
static_assert(sizeof(bc__block_q6_K) == 210, "q6_K block is 210 bytes");
static_assert(sizeof(bc__block_nf4) == 36, "nf4 block is 36 bytes");
static_assert(sizeof(bc__block_q4_gptq) == 20, "q4_gptq block is 20 bytes");

/* Activation blocks (ours, never stored in files): x ~ d * q, symmetric,
 * d = amax / 127, q = round-half-even(x / d). */
typedef struct bc__block_a8 {
    float d;       /* scale */
    int32_t sum;   /* sum of qs, for the zero points and mins of the weights */
    int8_t qs[32]; /* values */
} bc__block_a8;

typedef struct bc__block_a8k {
    float d;           /* scale */
    int16_t bsums[16]; /* sum of each 16 consecutive qs */
    int8_t qs[256];
} bc__block_a8k;

/* 16-bit activations for the 4-bit checkpoint formats, whose definition
 * multiplies f16-precision activations (bitsandbytes and GPTQ compute in
 * f16): x ~ d * q per 32, d = amax / 8191, q = round-half-even(x / d), 13
 * bits and a sign, 64 times finer than a8. Against int16 weights of up to
 * 2^14 the int32 lanes of the kernels' sums stay far below 2^31. */
typedef struct bc__block_a16 {
    float d;
    int32_t sum; /* sum of qs, for the zero points of the weights */
    int16_t qs[32];
} bc__block_a16;

/* The same 13-bit activations split into two bytes for the kernels of
 * unsigned 4-bit weights (q4_gptq), which vpmaddubsw / vpdpbusd multiply
 * with bytes: q = 128 * hi + lo, lo = q & 127 (0..127), hi = q >> 7
 * (-64..63). */
typedef struct bc__block_a16d {
    float d;
    int32_t sum; /* sum of q */
    int8_t hi[32];
    int8_t lo[32];
} bc__block_a16d;

static_assert(sizeof(bc__block_a8) == 40, "a8 block is 40 bytes");
static_assert(sizeof(bc__block_a16d) == 72, "a16d block is 72 bytes");
static_assert(sizeof(bc__block_a16) == 72, "a16 block is 72 bytes");
static_assert(sizeof(bc__block_a8k) == 292, "a8k block is 292 bytes");

/* The 6-bit scale and min of sub-block j (0..7) of a q4_K/q5_K block from
 * its 12 packed bytes (ggml's get_scale_min_k4): j < 4: low 6 bits of
 * scales[j] and scales[j+4]; j >= 4: a nibble of scales[j+4] plus the top two
 * bits of scales[j-4] (scale) and scales[j] (min). Inline, so that this
 * header declares no function of another file: the quantizers (quants.c)
 * and the kernels share it. */
static inline void bc__k_scale_min(int j, const uint8_t *scales, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
        *m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j - 0] >> 6) << 4));
    }
}

#endif /* BC_QUANTS_BLOCKS_H */

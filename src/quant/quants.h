/*
 * quants.h - llama.cpp's block-quantized weight formats: quantize and
 * dequantize rows, and the reference dot product of a quantized row with f32.
 *
 * Layouts are bit-for-bit those of ggml (ggml-common.h), so blocks read from a
 * llama.cpp GGUF are used in place and blocks we write load in llama.cpp:
 *
 *   q8_0   32 weights, 34 bytes: f16 d, int8 qs[32]            w = d * q
 *   q4_0   32 weights, 18 bytes: f16 d, u8 qs[16]              w = d * (q - 8)
 *          (weight j < 16 in the low nibble of qs[j], weight j+16 in the high)
 *   q4_1   32 weights, 20 bytes: f16 d, f16 m, u8 qs[16]       w = d * q + m
 *   q5_0   32 weights, 22 bytes: f16 d, u8 qh[4], u8 qs[16]    w = d * (q - 16)
 *          (bit 4 of weight j is bit j of the little-endian u32 qh)
 *   q5_1   32 weights, 24 bytes: f16 d, f16 m, u8 qh[4], u8 qs[16]  w = d * q + m
 *   q4_K  256 weights, 144 bytes: f16 d, f16 dmin, u8 scales[12] (8 pairs of
 *          6-bit scale/min), u8 qs[128]             w = d*sc*q - dmin*m
 *   q5_K  256 weights, 176 bytes: as q4_K plus u8 qh[32] (fifth bits)
 *   q6_K  256 weights, 210 bytes: u8 ql[128], u8 qh[64], int8 scales[16],
 *          f16 d                                    w = d * sc * (q - 32)
 *
 * Ours, for the published 4-bit checkpoints (never written to GGUF):
 *
 *   nf4    64 weights, 36 bytes: f32 d, u8 qs[32]   w = d * nf4[q]
 *   fp4    64 weights, 36 bytes: f32 d, u8 qs[32]   w = d * fp4[q]
 *          (the order of the codes is in blocks.h)
 *   q4_gptq 32 weights, 20 bytes: f16 d, u8 z, u8 0, u8 qs[16] (q4_0's
 *          nibble order)                             w = d * (q - z)
 *
 * f32, f16 and bf16 go through the same calls (a "block" of one element), so
 * a caller can convert any row to any dtype with one pair of functions.
 *
 * The quantizers follow llama.cpp's reference quantizers (quantize_row_*_ref,
 * no importance matrix) rule for rule, including its rounding, so that the
 * same f32 input gives the same bytes.
 */
#ifndef BC_QUANTS_H
#define BC_QUANTS_H

#include "base/base.h"

/* f32 -> IEEE half, round to nearest even (what ggml's F16C path does). */
BC__HIDDEN uint16_t bc__f32_to_f16(float f);
/* f32 -> bfloat16, round to nearest even; NaN stays a quiet NaN. */
BC__HIDDEN uint16_t bc__f32_to_bf16(float f);

/* Quantizes n floats of src into dst (bc__dtype_row_bytes(dtype, n) bytes).
 * Returns 0, or -1 when dtype is unknown or n is not a whole number of blocks
 * (dst untouched). Thread-safe; needs bc__f16_init() to have run. */
BC__HIDDEN int bc__quantize_row(bc_dtype dtype, const float *src, void *dst, int64_t n);

/* Dequantizes n elements of src (whole blocks) into dst. Returns 0, or -1 as above. */
BC__HIDDEN int bc__dequantize_row(bc_dtype dtype, const void *src, float *dst, int64_t n);

/* Reference dot product: sum_i w[i] * x[i] with w the n elements of a row in
 * dtype (whole blocks), computed by dequantizing block by block in f32. The
 * yardstick the fast kernels are tested against. n must be valid for dtype. */
BC__HIDDEN float bc__dot_ref(bc_dtype dtype, const void *row, const float *x, int64_t n);

/* The 16 values of bitsandbytes' 4-bit codes, as its dequantize_4bit
 * kernel has them (csrc/kernels.cu, dDequantizeNF4 and dDequantizeFP4Tree):
 * NF4 the normal-float quantiles of QLoRA, FP4 sign, 2 exponent bits and a
 * mantissa bit scaled by 1/12. Indexed by the 4-bit code. */
BC__HIDDEN extern const float bc__nf4_code[16];
BC__HIDDEN extern const float bc__fp4_code[16];
/* The table of an NF4 or FP4 dtype, NULL for any other. */
BC__HIDDEN const float *bc__code4_table(bc_dtype dtype);

#endif /* BC_QUANTS_H */

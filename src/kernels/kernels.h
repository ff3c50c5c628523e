/*
 * kernels.h - the numeric building blocks of the forward pass, as the model
 * and the engine use them (header only: it includes the headers of the
 * modules that define them; the files inside src/kernels include those
 * headers directly).
 *
 * Activations are f32. Weights are read in their stored dtype:
 *   f32, f16, bf16   converted to f32 as they stream through (exact), FMA in f32
 *   q8_0 .. q5_1     activations quantized per 32 to 8 bits (bc__block_a8),
 *                    integer dot products per block, scaled in f32
 *   nf4, fp4         activations quantized per 32 to 13 bits + sign (bc__block_a16),
 *                    against the codes as int16
 *   q4_gptq          as q4_0 with the block's zero point, against the same 13-bit
 *                    activations split into two bytes (bc__block_a16d)
 *   q4_K .. q6_K     activations quantized per 256 to 8 bits with per-16 sums
 *                    (bc__block_a8k), integer dot products per sub-block
 *
 * Every dtype has a portable C kernel (ref.c); x86-64 adds AVX2 (+FMA, F16C)
 * and AVX-512 (F, BW, VL, VNNI) kernels compiled with target attributes and
 * picked at run time from the CPU's features (isa.h, dispatch.h; no -march
 * flag needed).
 */
#ifndef BC_KERNELS_H
#define BC_KERNELS_H

#include "kernels/weight.h"   /* bc__weight, bc__weight_row_f32 */
#include "kernels/repack.h"   /* bc__weight_repack: a weight's copy for this CPU's kernels */
#include "kernels/matmul.h"   /* bc__matmul, bc__matmul_multi */
#include "kernels/attend.h"   /* bc__attend_tile over the paged KV pool (bc__kv_rows) */
#include "kernels/kv_store.h" /* bc__kv_store_row: a row into the KV pool */
#include "kernels/vec.h"      /* bc__rmsnorm, bc__silu_mul, bc__dot_f32 */

#endif /* BC_KERNELS_H */

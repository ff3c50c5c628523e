/*
 * kv_store.c - one row of keys or values into the KV pool, converted to the
 * cache type: f32 copied, f16 rounded to nearest even (F16C when the CPU has
 * it: the same rounding, so both paths store the same bits), q8_0 by the
 * reference quantizer of quants.c (llama.cpp's quantize_row_q8_0_ref).
 */
#include "kernels/kv_store.h"

#include "kernels/isa.h"
#include "quant/quants.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "kernels/x86_common.h"

ATTR_AVX2 static void store_f16_avx2(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = bc__f32_to_f16(src[i]);
}
#endif

void bc__kv_store_row(bc_dtype type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case BC_DTYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case BC_DTYPE_F16:
#if defined(__x86_64__) && defined(__GNUC__)
        if (bc__kernels_isa() >= BC__ISA_AVX2) {
            store_f16_avx2(src, dst, n);
            return;
        }
#endif
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = bc__f32_to_f16(src[i]);
        return;
    default: bc__quantize_row(type, src, dst, n); return;
    }
}

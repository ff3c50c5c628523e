/*
 * lora_expand.c - B t over a run of output rows for LoRA (lora_expand.h):
 * the portable C loop (multiply, then add) and, on x86-64 with AVX2 (picked
 * at run time), eight rows per FMA with the scalar tail fused the same way
 * (fmaf), so every row gets one rounding per rank step either way.
 */
#include "kernels/lora_expand.h"

#include "kernels/isa.h"

#include <math.h>

static float element(bc_dtype dtype, const void *p, int64_t i) {
    switch (dtype) {
    case BC_DTYPE_F16: return bc__f16_to_f32(((const uint16_t *)p)[i]);
    case BC_DTYPE_BF16: return bc__bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static void expand_c(bc_dtype dtype, int r, const void *bt, int64_t ld, int64_t o0, int n, const float *t, float *acc) {
    for (int i = 0; i < n; i++) acc[i] = 0.0f;
    for (int k = 0; k < r; k++) {
        const int64_t row = (int64_t)k * ld + o0;
        for (int i = 0; i < n; i++) acc[i] = acc[i] + element(dtype, bt, row + i) * t[k];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "kernels/x86_common.h"

INLINE_AVX2 __m256 load8(bc_dtype dtype, const void *p, int64_t i) {
    if (dtype == BC_DTYPE_F32) return _mm256_loadu_ps((const float *)p + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (dtype == BC_DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

ATTR_AVX2 static void expand_avx2(bc_dtype dtype, int r, const void *bt, int64_t ld, int64_t o0, int n, const float *t,
                                  float *acc) {
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int k = 0; k < r; k++) {
            const int64_t row = (int64_t)k * ld + o0 + i;
            const __m256 tk = _mm256_set1_ps(t[k]);
            a0 = _mm256_fmadd_ps(load8(dtype, bt, row), tk, a0);
            a1 = _mm256_fmadd_ps(load8(dtype, bt, row + 8), tk, a1);
            a2 = _mm256_fmadd_ps(load8(dtype, bt, row + 16), tk, a2);
            a3 = _mm256_fmadd_ps(load8(dtype, bt, row + 24), tk, a3);
        }
        _mm256_storeu_ps(acc + i, a0);
        _mm256_storeu_ps(acc + i + 8, a1);
        _mm256_storeu_ps(acc + i + 16, a2);
        _mm256_storeu_ps(acc + i + 24, a3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int k = 0; k < r; k++)
            a0 = _mm256_fmadd_ps(load8(dtype, bt, (int64_t)k * ld + o0 + i), _mm256_set1_ps(t[k]), a0);
        _mm256_storeu_ps(acc + i, a0);
    }
    for (; i < n; i++) {
        float s = 0.0f;
        for (int k = 0; k < r; k++) s = fmaf(element(dtype, bt, (int64_t)k * ld + o0 + i), t[k], s);
        acc[i] = s;
    }
}
#endif

void bc__lora_expand(bc_dtype dtype, int r, const void *bt, int64_t ld, int64_t o0, int n, const float *t, float *acc) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (bc__kernels_isa() >= BC__ISA_AVX2) {
        expand_avx2(dtype, r, bt, ld, o0, n, t, acc);
        return;
    }
#endif
    expand_c(dtype, r, bt, ld, o0, n, t, acc);
}

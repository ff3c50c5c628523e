/*
 * x86_common.h - what the x86 kernel files share: the target attributes of
 * each level, a few register helpers, and the switch that gives every na
 * (activation rows, 1..BC__MAX_NA) its own copy of a kernel. Included after
 * <immintrin.h>, inside the files' x86-64 + GCC/Clang guard.
 */
#ifndef BC_KERNELS_X86_COMMON_H
#define BC_KERNELS_X86_COMMON_H

#include <string.h>

#define T_AVX2   "avx2,fma,f16c"
#define T_AVX512 "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"

#define ATTR_AVX2     __attribute__((target(T_AVX2)))
#define INLINE_AVX2   static inline __attribute__((always_inline, target(T_AVX2)))
#define ATTR_AVX512   __attribute__((target(T_AVX512)))
#define INLINE_AVX512 static inline __attribute__((always_inline, target(T_AVX512)))

/* One f16 scale to f32 with the F16C instruction (inside target code only):
 * no table lookup evicting weights from the cache. */
#define F16C(h) _cvtsh_ss(h)

/* The sum of the 8 lanes. */
INLINE_AVX2 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 4 activation bytes at p in every 32-bit lane. */
INLINE_AVX2 __m256i bcast4(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* name(cols, w, a, as, na, out) calls body(<leading args>, cols, w, a, as,
 * NA, out) with NA the constant 1..4 for na, so that the per-row
 * accumulators of the inlined body live in registers. */
#define WRAP_NA(attr, name, body, ...)                                                                                 \
    static attr void name(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) {                 \
        switch (na) {                                                                                                  \
        case 1: body(__VA_ARGS__, cols, w, a, as, 1, out); break;                                                      \
        case 2: body(__VA_ARGS__, cols, w, a, as, 2, out); break;                                                      \
        case 3: body(__VA_ARGS__, cols, w, a, as, 3, out); break;                                                      \
        default: body(__VA_ARGS__, cols, w, a, as, 4, out); break;                                                     \
        }                                                                                                              \
    }

#endif /* BC_KERNELS_X86_COMMON_H */

/*
 * x86_dot32.h - template for the 32-weight block kernels (q8_0, q4_0,
 * q4_1, q5_0, q5_1 weights against a8 activation blocks; q4_gptq against
 * a16d, two passes of the bytes), included by
 * x86.c once per instruction set with:
 *   DOT32_TARGET  the target attribute string
 *   DOT32_SFX     the suffix of the generated names
 *   DOT32_VNNI    1: products with vpdpbusd (AVX-512 VNNI) and the fifth bits
 *                 of q5 with a mask move (AVX-512 BW/VL); 0: AVX2 maddubs
 *
 * Per block: the 32 weights are unpacked into one register of bytes, in
 * weight order (nibble j of q4/q5 is the low nibble of qs[j] for j < 16 and
 * the high nibble of qs[j-16] otherwise; bit 4 of weight j is bit j of qh),
 * unsigned for q4/q5. The integer dot with the activation bytes starts from
 * -zp * sum(qa) (zero points 8, 16, the block's own 0..16 for q4_gptq, and
 * 128 for q8_0 under VNNI, whose signed weights are biased to unsigned) so
 * the block total is exact before the single conversion to f32 and the FMA
 * with dw * da. q4_gptq's 13-bit activations come as two bytes, qa = 128 hi
 * + lo: the weights meet lo and hi, and the hi sums count 128 times.
 */
#define DOT32_CAT_(a, b) a##b
#define DOT32_CAT(a, b)  DOT32_CAT_(a, b)
#define DOT32_FN(name)   DOT32_CAT(name, DOT32_SFX)
#define DOT32_ATTR       __attribute__((target(DOT32_TARGET)))
#define DOT32_INLINE     static inline __attribute__((always_inline, target(DOT32_TARGET)))

DOT32_INLINE float DOT32_FN(hsum8_)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles, then high nibbles. */
DOT32_INLINE __m256i DOT32_FN(nibbles_)(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(t, m), hi = _mm_and_si128(_mm_srli_epi16(t, 4), m);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* Byte j = 0x10 where bit j of the little-endian u32 at qhp is set. */
DOT32_INLINE __m256i DOT32_FN(fifth_bits_)(const uint8_t *qhp) {
    uint32_t qh;
    memcpy(&qh, qhp, sizeof qh);
#if DOT32_VNNI
    return _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(0x10));
#else
    /* Byte j gets byte j/8 of qh, is ORed with all bits but bit j%8, and is
     * all ones exactly when that bit was set. */
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                          3, 3, 3, 3, 3, 3);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFELL));
    v = _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
#endif
}

/* Block b of the weight row (32 weights) against block b of each activation
 * row, FMA'd into acc[k]; the q4_1/q5_1 offset terms go to corr[k]. */
DOT32_INLINE void DOT32_FN(block32_)(const bc_dtype t, int64_t b, const void *w, const void *a, size_t as, const int na,
                                     __m256 *acc, float *corr) {
    __m256i q;
    float dw, mw = 0.0f;
    int zp = 0;
    if (t == BC_DTYPE_Q8_0) {
        const bc__block_q8_0 *x = (const bc__block_q8_0 *)w + b;
        dw = F16C(x->d);
        q = _mm256_loadu_si256((const __m256i *)x->qs);
#if DOT32_VNNI
        q = _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)); /* q + 128, unsigned */
        zp = 128;
#endif
    } else if (t == BC_DTYPE_Q4_0) {
        const bc__block_q4_0 *x = (const bc__block_q4_0 *)w + b;
        dw = F16C(x->d);
        q = DOT32_FN(nibbles_)(x->qs);
        zp = 8;
    } else if (t == BC_DTYPE_Q4_GPTQ) {
        const bc__block_q4_gptq *x = (const bc__block_q4_gptq *)w + b;
        dw = F16C(x->d);
        q = DOT32_FN(nibbles_)(x->qs);
        zp = x->z;
    } else if (t == BC_DTYPE_Q4_1) {
        const bc__block_q4_1 *x = (const bc__block_q4_1 *)w + b;
        dw = F16C(x->d);
        mw = F16C(x->m);
        q = DOT32_FN(nibbles_)(x->qs);
    } else if (t == BC_DTYPE_Q5_0) {
        const bc__block_q5_0 *x = (const bc__block_q5_0 *)w + b;
        dw = F16C(x->d);
        q = _mm256_or_si256(DOT32_FN(nibbles_)(x->qs), DOT32_FN(fifth_bits_)(x->qh));
        zp = 16;
    } else {
        const bc__block_q5_1 *x = (const bc__block_q5_1 *)w + b;
        dw = F16C(x->d);
        mw = F16C(x->m);
        q = _mm256_or_si256(DOT32_FN(nibbles_)(x->qs), DOT32_FN(fifth_bits_)(x->qh));
    }
    const __m256 dwv = _mm256_set1_ps(dw);
    if (t == BC_DTYPE_Q4_GPTQ) {
        for (int k = 0; k < na; k++) {
            const bc__block_a16d *y = (const bc__block_a16d *)((const char *)a + (size_t)k * as) + b;
            const __m256i lo = _mm256_loadu_si256((const __m256i *)y->lo);
            const __m256i hi = _mm256_loadu_si256((const __m256i *)y->hi);
            const __m256i init = _mm256_castsi128_si256(_mm_cvtsi32_si128(-zp * y->sum));
#if DOT32_VNNI
            const __m256i p =
                _mm256_add_epi32(_mm256_dpbusd_epi32(init, q, lo),
                                 _mm256_slli_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), q, hi), 7));
#else
            const __m256i p = _mm256_add_epi32(
                _mm256_add_epi32(init, _mm256_madd_epi16(_mm256_maddubs_epi16(q, lo), _mm256_set1_epi16(1))),
                _mm256_madd_epi16(_mm256_maddubs_epi16(q, hi), _mm256_set1_epi16(128)));
#endif
            acc[k] = _mm256_fmadd_ps(_mm256_mul_ps(dwv, _mm256_broadcast_ss(&y->d)), _mm256_cvtepi32_ps(p), acc[k]);
        }
        return;
    }
#if !DOT32_VNNI
    const __m256i qabs = _mm256_sign_epi8(q, q); /* q8_0: |q| against sign(q) * qa */
#endif
    for (int k = 0; k < na; k++) {
        const bc__block_a8 *y = (const bc__block_a8 *)((const char *)a + (size_t)k * as) + b;
        const __m256i yq = _mm256_loadu_si256((const __m256i *)y->qs);
        const __m256i init = _mm256_castsi128_si256(_mm_cvtsi32_si128(-zp * y->sum));
#if DOT32_VNNI
        const __m256i p = _mm256_dpbusd_epi32(init, q, yq);
#else
        const __m256i p16 =
            t == BC_DTYPE_Q8_0 ? _mm256_maddubs_epi16(qabs, _mm256_sign_epi8(yq, q)) : _mm256_maddubs_epi16(q, yq);
        const __m256i p = _mm256_add_epi32(init, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
#endif
        acc[k] = _mm256_fmadd_ps(_mm256_mul_ps(dwv, _mm256_broadcast_ss(&y->d)), _mm256_cvtepi32_ps(p), acc[k]);
        if (t == BC_DTYPE_Q4_1 || t == BC_DTYPE_Q5_1) corr[k] += mw * y->d * (float)y->sum;
    }
}

/* Even and odd blocks go to separate accumulators: with one activation row
 * a single FMA chain would bound the loop by the FMA latency. */
DOT32_INLINE void DOT32_FN(dot32_)(const bc_dtype t, int64_t cols, const void *w, const void *a, size_t as,
                                   const int na, float *out) {
    __m256 acc0[BC__MAX_NA], acc1[BC__MAX_NA];
    float corr[BC__MAX_NA];
    for (int k = 0; k < na; k++) {
        acc0[k] = acc1[k] = _mm256_setzero_ps();
        corr[k] = 0.0f;
    }
    const int64_t nb = cols / 32;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        DOT32_FN(block32_)(t, b, w, a, as, na, acc0, corr);
        DOT32_FN(block32_)(t, b + 1, w, a, as, na, acc1, corr);
    }
    if (b < nb) DOT32_FN(block32_)(t, b, w, a, as, na, acc0, corr);
    for (int k = 0; k < na; k++) out[k] = DOT32_FN(hsum8_)(_mm256_add_ps(acc0[k], acc1[k])) + corr[k];
}

#if DOT32_VNNI
/* Four weight rows (row r at w + r * ws) against na activation rows at once:
 * out[r * BC__MAX_NA + k]. Each weight block is unpacked once for all na
 * activation rows and each activation block loaded once for the nr weight
 * rows of a pass, and the accumulators are independent chains. This is the
 * prompt-processing (and batched-decode) kernel. Per (row, activation) pair
 * the arithmetic is exactly that of dot32_ (even and odd blocks in two
 * accumulators, added, summed across the lanes, plus the offset terms
 * summed in block order), so a row of a batch gets the bits it gets alone
 * (test_batch_invariance). With two accumulators per pair, 4 rows x na = 3
 * or 4 would take 24 or 32 of the 32 registers: those run as two passes of
 * 2 rows over the columns, the activation blocks read twice (from L1). */
DOT32_INLINE void DOT32_FN(gemm32_pass_)(const bc_dtype t, int64_t cols, const void *w, size_t ws, const void *a,
                                         size_t as, const int nr, const int na, float *out) {
    __m256 acc[2][4][BC__MAX_NA];
    float corr[4][BC__MAX_NA];
    _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++) _Pragma("GCC unroll 4") for (int k = 0; k < na; k++) {
        acc[0][r][k] = acc[1][r][k] = _mm256_setzero_ps();
        corr[r][k] = 0.0f;
    }
    const int zp = t == BC_DTYPE_Q4_0 ? 8 : t == BC_DTYPE_Q5_0 ? 16 : 0;
    for (int64_t b = 0; b < cols / 32; b++) {
        const int u = (int)(b & 1);
        __m256i q[4];
        __m256 dw[4];
        float mw[4] = {0};
        _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++) {
            const char *row = (const char *)w + (size_t)r * ws;
            if (t == BC_DTYPE_Q4_0) {
                const bc__block_q4_0 *x = (const bc__block_q4_0 *)row + b;
                dw[r] = _mm256_set1_ps(F16C(x->d));
                q[r] = DOT32_FN(nibbles_)(x->qs);
            } else if (t == BC_DTYPE_Q4_1) {
                const bc__block_q4_1 *x = (const bc__block_q4_1 *)row + b;
                dw[r] = _mm256_set1_ps(F16C(x->d));
                mw[r] = F16C(x->m);
                q[r] = DOT32_FN(nibbles_)(x->qs);
            } else if (t == BC_DTYPE_Q5_0) {
                const bc__block_q5_0 *x = (const bc__block_q5_0 *)row + b;
                dw[r] = _mm256_set1_ps(F16C(x->d));
                q[r] = _mm256_or_si256(DOT32_FN(nibbles_)(x->qs), DOT32_FN(fifth_bits_)(x->qh));
            } else {
                const bc__block_q5_1 *x = (const bc__block_q5_1 *)row + b;
                dw[r] = _mm256_set1_ps(F16C(x->d));
                mw[r] = F16C(x->m);
                q[r] = _mm256_or_si256(DOT32_FN(nibbles_)(x->qs), DOT32_FN(fifth_bits_)(x->qh));
            }
        }
        _Pragma("GCC unroll 4") for (int k = 0; k < na; k++) {
            const bc__block_a8 *y = (const bc__block_a8 *)((const char *)a + (size_t)k * as) + b;
            const __m256i yq = _mm256_loadu_si256((const __m256i *)y->qs);
            const __m256i init = _mm256_castsi128_si256(_mm_cvtsi32_si128(-zp * y->sum));
            const __m256 da = _mm256_broadcast_ss(&y->d);
            _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++) {
                const __m256i p = _mm256_dpbusd_epi32(init, q[r], yq);
                acc[u][r][k] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], da), _mm256_cvtepi32_ps(p), acc[u][r][k]);
                if (t == BC_DTYPE_Q4_1 || t == BC_DTYPE_Q5_1) corr[r][k] += mw[r] * y->d * (float)y->sum;
            }
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++) _Pragma("GCC unroll 4") for (int k = 0; k < na; k++)
        out[r * BC__MAX_NA + k] = DOT32_FN(hsum8_)(_mm256_add_ps(acc[0][r][k], acc[1][r][k])) + corr[r][k];
}

DOT32_INLINE void DOT32_FN(gemm32_)(const bc_dtype t, int64_t cols, const void *w, size_t ws, const void *a, size_t as,
                                    const int na, float *out) {
    if (na <= 2) {
        DOT32_FN(gemm32_pass_)(t, cols, w, ws, a, as, 4, na, out);
    } else {
        DOT32_FN(gemm32_pass_)(t, cols, w, ws, a, as, 2, na, out);
        DOT32_FN(gemm32_pass_)(t, cols, (const char *)w + 2 * ws, ws, a, as, 2, na, out + 2 * BC__MAX_NA);
    }
}

#define DOT32_GEMM_WRAP(name, T)                                                                                       \
    static DOT32_ATTR void DOT32_FN(name)(int64_t cols, const void *w, size_t ws, const void *a, size_t as, int na,    \
                                          float *out) {                                                                \
        switch (na) {                                                                                                  \
        case 1: DOT32_FN(gemm32_)(T, cols, w, ws, a, as, 1, out); break;                                               \
        case 2: DOT32_FN(gemm32_)(T, cols, w, ws, a, as, 2, out); break;                                               \
        case 3: DOT32_FN(gemm32_)(T, cols, w, ws, a, as, 3, out); break;                                               \
        default: DOT32_FN(gemm32_)(T, cols, w, ws, a, as, 4, out); break;                                              \
        }                                                                                                              \
    }
DOT32_GEMM_WRAP(gemm_q4_0_, BC_DTYPE_Q4_0)
DOT32_GEMM_WRAP(gemm_q4_1_, BC_DTYPE_Q4_1)
DOT32_GEMM_WRAP(gemm_q5_0_, BC_DTYPE_Q5_0)
DOT32_GEMM_WRAP(gemm_q5_1_, BC_DTYPE_Q5_1)
#undef DOT32_GEMM_WRAP
#endif

#define DOT32_WRAP(name, T)                                                                                            \
    static DOT32_ATTR void DOT32_FN(name)(int64_t cols, const void *w, const void *a, size_t as, int na, float *out) { \
        switch (na) {                                                                                                  \
        case 1: DOT32_FN(dot32_)(T, cols, w, a, as, 1, out); break;                                                    \
        case 2: DOT32_FN(dot32_)(T, cols, w, a, as, 2, out); break;                                                    \
        case 3: DOT32_FN(dot32_)(T, cols, w, a, as, 3, out); break;                                                    \
        default: DOT32_FN(dot32_)(T, cols, w, a, as, 4, out); break;                                                   \
        }                                                                                                              \
    }
DOT32_WRAP(dot_q8_0_, BC_DTYPE_Q8_0)
DOT32_WRAP(dot_q4_0_, BC_DTYPE_Q4_0)
DOT32_WRAP(dot_q4_1_, BC_DTYPE_Q4_1)
DOT32_WRAP(dot_q5_0_, BC_DTYPE_Q5_0)
DOT32_WRAP(dot_q5_1_, BC_DTYPE_Q5_1)
DOT32_WRAP(dot_q4_gptq_, BC_DTYPE_Q4_GPTQ)

#undef DOT32_WRAP
#undef DOT32_INLINE
#undef DOT32_ATTR
#undef DOT32_FN
#undef DOT32_CAT
#undef DOT32_CAT_

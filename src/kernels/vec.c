/*
 * vec.c - kernels on f32 vectors (see vec.h), in portable C; silu goes to
 * x86.c's AVX2 loop where the level allows.
 */
#include "kernels/vec.h"

#include "kernels/isa.h"
#include "kernels/x86.h"

#include <math.h>

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

void bc__silu_mul(float *g, const float *u, int n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (bc__kernels_isa() >= BC__ISA_AVX2) {
        bc__silu_mul_avx2(g, u, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void bc__rmsnorm(const float *x, const float *w, int n, float eps, float *out) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

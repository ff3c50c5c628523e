/*
 * kernels.c - reference kernels (see kernels.h).
 */
#include "kernels.h"

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

void bc__weight_row_f32(const bc__weight *w, int64_t i, float *row) {
    size_t cols = (size_t)w->cols;
    switch (w->dtype) {
    case BC_DTYPE_F32: {
        const float *src = (const float *)w->data + (size_t)i * cols;
        for (size_t j = 0; j < cols; j++) row[j] = src[j];
        break;
    }
    case BC_DTYPE_F16: {
        const uint16_t *src = (const uint16_t *)w->data + (size_t)i * cols;
        for (size_t j = 0; j < cols; j++) row[j] = bc__f16_to_f32(src[j]);
        break;
    }
    case BC_DTYPE_BF16: {
        const uint16_t *src = (const uint16_t *)w->data + (size_t)i * cols;
        for (size_t j = 0; j < cols; j++) row[j] = bc__bf16_to_f32(src[j]);
        break;
    }
    default: break; /* block formats: see the quantized kernels */
    }
}

typedef struct matmul_task {
    const bc__weight *w;
    const float *x; /* (n, cols) */
    int n;
    float *y;       /* (n, rows) */
    float *scratch; /* (nth, cols) */
} matmul_task;

static void matmul_worker(void *p, int ith, int nth) {
    const matmul_task *t = p;
    const bc__weight *w = t->w;
    int64_t r0, r1;
    bc__split(w->rows, ith, nth, &r0, &r1);
    float *row = t->scratch + (size_t)ith * (size_t)w->cols;
    for (int64_t r = r0; r < r1; r++) {
        const float *wr;
        if (w->dtype == BC_DTYPE_F32) {
            wr = (const float *)w->data + (size_t)r * (size_t)w->cols;
        } else {
            bc__weight_row_f32(w, r, row);
            wr = row;
        }
        for (int i = 0; i < t->n; i++)
            t->y[(size_t)i * (size_t)w->rows + (size_t)r] =
                bc__dot_f32(wr, t->x + (size_t)i * (size_t)w->cols, w->cols);
    }
}

void bc__matmul(bc__pool *pool, const bc__weight *w, const float *x, int n, float *y, float *scratch) {
    matmul_task t = {w, x, n, y, scratch};
    bc__pool_run(pool, matmul_worker, &t);
}

void bc__rmsnorm(const float *x, const float *w, int n, float eps, float *out) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

/*
 * gptq.c - GPTQ int4 checkpoints (AutoGPTQ layout): qweight, qzeros,
 * scales and g_idx of each linear layer, converted at load into q4_gptq
 * blocks (quant/blocks.h).
 *
 * The layout, as AutoGPTQ's QuantLinear (nn_modules/qlinear/
 * qlinear_cuda_old.py: the buffers in __init__, pack(), and the
 * dequantizing forward) writes and reads it, for a linear layer with
 * K = in_features (our cols) and N = out_features (our rows), 4 bits:
 *
 *   qweight  I32 [K / 8, N]   weight (n, k)'s code q (0..15) is bits
 *                             4 * (k % 8) .. +3 of qweight[k / 8][n]
 *   qzeros   I32 [G, N / 8]   the stored zero of (group g, row n) is bits
 *                             4 * (n % 8) .. +3 of qzeros[g][n / 8]
 *   scales   F16 [G, N]       scale of (g, n)
 *   g_idx    I32 [K]          the group of input column k; i // group_size
 *                             when absent (AutoGPTQ's own default)
 *   bias     F16 [N]          only when the layer had one
 *
 * with G = ceil(K / group_size) (group_size -1: one group, G = 1) and
 *
 *   w(n, k) = scales[g][n] * (q - (stored_zero + 1)),   g = g_idx[k]
 *
 * the "+ 1": pack() stores `zeros -= 1` and forward() reads
 * `zeros = zeros + 1` (the zero-point convention of the old CUDA kernels,
 * kept by every AutoGPTQ-format file). Symmetric checkpoints store 7 (zero
 * 8); the zeros are read either way.
 *
 * With desc_act, GPTQ quantized the columns in order of decreasing
 * activation, so g_idx is no longer k / group_size: the columns of one group
 * are scattered. Our blocks hold 32 weights of one group, so the stored
 * columns are put in group order (perm = the input indices stably sorted by
 * g_idx, bc__weight.perm) and the matmul gathers the activations to match;
 * every run of 32 columns in that order must then lie in one group, which
 * any group size that is a multiple of 32 gives.
 */
#include "quant/gptq.h"

#include "base/threadpool.h"
#include "quant/blocks.h"
#include "quant/quants.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parts of one GPTQ linear layer in the table. */
typedef struct gptq_parts {
    const bc__tensor *qweight, *qzeros, *scales, *g_idx, *bias;
} gptq_parts;

/* Element i of an I32 tensor. Foreign-dtype tensors are not copied to an
 * aligned buffer by the table, so the bytes are read with memcpy. */
static int32_t i32_at(const bc__tensor *x, int64_t i) {
    int32_t v;
    memcpy(&v, (const uint8_t *)x->data + (size_t)i * 4, 4);
    return v;
}

/* "<prefix>.<suffix>" of a matrix named "<prefix>.weight". */
static void part_name(const char *name, const char *suffix, char *out, size_t n) {
    size_t len = strlen(name);
    const char *tail = ".weight";
    if (len >= strlen(tail) && strcmp(name + len - strlen(tail), tail) == 0) len -= strlen(tail);
    snprintf(out, n, "%.*s.%s", (int)len, name, suffix);
}

/* Checks part x of an N x K matrix: dtype (the foreign name "I32", or F16
 * when want_i32 is false) and shape [d0, d1], or [d0] when d1 < 0. */
static int check_part(const bc__tensor *x, bool want_i32, int64_t d0, int64_t d1, int64_t N, int64_t K,
                      const char *groups, bc__err *err) {
    const char *want = want_i32 ? "I32" : "F16";
    const char *found = x->foreign_dtype != NULL ? x->foreign_dtype : bc_dtype_name(x->dtype);
    if (want_i32 ? (x->foreign_dtype == NULL || strcmp(x->foreign_dtype, "I32") != 0) : x->dtype != BC_DTYPE_F16)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: GPTQ tensor '%s' is %s, expected %s", x->file->path, x->name,
                          found, want);
    bool ok =
        d1 < 0 ? (x->n_dims == 1 && x->shape[0] == d0) : (x->n_dims == 2 && x->shape[0] == d0 && x->shape[1] == d1);
    if (!ok) {
        char shape[128];
        size_t k = (size_t)snprintf(shape, sizeof shape, "[");
        for (int i = 0; i < x->n_dims && k < sizeof shape; i++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%lld", i ? ", " : "", (long long)x->shape[i]);
        if (k < sizeof shape) snprintf(shape + k, sizeof shape - k, "]");
        if (d1 < 0)
            return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: GPTQ tensor '%s' has shape %s, expected [%lld]",
                              x->file->path, x->name, shape, (long long)d0);
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: GPTQ tensor '%s' has shape %s, expected [%lld, %lld] (a %lld x %lld matrix, %s)",
                          x->file->path, x->name, shape, (long long)d0, (long long)d1, (long long)N, (long long)K,
                          groups);
    }
    return 0;
}

/* A Baichuan linear has no bias: a bias that is present must be all zero. */
static int check_bias(const bc__tensor *x, int64_t rows, bc__err *err) {
    if (x->foreign_dtype != NULL ||
        (x->dtype != BC_DTYPE_F32 && x->dtype != BC_DTYPE_F16 && x->dtype != BC_DTYPE_BF16) || x->n_dims != 1 ||
        x->shape[0] != rows)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: tensor '%s' is not a float vector of %lld values (Baichuan's layers have no bias)",
                          x->file->path, x->name, (long long)rows);
    float *v = malloc((size_t)rows * sizeof(float));
    if (v == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory reading '%s'", x->name);
    bc__dequantize_row(x->dtype, x->data, v, rows);
    int64_t i = 0;
    while (i < rows && v[i] == 0.0f) i++;
    float bad = i < rows ? v[i] : 0.0f;
    free(v);
    if (i < rows)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: tensor '%s' holds a bias (element %lld is %g); Baichuan's layers have none, and a "
                          "checkpoint with biases cannot be loaded",
                          x->file->path, x->name, (long long)i, (double)bad);
    return 0;
}

/* The stored column order: NULL when the groups already come in runs
 * (g_idx non-decreasing), else the input indices stably sorted by group
 * (a counting sort over the G groups). */
static int group_order(const int32_t *g, int64_t K, int64_t G, int32_t **out, bc__err *err) {
    *out = NULL;
    int64_t k = 1;
    while (k < K && g[k] >= g[k - 1]) k++;
    if (k == K) return 0;
    int32_t *perm = malloc((size_t)K * sizeof *perm);
    int64_t *start = calloc((size_t)G + 1, sizeof *start);
    if (perm == NULL || start == NULL) {
        free(perm);
        free(start);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory for a GPTQ column order");
    }
    for (k = 0; k < K; k++) start[g[k] + 1]++;
    for (int64_t i = 0; i < G; i++) start[i + 1] += start[i];
    for (k = 0; k < K; k++) perm[start[g[k]]++] = (int32_t)k;
    free(start);
    *out = perm;
    return 0;
}

/* Writes the (N, K / 32) blocks: block b of row n holds the stored columns
 * 32b .. 32b + 31 (input columns perm[...] with a perm), all of group g.
 * One thread per CPU, each taking the next 8 block columns. */
typedef struct convert_job {
    const gptq_parts *p;
    const int32_t *g, *perm;
    int64_t N, K;
    bc__block_q4_gptq *out;
    atomic_int_fast64_t next;
} convert_job;

/* The 32 codes of stored columns cols[0..31] of row n, as our block's
 * bytes (qs[j] = q[j] | q[j + 16] << 4). Without a perm the columns are the
 * 8 nibbles of 4 consecutive qweight words, read whole. */
static void block_codes(const gptq_parts *p, const int32_t *cols, bool in_order, int64_t N, int64_t n, uint8_t qs[16]) {
    if (in_order) {
        const int64_t w0 = (int64_t)(cols[0] / 8) * N + n;
        const uint32_t w[4] = {(uint32_t)i32_at(p->qweight, w0), (uint32_t)i32_at(p->qweight, w0 + N),
                               (uint32_t)i32_at(p->qweight, w0 + 2 * N), (uint32_t)i32_at(p->qweight, w0 + 3 * N)};
        for (int j = 0; j < 8; j++) {
            qs[j] = (uint8_t)(((w[0] >> (4 * j)) & 15) | ((w[2] >> (4 * j)) & 15) << 4);
            qs[8 + j] = (uint8_t)(((w[1] >> (4 * j)) & 15) | ((w[3] >> (4 * j)) & 15) << 4);
        }
        return;
    }
    uint8_t q[32];
    for (int j = 0; j < 32; j++)
        q[j] = (uint8_t)(((uint32_t)i32_at(p->qweight, (int64_t)(cols[j] / 8) * N + n) >> (4 * (cols[j] % 8))) & 15);
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
}

static void *convert_thread(void *arg) {
    convert_job *job = arg;
    const gptq_parts *p = job->p;
    const int64_t N = job->N, nb = job->K / 32;
    const uint16_t *scales = p->scales->data; /* F16: aligned by the table */
    enum { RUN = 8 };
    for (int64_t b0; (b0 = atomic_fetch_add(&job->next, RUN)) < nb;) {
        const int nr = nb - b0 < RUN ? (int)(nb - b0) : RUN;
        int32_t cols[RUN][32];
        int64_t grp[RUN];
        bool in_order[RUN];
        for (int i = 0; i < nr; i++) {
            in_order[i] = job->perm == NULL;
            for (int j = 0; j < 32; j++) {
                cols[i][j] = job->perm ? job->perm[32 * (b0 + i) + j] : (int32_t)(32 * (b0 + i) + j);
                in_order[i] = in_order[i] && cols[i][j] == cols[i][0] + j;
            }
            grp[i] = job->g[cols[i][0]];
        }
        /* Row by row across the run: each row's 8 blocks are written
         * together, and the qweight words of the run's columns, read row
         * after row, stay in cache. */
        for (int64_t n = 0; n < N; n++)
            for (int i = 0; i < nr; i++) {
                bc__block_q4_gptq *y = &job->out[n * nb + b0 + i];
                y->d = scales[grp[i] * N + n]; /* the f16 bits, unchanged */
                y->z = (uint8_t)((((uint32_t)i32_at(p->qzeros, grp[i] * (N / 8) + n / 8) >> (4 * (n % 8))) & 15) + 1);
                y->zero = 0;
                block_codes(p, cols[i], in_order[i] && cols[i][0] % 8 == 0, N, n, y->qs);
            }
    }
    return NULL;
}

static void convert(const gptq_parts *p, const int32_t *g, const int32_t *perm, int64_t N, int64_t K,
                    bc__block_q4_gptq *out) {
    convert_job job = {p, g, perm, N, K, out, 0};
    bc__run_on_all_cpus(convert_thread, &job);
}

int bc__gptq_convert(const bc__tensor_table *t, const bc__quant_config *qc, const char *path, const char *name,
                     int64_t rows, int64_t cols, bc__convert_buf *buf, bc__converted *out, bc__err *err) {
    memset(out, 0, sizeof *out);
    const int64_t N = rows, K = cols;
    char nq[256], nz[256], ns[256], ng[256], nbias[256];
    part_name(name, "qweight", nq, sizeof nq);
    part_name(name, "qzeros", nz, sizeof nz);
    part_name(name, "scales", ns, sizeof ns);
    part_name(name, "g_idx", ng, sizeof ng);
    part_name(name, "bias", nbias, sizeof nbias);
    gptq_parts p = {bc__table_find(t, nq), bc__table_find(t, nz), bc__table_find(t, ns), bc__table_find(t, ng),
                    bc__table_find(t, nbias)};
    if (p.qweight == NULL && p.qzeros == NULL && p.scales == NULL) return 0; /* not stored as GPTQ */
    const char *missing = p.qweight == NULL ? nq : p.qzeros == NULL ? nz : p.scales == NULL ? ns : NULL;
    if (missing != NULL)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: GPTQ tensor '%s' is missing (%s says GPTQ)", path, missing,
                          qc->source);
    const char *file = p.qweight->file->path;
    if (N % 8 != 0 || K % 32 != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: GPTQ tensor '%s': a %lld x %lld matrix needs rows a multiple of 8 and columns a "
                          "multiple of 32",
                          file, nq, (long long)N, (long long)K);
    const int64_t G = qc->gptq_group_size < 0 ? 1 : (K + qc->gptq_group_size - 1) / qc->gptq_group_size;
    char groups[48];
    if (qc->gptq_group_size < 0)
        snprintf(groups, sizeof groups, "one group per row");
    else
        snprintf(groups, sizeof groups, "group size %d", qc->gptq_group_size);
    if (check_part(p.qweight, true, K / 8, N, N, K, groups, err) != 0 ||
        check_part(p.qzeros, true, G, N / 8, N, K, groups, err) != 0 ||
        check_part(p.scales, false, G, N, N, K, groups, err) != 0 ||
        (p.g_idx && check_part(p.g_idx, true, K, -1, N, K, groups, err) != 0))
        return -1;
    if (p.bias != NULL && check_bias(p.bias, N, err) != 0) return -1;

    int rc = -1;
    int32_t *g = malloc((size_t)K * sizeof *g), *perm = NULL;
    bc__block_q4_gptq *blocks = NULL;
    const size_t bytes = (size_t)N * (size_t)(K / 32) * sizeof *blocks;
    if (g == NULL) {
        bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory for '%s'", ng);
        goto done;
    }
    for (int64_t k = 0; k < K; k++) {
        g[k] = p.g_idx ? i32_at(p.g_idx, k) : qc->gptq_group_size < 0 ? 0 : (int32_t)(k / qc->gptq_group_size);
        if (g[k] < 0 || g[k] >= G) {
            bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: GPTQ tensor '%s': element %lld is %d, outside the %lld groups",
                       p.g_idx->file->path, ng, (long long)k, g[k], (long long)G);
            goto done;
        }
    }
    if (group_order(g, K, G, &perm, err) != 0) goto done;
    for (int64_t c = 0; c < K; c += 32) {
        const int32_t g0 = g[perm ? perm[c] : c], g1 = g[perm ? perm[c + 31] : c + 31];
        if (g0 != g1) { /* in group order, the run's ends differ exactly when it mixes groups */
            bc__errorf(err, BC_STATUS_ERROR_MODEL,
                       "%s: GPTQ tensor '%s': columns %lld..%lld (in group order) mix groups %d and %d; q4_gptq "
                       "blocks need every run of 32 columns in one group",
                       p.g_idx ? p.g_idx->file->path : file, p.g_idx ? ng : nq, (long long)c, (long long)c + 31, g0,
                       g1);
            goto done;
        }
    }
    blocks = buf != NULL ? bc__convert_buf_reserve(buf, bytes) : aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (blocks == NULL) {
        bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory converting '%s' (%zu bytes)", nq, bytes);
        goto done;
    }
    convert(&p, g, perm, N, K, blocks);

    const bc__tensor *parts[] = {p.qweight, p.qzeros, p.scales, p.g_idx, p.bias};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i] == NULL) continue;
        out->used[out->n_used++] = parts[i];
        out->stored_bytes += parts[i]->n_bytes;
        if (parts[i] != p.bias) out->released_bytes += bc__tensor_release(parts[i]);
    }
    out->blocks = blocks;
    out->dtype = BC_DTYPE_Q4_GPTQ;
    out->perm = perm;
    out->name = p.qweight->name;
    blocks = NULL;
    perm = NULL;
    out->n_params = N * K;
    out->converted_bytes = bytes;
    snprintf(out->layout, sizeof out->layout,
             "GPTQ int4 (%s), %s%s, %s (AutoGPTQ zero + 1); converted at load to q4_gptq blocks of 32", qc->source,
             groups, qc->gptq_desc_act ? ", desc_act" : "", qc->gptq_sym ? "symmetric" : "asymmetric");
    rc = 1;
done:
    free(g);
    free(perm);
    if (buf == NULL) free(blocks);
    return rc;
}

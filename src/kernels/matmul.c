/*
 * matmul.c - the threaded matmul (see matmul.h): y = x @ W^T with the rows
 * of W split across the pool's threads in tiles, the activations quantized
 * once per format, each output computed by exactly one kernel call.
 *
 *   scratch        the gathered activations, then one region per format
 *   tiles          ROW_TILE weight rows against every BC__MAX_NA activation
 *                  rows while they sit in cache (a group when repacked)
 *   chunks         runs of tiles per pool task, the fused epilogue on them
 */
#include "kernels/matmul.h"

#include "kernels/act.h"
#include "kernels/dispatch.h"
#include "kernels/isa.h"
#include "kernels/vec.h"
#include "kernels/x86.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

/* Activation formats a matmul may need at once (f32 rows need no scratch). */
static const int scratch_kinds[] = {BC__ACT_A8, BC__ACT_A8K, BC__ACT_BF16, BC__ACT_A16, BC__ACT_A16D};

size_t bc__matmul_scratch_bytes(int64_t max_cols, int n) {
    /* The activations gathered into a weight's column order (bc__weight.perm). */
    size_t bytes = ((size_t)n * (size_t)max_cols * sizeof(float) + 63) / 64 * 64;
    for (size_t i = 0; i < sizeof scratch_kinds / sizeof scratch_kinds[0]; i++)
        bytes += ((size_t)n * bc__act_row_bytes(scratch_kinds[i], max_cols) + 63) / 64 * 64;
    return bytes + 64;
}

/* Weight rows per tile of the row-major kernels: a tile's rows are run
 * against every group of BC__MAX_NA activation rows while they sit in cache.
 * On a repacked matrix a tile is one group. Threads take chunks of whole
 * ROW_TILE tiles, which every layout's group divides. */
#define ROW_TILE 16

/* One weight of a matmul task and how it is read. */
typedef struct matmul_part {
    const bc__weight *w;
    bc__dot_fn fn;
    bc__gemm4_fn gemm4;          /* NULL: none for this dtype and level */
    const bc__pack_layout *pack; /* non-NULL: w->packed is read, one group per tile */
    size_t row_bytes;            /* of the row-major data */
    const void *act;             /* (n) activation rows in the format of this weight, act_stride bytes each */
    size_t act_stride;
    int act_kind;
    float *y; /* (n, rows) */
} matmul_part;

typedef struct matmul_task {
    matmul_part parts[BC__MATMUL_MAX_PARTS];
    int n_parts;
    int64_t rows, cols;
    int n;
    const float *x; /* (n, cols) f32 */
    int64_t n_tiles, tiles_per_chunk;
    unsigned flags;
    /* The activation formats to make: quantize_worker chunk i is row i % n of kind q_kinds[i / n]. */
    int n_q_kinds, q_kinds[BC__MATMUL_MAX_PARTS];
    void *q_act[BC__MATMUL_MAX_PARTS];
    size_t q_stride[BC__MATMUL_MAX_PARTS];
} matmul_task;

static void quantize_worker(void *p, int64_t i, int ith) {
    (void)ith;
    const matmul_task *t = p;
    int k = (int)(i / t->n), row = (int)(i % t->n);
    bc__quantize_act(t->q_kinds[k], t->x + (size_t)row * (size_t)t->cols, (char *)t->q_act[k] + row * t->q_stride[k],
                     t->cols);
}

/* Rows [rb, re) of one part (rb a multiple of the part's tile), against
 * every group of BC__MAX_NA activation rows while they sit in cache. Each
 * output is computed by exactly one kernel call, so results do not depend on
 * which thread ran the tile. */
static void matmul_rows(const matmul_task *t, const matmul_part *p, int64_t rb, int64_t re) {
    const bc__weight *w = p->w;
    /* Outputs gather here and go out as whole rows of the tile: the rows of
     * y are rows * 4 bytes apart, often a multiple of 4096, so writing them
     * one float at a time would keep evicting each other from the same L1
     * cache set. */
    float tile[BC__PACK_MAX_NA][ROW_TILE];
    static_assert(BC__PACK_MAX_ROWS <= ROW_TILE && BC__MAX_NA <= BC__PACK_MAX_NA, "the outputs fit the tile buffer");
    if (p->pack != NULL) {
        const int R = p->pack->rows;
        const size_t group_bytes = p->pack->group_bytes(w->cols);
        float *out = &tile[0][0]; /* (na, R) */
        for (int64_t r = rb; r < re; r += R) {
            const char *group = (const char *)w->packed + (size_t)(r / R) * group_bytes;
            for (int i = 0; i < t->n; i += p->pack->max_na) {
                int na = t->n - i < p->pack->max_na ? t->n - i : p->pack->max_na;
                p->pack->kernel(w->cols, group, (const char *)p->act + (size_t)i * p->act_stride, p->act_stride, na,
                                out);
                for (int k = 0; k < na; k++)
                    memcpy(p->y + (size_t)(i + k) * (size_t)w->rows + (size_t)r, out + k * R,
                           (size_t)R * sizeof(float));
            }
        }
        return;
    }
    for (; rb < re; rb += ROW_TILE) {
        const int64_t te = rb + ROW_TILE < re ? rb + ROW_TILE : re;
        for (int i = 0; i < t->n; i += BC__MAX_NA) {
            int na = t->n - i < BC__MAX_NA ? t->n - i : BC__MAX_NA;
            const char *act = (const char *)p->act + (size_t)i * p->act_stride;
            int64_t r = rb;
            if (p->gemm4 != NULL)
                for (; r + 4 <= te; r += 4) {
                    float out[4 * BC__MAX_NA];
                    p->gemm4(w->cols, (const char *)w->data + (size_t)r * p->row_bytes, p->row_bytes, act,
                             p->act_stride, na, out);
                    for (int j = 0; j < 4; j++)
                        for (int k = 0; k < na; k++) tile[k][r - rb + j] = out[j * BC__MAX_NA + k];
                }
            for (; r < te; r++) {
                float out[BC__MAX_NA];
                p->fn(w->cols, (const char *)w->data + (size_t)r * p->row_bytes, act, p->act_stride, na, out);
                for (int k = 0; k < na; k++) tile[k][r - rb] = out[k];
            }
            for (int k = 0; k < na; k++)
                memcpy(p->y + (size_t)(i + k) * (size_t)w->rows + (size_t)rb, tile[k],
                       (size_t)(te - rb) * sizeof(float));
        }
    }
}

/* y0 = silu(y0) * y1 on rows [rb, re) of every activation row. */
static void silu_mul_rows(const matmul_task *t, int64_t rb, int64_t re) {
    for (int k = 0; k < t->n; k++) {
        float *g = t->parts[0].y + (size_t)k * (size_t)t->rows, *u = t->parts[1].y + (size_t)k * (size_t)t->rows;
        bc__silu_mul(g + rb, u + rb, (int)(re - rb));
    }
}

/* Chunk c is the run of tiles [c * tiles_per_chunk, (c + 1) * tiles_per_chunk)
 * of every part: a thread streams long contiguous stretches of the matrices
 * (the hardware and software prefetches run ahead within them) instead of
 * every other tile, and an epilogue on those rows runs while they are in
 * cache. */
static void matmul_worker(void *p, int64_t c, int ith) {
    (void)ith;
    const matmul_task *t = p;
    int64_t rb = c * t->tiles_per_chunk * ROW_TILE, re = rb + t->tiles_per_chunk * ROW_TILE;
    if (re > t->rows) re = t->rows;
    for (int i = 0; i < t->n_parts; i++) matmul_rows(t, &t->parts[i], rb, re);
    if (t->flags & BC__MATMUL_SILU_MUL) silu_mul_rows(t, rb, re);
}

/* Whether two weights' columns are in the same order. */
static bool same_perm(const bc__weight *a, const bc__weight *b) {
    if (a->perm == b->perm) return true;
    return a->perm != NULL && b->perm != NULL && memcmp(a->perm, b->perm, (size_t)a->cols * sizeof *a->perm) == 0;
}

void bc__matmul_multi(bc__pool *pool, const bc__weight *const *ws, int n_parts, const float *x, int n, float *const *ys,
                      void *scratch, unsigned flags) {
    matmul_task t;
    const bc__isa isa = bc__kernels_isa();
    char *free_scratch = (char *)(((uintptr_t)scratch + 63) / 64 * 64);
    /* Columns stored in another order (GPTQ desc_act, bc__weight.perm): the
     * activations are gathered into that order first, x[:, perm], in the
     * first region of the scratch. Parts whose orders differ run one at a
     * time (the fused epilogue then runs over the whole outputs). */
    for (int i = 1; i < n_parts; i++)
        if (!same_perm(ws[0], ws[i])) {
            for (int k = 0; k < n_parts; k++)
                bc__matmul_multi(pool, &ws[k], 1, x, n, &ys[k], scratch, flags & ~BC__MATMUL_SILU_MUL);
            if (flags & BC__MATMUL_SILU_MUL)
                for (int k = 0; k < n; k++)
                    bc__silu_mul(ys[0] + (size_t)k * (size_t)ws[0]->rows, ys[1] + (size_t)k * (size_t)ws[0]->rows,
                                 (int)ws[0]->rows);
            return;
        }
    const int32_t *perm = ws[0]->perm;
    const int64_t cols = ws[0]->cols;
    if (perm != NULL) {
        float *gathered = (float *)free_scratch; /* (n, cols) */
        for (int k = 0; k < n; k++)
            for (int64_t c = 0; c < cols; c++)
                gathered[(size_t)k * (size_t)cols + (size_t)c] = x[(size_t)k * (size_t)cols + (size_t)perm[c]];
        x = gathered;
    }
    free_scratch += ((size_t)n * (size_t)cols * sizeof(float) + 63) / 64 * 64;
    t.n_parts = n_parts;
    t.rows = ws[0]->rows;
    t.cols = ws[0]->cols;
    t.n = n;
    t.x = x;
    t.flags = flags;
    t.n_q_kinds = 0;
    for (int i = 0; i < n_parts; i++) {
        matmul_part *p = &t.parts[i];
        const bc__weight *w = ws[i];
        const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
        p->w = w;
        p->y = ys[i];
        p->row_bytes = (size_t)(w->cols / tr->block_elems) * (size_t)tr->block_bytes;
        p->fn = bc__dot_kernel(w->dtype, isa);
        /* Single rows stream faster one weight row at a time (measured with
         * bench_matmul: the four-row kernel halves n = 1 speed on 11008 x 4096). */
        p->gemm4 = n >= 2 ? bc__gemm4_kernel(w->dtype, isa) : NULL;
        /* A lower level forced after the repack reads the row-major data. */
        /* Without row-major data (a matrix quantized at load, freed once
         * repacked) the repacked copy is read even below its level: the CPU
         * has that level, it was detected when the copy was made. */
        p->pack = w->packed != NULL && w->pack != NULL && (isa >= w->pack->isa || w->data == NULL) ? w->pack : NULL;
        p->act_kind = bc__act_kind(w->dtype);
        if ((flags & BC__MATMUL_BF16_ACT) && w->dtype == BC_DTYPE_BF16 && bc__kernels_bf16()) {
            p->act_kind = BC__ACT_BF16;
            p->fn = bc__dot_bf16_act_bf16;
            p->gemm4 = bc__gemm4_bf16_act_bf16;
        }
        if (p->act_kind == BC__ACT_F32) {
            p->act = x;
            p->act_stride = (size_t)w->cols * sizeof(float);
            continue;
        }
        /* Each activation format once, shared by the parts that read it. */
        int k = 0;
        while (k < t.n_q_kinds && t.q_kinds[k] != p->act_kind) k++;
        if (k == t.n_q_kinds) {
            t.q_kinds[k] = p->act_kind;
            t.q_stride[k] = bc__act_row_bytes(p->act_kind, t.cols);
            t.q_act[k] = free_scratch;
            free_scratch += ((size_t)n * t.q_stride[k] + 63) / 64 * 64;
            t.n_q_kinds++;
        }
        p->act = t.q_act[k];
        p->act_stride = t.q_stride[k];
    }
    const int64_t n_q = (int64_t)t.n_q_kinds * n;
    if (n_q >= 4)
        bc__pool_run(pool, quantize_worker, &t, n_q);
    else
        for (int64_t i = 0; i < n_q; i++) quantize_worker(&t, i, 0);
    /* About 8 chunks per thread: long runs, and still enough of them that the
     * threads that are running take over from one that is descheduled. */
    t.n_tiles = (t.rows + ROW_TILE - 1) / ROW_TILE;
    int64_t want = 8 * (int64_t)bc__pool_size(pool);
    t.tiles_per_chunk = (t.n_tiles + want - 1) / want;
    bc__pool_run(pool, matmul_worker, &t, (t.n_tiles + t.tiles_per_chunk - 1) / t.tiles_per_chunk);
}

void bc__matmul(bc__pool *pool, const bc__weight *w, const float *x, int n, float *y, void *scratch, unsigned flags) {
    bc__matmul_multi(pool, &w, 1, x, n, &y, scratch, flags & ~BC__MATMUL_SILU_MUL);
}

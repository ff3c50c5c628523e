/*
 * quantize_at_load.c - bc_model_params.quantize (see quantize_at_load.h):
 *
 *   plan    one task per matrix: its type under the ftype (ftype.c), its
 *           source rows, a heap buffer for the result
 *   rows    chunks of 64 rows quantized by one thread per CPU
 *   swap    the copies replace the stored matrices, whose pages go cold
 */
#include "model/quantize_at_load.h"

#include "base/threadpool.h"
#include "kernels/kernels.h"
#include "model/derived.h"
#include "model/matrices.h"
#include "quant/ftype.h"
#include "quant/quants.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* bc_model_params.quantize: each matrix converted to the type the GGUF writer
 * gives it (ftype.c), from the same f32 rows the writer encodes (write_gguf.c
 * source_row): W_pack split into Q, K (rows in llama.cpp's RoPE order) and V,
 * the NormHead head normalized. Rows are quantized independently, so the
 * bytes are the GGUF's, and the forward pass then runs as on that GGUF. */
typedef struct quant_task {
    bc__weight src;         /* the stored matrix (a copy: dst may be the same weight) */
    int64_t src_row0;       /* dst row r comes from src row src_row0 + r (before permute) */
    bool permute;           /* Q or K from W_pack: dst row h*D + 2i + j is row h*D + j*D/2 + i */
    bool release;           /* the last task reading src: release its mapped pages after */
    const float *row_scale; /* NULL, or a factor per dst row (NormHead) */
    bc__weight *dst;
    bc_dtype type;
    size_t row_bytes;
    void *out; /* (dst rows, row_bytes) the new data */
} quant_task;

typedef struct quant_job {
    quant_task *tasks;
    int n_tasks;
    int64_t chunk_rows;
    int64_t *chunk_end; /* (n_tasks) running total of chunks */
    int64_t n_chunks;
    int head_dim;
    int64_t max_cols;
    atomic_llong next;
    atomic_bool failed; /* a thread had no memory for its row buffer */
} quant_job;

static void *quant_thread(void *p) {
    quant_job *job = p;
    float *row = malloc((size_t)job->max_cols * sizeof(float));
    if (row == NULL) {
        atomic_store(&job->failed, true);
        return NULL;
    }
    const int64_t D = job->head_dim, half = D / 2;
    int t = 0;
    for (int64_t c; (c = atomic_fetch_add(&job->next, 1)) < job->n_chunks;) {
        while (job->chunk_end[t] <= c) t++; /* chunks are taken in increasing order by each thread */
        const quant_task *q = &job->tasks[t];
        int64_t r0 = (c - (t > 0 ? job->chunk_end[t - 1] : 0)) * job->chunk_rows;
        int64_t r1 = r0 + job->chunk_rows < q->dst->rows ? r0 + job->chunk_rows : q->dst->rows;
        for (int64_t r = r0; r < r1; r++) {
            int64_t sr = q->permute ? r / D * D + r % 2 * half + r % D / 2 : r;
            bc__weight_row_f32(&q->src, q->src_row0 + sr, row);
            if (q->row_scale)
                for (int64_t k = 0; k < q->src.cols; k++) row[k] *= q->row_scale[r];
            bc__quantize_row(q->type, row, (char *)q->out + (size_t)r * q->row_bytes, q->src.cols);
        }
    }
    free(row);
    return NULL;
}

/* Adds the task dst <- rows [row0, row0 + rows) of src as `kind`. */
static int plan_quant(bc_model *m, quant_task *tasks, int *n, const bc__weight *src, int64_t row0, int64_t rows,
                      bc__tensor_kind kind, int il, bc__weight *dst, bc_dtype type, bc__err *err) {
    bc_ftype ft = m->quantized_at_load;
    /* Float weights, or the blocks a 4-bit checkpoint was converted to
     * (bnb4.c, gptq.c): their rows read back exactly, in the input order
     * (bc__weight_row_f32). */
    if (src->dtype != BC_DTYPE_F32 && src->dtype != BC_DTYPE_F16 && src->dtype != BC_DTYPE_BF16 &&
        src->dtype != BC_DTYPE_Q4_GPTQ && src->dtype != BC_DTYPE_NF4 && src->dtype != BC_DTYPE_FP4)
        return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT,
                          "quantize at load works on f32/f16/bf16 weights (and 4-bit checkpoints); %s's tensor '%s' "
                          "is %s",
                          m->path, src->name, bc_dtype_name(src->dtype));
    quant_task *q = &tasks[*n];
    memset(q, 0, sizeof *q);
    q->type = type;
    if (type == BC_DTYPE_COUNT && bc__ftype_tensor_type(ft, kind, il, m->hp.n_layer, src->cols, &q->type) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT,
                          "tensor '%s': rows of %lld elements are not whole %s blocks (%d); cannot quantize it as %s",
                          src->name, (long long)src->cols, bc_dtype_name(bc__ftype_base(ft)),
                          bc__dtype_traits_of(bc__ftype_base(ft))->block_elems, bc_ftype_name(ft));
    q->src = *src;
    q->src_row0 = row0;
    q->permute = src != dst && (kind == BC__TENSOR_ATTN_Q || kind == BC__TENSOR_ATTN_K);
    q->release = src == dst || kind == BC__TENSOR_ATTN_V;
    q->row_scale = kind == BC__TENSOR_OUTPUT ? m->lm_head_scale : NULL;
    q->dst = dst;
    if (src == dst && q->type == src->dtype && q->row_scale == NULL) return 0; /* stays as stored */
    if (src->cols % bc__dtype_traits_of(q->type)->block_elems != 0)
        return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT, "tensor '%s': rows of %lld elements are not whole %s blocks",
                          src->name, (long long)src->cols, bc_dtype_name(q->type));
    uint64_t row_bytes, bytes;
    if (bc__dtype_row_bytes(q->type, (uint64_t)src->cols, &row_bytes) != 0 ||
        bc__mul_u64(row_bytes, (uint64_t)rows, &bytes) != 0 || bytes > SIZE_MAX - 64)
        return bc__errorf(err, BC_STATUS_ERROR_ARGUMENT, "tensor '%s': size overflows", src->name);
    q->row_bytes = (size_t)row_bytes;
    q->out = aligned_alloc(64, ((size_t)bytes + 63) / 64 * 64);
    if (q->out == NULL)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory for '%s' quantized at load as %s (%llu bytes)",
                          src->name, bc_dtype_name(q->type), (unsigned long long)bytes);
    dst->rows = rows; /* dst == src, or a zeroed Q/K/V of the split W_pack */
    dst->cols = src->cols;
    dst->name = src->name;
    m->quantized_bytes += bytes;
    (*n)++;
    return 0;
}

/* Converts the matrices of m to their types, as planned: every matrix under
 * m->quantized_at_load (head_type overriding the head's), or (all false)
 * the head alone as head_type. */
static int quantize_matrices(bc_model *m, bool all, bc_dtype head_type, bc__err *err) {
    const bc__hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    int rc = -1, n = 0;
    quant_task *tasks = calloc(2 + 9 * (size_t)hp->n_layer, sizeof *tasks);
    quant_job job;
    memset(&job, 0, sizeof job);
    job.chunk_end = calloc(2 + 9 * (size_t)hp->n_layer, sizeof *job.chunk_end);
    if (tasks == NULL || job.chunk_end == NULL) {
        bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
        goto done;
    }
    /* The writer normalizes the NormHead head before encoding it; the scales
     * are computed again from the converted head afterwards, as on loading
     * that GGUF. */
    if (hp->norm_head && bc__model_head_scale(m, err) != 0) goto done;
    const bc_dtype T = BC_DTYPE_COUNT; /* the ftype's rule */
    if (all &&
        plan_quant(m, tasks, &n, &m->tok_embd, 0, hp->n_vocab, BC__TENSOR_TOK_EMBD, -1, &m->tok_embd, T, err) != 0)
        goto done;
    for (int il = 0; all && il < hp->n_layer; il++) {
        bc__layer *L = &m->layers[il];
        int r = 0;
        if (L->wqkv.data != NULL)
            r = plan_quant(m, tasks, &n, &L->wqkv, 0, E, BC__TENSOR_ATTN_Q, il, &L->wq, T, err) ||
                plan_quant(m, tasks, &n, &L->wqkv, E, E, BC__TENSOR_ATTN_K, il, &L->wk, T, err) ||
                plan_quant(m, tasks, &n, &L->wqkv, 2 * E, E, BC__TENSOR_ATTN_V, il, &L->wv, T, err);
        else
            r = plan_quant(m, tasks, &n, &L->wq, 0, E, BC__TENSOR_ATTN_Q, il, &L->wq, T, err) ||
                plan_quant(m, tasks, &n, &L->wk, 0, E, BC__TENSOR_ATTN_K, il, &L->wk, T, err) ||
                plan_quant(m, tasks, &n, &L->wv, 0, E, BC__TENSOR_ATTN_V, il, &L->wv, T, err);
        if (r || plan_quant(m, tasks, &n, &L->wo, 0, E, BC__TENSOR_ATTN_OUT, il, &L->wo, T, err) ||
            plan_quant(m, tasks, &n, &L->w_gate, 0, hp->n_ff, BC__TENSOR_FFN_GATE, il, &L->w_gate, T, err) ||
            plan_quant(m, tasks, &n, &L->w_up, 0, hp->n_ff, BC__TENSOR_FFN_UP, il, &L->w_up, T, err) ||
            plan_quant(m, tasks, &n, &L->w_down, 0, E, BC__TENSOR_FFN_DOWN, il, &L->w_down, T, err))
            goto done;
    }
    if (plan_quant(m, tasks, &n, &m->lm_head, 0, hp->n_vocab, BC__TENSOR_OUTPUT, -1, &m->lm_head, head_type, err) != 0)
        goto done;

    /* Chunks of 64 rows over one thread per CPU. */
    job.tasks = tasks;
    job.n_tasks = n;
    job.chunk_rows = 64;
    job.head_dim = hp->head_dim;
    job.max_cols = E > hp->n_ff ? E : hp->n_ff;
    for (int i = 0; i < n; i++)
        job.chunk_end[i] =
            (i > 0 ? job.chunk_end[i - 1] : 0) + (tasks[i].dst->rows + job.chunk_rows - 1) / job.chunk_rows;
    job.n_chunks = n > 0 ? job.chunk_end[n - 1] : 0;
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, false);
    bc__run_on_all_cpus(quant_thread, &job);
    if (atomic_load(&job.failed)) {
        bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory for a row buffer while quantizing at load");
        goto done;
    }

    /* Swap in the copies; the stored pages go cold. */
    for (int i = 0; i < n; i++) {
        quant_task *q = &tasks[i];
        if (q->release && q->src.owned == NULL) m->released_bytes += bc__model_release_stored_pages(&q->src);
        if (q->release && q->src.owned != NULL) { /* a 4-bit checkpoint's blocks: the copy replaces them */
            const bc__dtype_traits *tr = bc__dtype_traits_of(q->src.dtype);
            m->converted_bytes -= (uint64_t)(q->src.rows * (q->src.cols / tr->block_elems)) * tr->block_bytes;
            free(q->src.owned);
            free(q->src.perm);
        }
        q->dst->data = q->dst->owned = q->out;
        q->dst->dtype = q->type;
        q->dst->perm = NULL; /* the rows were read in the input order */
        q->out = NULL;
        m->n_quantized++;
    }
    if (all)
        for (int il = 0; il < hp->n_layer; il++) memset(&m->layers[il].wqkv, 0, sizeof m->layers[il].wqkv);
    rc = 0;
done:
    for (int i = 0; i < n; i++) free(tasks[i].out);
    free(tasks);
    free(job.chunk_end);
    free(m->lm_head_scale);
    m->lm_head_scale = NULL;
    return rc;
}

int bc__model_quantize_at_load(bc_model *m, bc_dtype head_type, bc__err *err) {
    return quantize_matrices(m, true, head_type, err);
}

int bc__model_quantize_head(bc_model *m, bc_dtype type, bc__err *err) {
    if (m->lm_head.dtype == type) return 0;
    return quantize_matrices(m, false, type, err);
}

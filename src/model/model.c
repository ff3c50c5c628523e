/*
 * model.c - build a model from a checkpoint directory or a GGUF file.
 *
 *   bc_model_load   config -> tensor table -> weights bound by name and
 *                   checked against the hyper-parameters -> derived data
 *                   (NormHead row scales, ALiBi slopes, RoPE frequencies)
 *   bc_model_free
 *   bc_model_get_info
 *
 * Weights are not copied: each bc__weight points into the mapped files, in
 * the file's dtype. Only the small norm vectors are converted to f32. The one
 * exception: block-quantized matrices with an interleaved layout for this
 * CPU's kernels (kernels/kernels.h) get a repacked copy that the matmul reads
 * instead, so the mapped pages of those tensors go cold after the load
 * (bc_model_params.repack = OFF keeps the row-major kernels, for comparisons
 * and to save the memory). With bc_model_params.quantize the matrices are
 * converted at load into heap copies instead (see "Quantizing at load").
 */
#include "model/model.h"

#include "formats/checkpoint.h"
#include "kernels/kernels.h"
#include "quant/bnb4.h"
#include "quant/ftype.h"
#include "quant/gptq.h"
#include "quant/quants.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bc_model_params bc_model_default_params(void) {
    bc_model_params p;
    p.pos_encoding = BC_POS_ENCODING_AUTO;
    p.norm_head = BC_SWITCH_AUTO;
    p.repack = BC_SWITCH_AUTO;
    p.quantize = BC_FTYPE_COUNT;
    return p;
}

/* ------------------------------------------------------------------------ */
/* Binding tensors                                                          */
/* ------------------------------------------------------------------------ */

typedef struct binder {
    bc_model *model;
    bool *used; /* (n_tensors) which table entries the model uses */
    bc__err *err;
} binder;

static void format_shape(const bc__tensor *x, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < x->n_dims && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)x->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Finds tensor `name` and checks its shape: [rows, cols], or [cols] when rows is 0. */
static const bc__tensor *find_checked(binder *b, const char *name, int64_t rows, int64_t cols) {
    bc__tensor_table *t = &b->model->table;
    const bc__tensor *x = bc__table_find(t, name);
    if (x == NULL) {
        /* Name the one weights file where there is one: that is where to look. */
        if (t->n_files == 1)
            bc__errorf(b->err, BC_STATUS_ERROR_MODEL, "%s: tensor '%s' is missing (the file holds %zu other tensors)",
                       t->files[0]->path, name, t->n_tensors);
        else
            bc__errorf(b->err, BC_STATUS_ERROR_MODEL, "%s: tensor '%s' is missing from the checkpoint (%zu files)",
                       b->model->path, name, t->n_files);
        return NULL;
    }
    if (x->foreign_dtype != NULL) {
        bc__errorf(b->err, BC_STATUS_ERROR_MODEL, "%s: tensor '%s' is %s, but a %s must be F32, F16 or BF16",
                   x->file->path, name, x->foreign_dtype, rows == 0 ? "norm vector" : "weight matrix");
        return NULL;
    }
    bool ok = rows == 0 ? (x->n_dims == 1 && x->shape[0] == cols)
                        : (x->n_dims == 2 && x->shape[0] == rows && x->shape[1] == cols);
    if (!ok) {
        char found[128];
        format_shape(x, found, sizeof found);
        if (rows == 0)
            bc__errorf(b->err, BC_STATUS_ERROR_MODEL, "%s: tensor '%s' has shape %s, expected [%lld]", x->file->path,
                       name, found, (long long)cols);
        else
            bc__errorf(b->err, BC_STATUS_ERROR_MODEL, "%s: tensor '%s' has shape %s, expected [%lld, %lld]",
                       x->file->path, name, found, (long long)rows, (long long)cols);
        return NULL;
    }
    /* Matrices may be in any dtype the kernels read; a block format needs rows
     * of whole blocks. Vectors are converted to f32 at load. */
    const bc__dtype_traits *tr = bc__dtype_traits_of(x->dtype);
    if (tr == NULL || cols % tr->block_elems != 0) {
        bc__errorf(b->err, BC_STATUS_ERROR_MODEL,
                   "%s: tensor '%s' is %s, whose blocks of %d do not divide its rows of %lld values", x->file->path,
                   name, bc_dtype_name(x->dtype), tr ? tr->block_elems : 0, (long long)cols);
        return NULL;
    }
    b->used[x - t->tensors] = true;
    b->model->n_params += rows == 0 ? cols : rows * cols;
    b->model->weight_bytes += x->n_bytes;
    b->model->dtype_counts[x->dtype]++;
    return x;
}

/* Binds the blocks a 4-bit checkpoint's matrix was converted to, and adds
 * the converter's figures to the model's. */
static void bind_converted(binder *b, bc__converted *c, int64_t rows, int64_t cols, bc__weight *w) {
    bc_model *m = b->model;
    w->data = w->owned = c->blocks;
    w->dtype = c->dtype;
    w->rows = rows;
    w->cols = cols;
    w->name = c->name;
    w->perm = c->perm;
    for (int i = 0; i < c->n_used; i++) b->used[c->used[i] - m->table.tensors] = true;
    m->n_params += c->n_params;
    m->weight_bytes += c->stored_bytes;
    m->released_bytes += c->released_bytes;
    m->dtype_counts[c->dtype]++;
    m->n_converted++;
    m->converted_bytes += c->converted_bytes;
    /* The first matrix converted names the checkpoint's layout. */
    if (m->quantization[0] == '\0') snprintf(m->quantization, sizeof m->quantization, "%s", c->layout);
}

static int bind_matrix(binder *b, const char *name, int64_t rows, int64_t cols, bc__weight *w) {
    /* A published 4-bit checkpoint stores the matrix as several tensors. */
    bc_model *m = b->model;
    if (!m->is_gguf && m->hp.quant.method != BC__QUANT_NONE && bc__table_find(&m->table, name) == NULL) {
        bc__converted c;
        int rc = m->hp.quant.method == BC__QUANT_BNB4
                     ? bc__bnb4_convert(&m->table, &m->hp.quant, name, rows, cols, &c, b->err)
                     : bc__gptq_convert(&m->table, &m->hp.quant, m->path, name, rows, cols, &c, b->err);
        if (rc < 0) return -1;
        if (rc > 0) {
            bind_converted(b, &c, rows, cols, w);
            return 0;
        }
    }
    const bc__tensor *x = find_checked(b, name, rows, cols);
    if (x == NULL) return -1;
    w->data = x->data;
    w->dtype = x->dtype;
    w->rows = rows;
    w->cols = cols;
    w->name = x->name;
    return 0;
}

/* Binds a vector and converts it to f32 into dst (n floats). */
static int bind_vector(binder *b, const char *name, int64_t n, float *dst) {
    const bc__tensor *x = find_checked(b, name, 0, n);
    if (x == NULL) return -1;
    bc__dequantize_row(x->dtype, x->data, dst, n); /* find_checked checked n against the blocks */
    return 0;
}

/* A GGUF layer: llama.cpp's names, Q/K/V split (see bc__layer). */
static int bind_gguf_layer(binder *b, int il, bc__layer *L, float *vectors) {
    const bc__hparams *hp = &b->model->hp;
    char name[128];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, il), name)
    L->attn_norm = vectors;
    L->ffn_norm = vectors + hp->n_embd;
    if (bind_vector(b, NAME("attn_norm.weight"), hp->n_embd, vectors) != 0 ||
        bind_matrix(b, NAME("attn_q.weight"), hp->n_embd, hp->n_embd, &L->wq) != 0 ||
        bind_matrix(b, NAME("attn_k.weight"), hp->n_embd, hp->n_embd, &L->wk) != 0 ||
        bind_matrix(b, NAME("attn_v.weight"), hp->n_embd, hp->n_embd, &L->wv) != 0 ||
        bind_matrix(b, NAME("attn_output.weight"), hp->n_embd, hp->n_embd, &L->wo) != 0 ||
        bind_vector(b, NAME("ffn_norm.weight"), hp->n_embd, vectors + hp->n_embd) != 0 ||
        bind_matrix(b, NAME("ffn_gate.weight"), hp->n_ff, hp->n_embd, &L->w_gate) != 0 ||
        bind_matrix(b, NAME("ffn_up.weight"), hp->n_ff, hp->n_embd, &L->w_up) != 0 ||
        bind_matrix(b, NAME("ffn_down.weight"), hp->n_embd, hp->n_ff, &L->w_down) != 0)
        return -1;
#undef NAME
    memset(&L->wqkv, 0, sizeof L->wqkv);
    return 0;
}

static int bind_layer(binder *b, int il, bc__layer *L, float *vectors) {
    if (b->model->is_gguf) return bind_gguf_layer(b, il, L, vectors);
    const bc__hparams *hp = &b->model->hp;
    char name[128];
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%d." suffix, il), name)
    L->attn_norm = vectors;
    L->ffn_norm = vectors + hp->n_embd;
    if (bind_vector(b, NAME("input_layernorm.weight"), hp->n_embd, vectors) != 0 ||
        bind_matrix(b, NAME("self_attn.W_pack.weight"), 3LL * hp->n_embd, hp->n_embd, &L->wqkv) != 0 ||
        bind_matrix(b, NAME("self_attn.o_proj.weight"), hp->n_embd, hp->n_embd, &L->wo) != 0 ||
        bind_vector(b, NAME("post_attention_layernorm.weight"), hp->n_embd, vectors + hp->n_embd) != 0 ||
        bind_matrix(b, NAME("mlp.gate_proj.weight"), hp->n_ff, hp->n_embd, &L->w_gate) != 0 ||
        bind_matrix(b, NAME("mlp.up_proj.weight"), hp->n_ff, hp->n_embd, &L->w_up) != 0 ||
        bind_matrix(b, NAME("mlp.down_proj.weight"), hp->n_embd, hp->n_ff, &L->w_down) != 0)
        return -1;
#undef NAME
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Derived data                                                             */
/* ------------------------------------------------------------------------ */

/* NormHead: logits are computed with the stored head and then scaled per row
 * by 1 / max(|row|, 1e-12), which equals using the normalized head (and works
 * unchanged for quantized heads). */
static int compute_head_scale(bc_model *m, bc__err *err) {
    const bc__weight *w = &m->lm_head;
    m->lm_head_scale = malloc((size_t)w->rows * sizeof(float));
    float *row = malloc((size_t)w->cols * sizeof(float));
    if (m->lm_head_scale == NULL || row == NULL) {
        free(row);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory for the NormHead scales");
    }
    for (int64_t i = 0; i < w->rows; i++) {
        bc__weight_row_f32(w, i, row);
        double ss = 0.0;
        for (int64_t j = 0; j < w->cols; j++) ss += (double)row[j] * row[j];
        double norm = sqrt(ss);
        m->lm_head_scale[i] = (float)(1.0 / (norm > 1e-12 ? norm : 1e-12));
    }
    free(row);
    return 0;
}

/* The matrices the matmul reads (the embeddings are only looked up by row):
 * the lm_head and 8 per layer (wqkv or wq, wk, wv; unused ones are zero).
 * Returns how many were written to out. */
static int matmul_weights(bc_model *m, bc__weight **out) {
    int n = 0;
    out[n++] = &m->lm_head;
    for (int il = 0; m->layers != NULL && il < m->hp.n_layer; il++) {
        bc__layer *L = &m->layers[il];
        bc__weight *ws[] = {&L->wqkv, &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) out[n++] = ws[i];
    }
    return n;
}

/* Repacked copies of the matrices that have a layout for this CPU's kernels.
 * Optional: a matrix left without one (no kernel, odd shape, no memory) is
 * read row-major as before. The copies are made by one thread per CPU, each
 * taking the next matrix, so that a 7B model's 4 GB repack takes seconds. */
typedef struct repack_job {
    bc__weight **ws;
    int n;
    atomic_int next;
    _Atomic uint64_t released;        /* bytes of stored pages released */
    _Atomic uint64_t freed;           /* bytes of heap copies (quantized at load) freed */
    _Atomic uint64_t freed_converted; /* bytes of converted 4-bit blocks freed */
} repack_job;

/* The whole pages of w's stored bytes, dropped from the process once its
 * repacked copy replaces them: they are clean pages of a read-only file
 * mapping, so the kernel can reclaim them instead of holding the weights
 * twice, and a later read (a lower kernel level forced, a row looked up)
 * faults them in again from the file. Returns the bytes released. */
static uint64_t release_stored_pages(const bc__weight *w) {
    const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
    return bc__release_pages(w->data, (uint64_t)(w->rows * (w->cols / tr->block_elems)) * tr->block_bytes);
}

/* A matrix quantized at load (or converted from a 4-bit checkpoint) lives on
 * the heap, whose pages cannot be dropped and read back like a file's: once
 * repacked, its row-major copy is freed (data NULL), and the matmul reads the
 * repacked copy at any kernel level (kernels/kernels.c). */
static void *repack_thread(void *p) {
    repack_job *job = p;
    for (int i; (i = atomic_fetch_add(&job->next, 1)) < job->n;) {
        bc__weight *w = job->ws[i];
        if (w->data == NULL || !bc__weight_repack(w)) continue;
        if (w->owned == NULL) {
            atomic_fetch_add(&job->released, release_stored_pages(w));
            continue;
        }
        const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
        const uint64_t bytes = (uint64_t)(w->rows * (w->cols / tr->block_elems)) * tr->block_bytes;
        /* Heap copies are either blocks a 4-bit checkpoint was converted to
         * (their own dtypes) or matrices quantized at load. */
        bool converted = w->dtype == BC_DTYPE_NF4 || w->dtype == BC_DTYPE_FP4 || w->dtype == BC_DTYPE_Q4_GPTQ;
        atomic_fetch_add(converted ? &job->freed_converted : &job->freed, bytes);
        free(w->owned);
        w->owned = NULL;
        w->data = NULL;
    }
    return NULL;
}

static void repack_weights(bc_model *m, bc_switch repack) {
    if (repack == BC_SWITCH_OFF) return;
    repack_job job;
    job.ws = malloc((1 + 8 * (size_t)m->hp.n_layer) * sizeof *job.ws);
    if (job.ws == NULL) return;
    job.n = matmul_weights(m, job.ws);
    atomic_init(&job.next, 0);
    atomic_init(&job.released, 0);
    atomic_init(&job.freed, 0);
    atomic_init(&job.freed_converted, 0);
    bc__run_on_all_cpus(repack_thread, &job);
    for (int i = 0; i < job.n; i++) m->repacked_bytes += bc__repack_bytes(job.ws[i]);
    m->released_bytes += atomic_load(&job.released);
    m->quantized_bytes -= atomic_load(&job.freed);
    m->converted_bytes -= atomic_load(&job.freed_converted);
    free(job.ws);
}

/* ------------------------------------------------------------------------ */
/* Quantizing at load                                                       */
/* ------------------------------------------------------------------------ */

/* bc_model_params.quantize: each matrix converted to the type the GGUF writer
 * gives it (ftype.c), from the same f32 rows the writer encodes (gguf_write.c
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
                      bc__tensor_kind kind, int il, bc__weight *dst, bc__err *err) {
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
    if (bc__ftype_tensor_type(ft, kind, il, m->hp.n_layer, src->cols, &q->type) != 0)
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

static int quantize_at_load(bc_model *m, bc__err *err) {
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
    if (hp->norm_head && compute_head_scale(m, err) != 0) goto done;
    if (plan_quant(m, tasks, &n, &m->tok_embd, 0, hp->n_vocab, BC__TENSOR_TOK_EMBD, -1, &m->tok_embd, err) != 0)
        goto done;
    for (int il = 0; il < hp->n_layer; il++) {
        bc__layer *L = &m->layers[il];
        int r = 0;
        if (L->wqkv.data != NULL)
            r = plan_quant(m, tasks, &n, &L->wqkv, 0, E, BC__TENSOR_ATTN_Q, il, &L->wq, err) ||
                plan_quant(m, tasks, &n, &L->wqkv, E, E, BC__TENSOR_ATTN_K, il, &L->wk, err) ||
                plan_quant(m, tasks, &n, &L->wqkv, 2 * E, E, BC__TENSOR_ATTN_V, il, &L->wv, err);
        else
            r = plan_quant(m, tasks, &n, &L->wq, 0, E, BC__TENSOR_ATTN_Q, il, &L->wq, err) ||
                plan_quant(m, tasks, &n, &L->wk, 0, E, BC__TENSOR_ATTN_K, il, &L->wk, err) ||
                plan_quant(m, tasks, &n, &L->wv, 0, E, BC__TENSOR_ATTN_V, il, &L->wv, err);
        if (r || plan_quant(m, tasks, &n, &L->wo, 0, E, BC__TENSOR_ATTN_OUT, il, &L->wo, err) ||
            plan_quant(m, tasks, &n, &L->w_gate, 0, hp->n_ff, BC__TENSOR_FFN_GATE, il, &L->w_gate, err) ||
            plan_quant(m, tasks, &n, &L->w_up, 0, hp->n_ff, BC__TENSOR_FFN_UP, il, &L->w_up, err) ||
            plan_quant(m, tasks, &n, &L->w_down, 0, E, BC__TENSOR_FFN_DOWN, il, &L->w_down, err))
            goto done;
    }
    if (plan_quant(m, tasks, &n, &m->lm_head, 0, hp->n_vocab, BC__TENSOR_OUTPUT, -1, &m->lm_head, err) != 0) goto done;

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
        if (q->release && q->src.owned == NULL) m->released_bytes += release_stored_pages(&q->src);
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

/* ALiBi slopes by the interleave rule: for n heads, with p the largest power
 * of two <= n, heads 0..p-1 get 2^(-8(i+1)/p) and the remaining n-p heads take
 * every other slope of the 2p rule: 2^(-8(2k+1)/(2p)). For 40 heads that is
 * 2^(-(h+1)/4) for h < 32 and 2^(-(2k+1)/8) for the 8 extra heads. */
static void compute_alibi_slopes(int n_head, float *slopes) {
    int p = 1;
    while (p * 2 <= n_head) p *= 2;
    for (int h = 0; h < p; h++) slopes[h] = (float)pow(2.0, -8.0 * (h + 1) / p);
    for (int k = 0; k < n_head - p; k++) slopes[p + k] = (float)pow(2.0, -8.0 * (2 * k + 1) / (2.0 * p));
}

/* ------------------------------------------------------------------------ */
/* Load and free                                                            */
/* ------------------------------------------------------------------------ */

static int build(bc_model *m, bc_model_params params, bc__err *err) {
    const bc__hparams *hp = &m->hp;
    binder b = {m, calloc(m->table.n_tensors ? m->table.n_tensors : 1, sizeof(bool)), err};
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    m->f32_vectors = malloc(((size_t)hp->n_layer * 2 + 1) * (size_t)hp->n_embd * sizeof(float));
    if (b.used == NULL || m->layers == NULL || m->f32_vectors == NULL) {
        free(b.used);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    }
    int rc = -1;
    bool g = m->is_gguf;
    m->quantized_at_load = params.quantize;
    if (bind_matrix(&b, g ? "token_embd.weight" : "model.embed_tokens.weight", hp->n_vocab, hp->n_embd, &m->tok_embd) !=
        0)
        goto done;
    for (int il = 0; il < hp->n_layer; il++)
        if (bind_layer(&b, il, &m->layers[il], m->f32_vectors + (size_t)il * 2 * (size_t)hp->n_embd) != 0) goto done;
    float *out_norm = m->f32_vectors + (size_t)hp->n_layer * 2 * (size_t)hp->n_embd;
    if (bind_vector(&b, g ? "output_norm.weight" : "model.norm.weight", hp->n_embd, out_norm) != 0) goto done;
    m->out_norm = out_norm;
    if (bind_matrix(&b, g ? "output.weight" : "lm_head.weight", hp->n_vocab, hp->n_embd, &m->lm_head) != 0) goto done;

    m->n_ignored_tensors = 0;
    for (size_t i = 0; i < m->table.n_tensors; i++) m->n_ignored_tensors += !b.used[i];

    if (m->quantized_at_load != BC_FTYPE_COUNT && quantize_at_load(m, err) != 0) goto done;
    if (hp->norm_head && compute_head_scale(m, err) != 0) goto done;
    repack_weights(m, params.repack);
    if (hp->pos_encoding == BC_POS_ENCODING_ALIBI) {
        m->alibi_slopes = malloc((size_t)hp->n_head * sizeof(float));
        if (m->alibi_slopes == NULL) {
            bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
            goto done;
        }
        compute_alibi_slopes(hp->n_head, m->alibi_slopes);
    } else {
        int half = hp->head_dim / 2;
        m->rope_inv_freq = malloc((size_t)half * sizeof(double));
        if (m->rope_inv_freq == NULL) {
            bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
            goto done;
        }
        for (int i = 0; i < half; i++) m->rope_inv_freq[i] = pow((double)hp->rope_theta, -2.0 * i / hp->head_dim);
    }
    rc = 0;
done:
    free(b.used);
    return rc;
}

bc_status bc_model_load(const char *path, bc_model_params params, bc_model **out, char *err_buf, size_t err_size) {
    bc__err err = {BC_STATUS_OK, ""};
    *out = NULL;
    bc__f16_init();
    /* A file named *.gguf goes to the GGUF reader, which says what is wrong with it. */
    size_t plen = path ? strlen(path) : 0;
    bool gguf = path != NULL && bc__file_exists(path) &&
                (bc__gguf_is_file(path) || (plen >= 5 && strcmp(path + plen - 5, ".gguf") == 0));
    if (path == NULL || (!gguf && !bc__is_directory(path))) {
        bc__errorf(&err, bc__file_exists(path ? path : "") ? BC_STATUS_ERROR_MODEL : BC_STATUS_ERROR_IO,
                   "%s: not a model directory or GGUF file (expected a Hugging Face directory with config.json, "
                   "or a .gguf file)",
                   path ? path : "(null)");
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    if ((unsigned)params.quantize > BC_FTYPE_COUNT) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT, "params.quantize: %d is not a bc_ftype (or BC_FTYPE_COUNT)",
                   (int)params.quantize);
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    bc_model *m = calloc(1, sizeof *m);
    if (m == NULL || (m->path = bc__strdup(path)) == NULL) {
        free(m);
        bc__errorf(&err, BC_STATUS_ERROR_MEMORY, "out of memory");
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    int rc;
    if (gguf) {
        m->is_gguf = true;
        m->format = BC_FILE_FORMAT_GGUF;
        m->n_files = 1;
        bc__gen_config_defaults(&m->gen);
        rc = bc__gguf_read(&m->table, path, &m->gguf, &err) != 0 ||
             bc__gguf_config_read(&m->gguf, &m->table, params, &m->hp, &err) != 0 || build(m, params, &err) != 0;
    } else {
        rc = bc__config_read(path, params, &m->hp, &m->gen, &m->tok, &err) != 0 ||
             bc__checkpoint_read(&m->table, path, &m->format, &m->n_files, &err) != 0 || build(m, params, &err) != 0;
    }
    if (rc != 0) {
        bc_model_free(m);
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    *out = m;
    return BC_STATUS_OK;
}

void bc_model_free(bc_model *m) {
    if (m == NULL) return;
    free(m->tok_embd.owned);
    bc__gguf_free(&m->gguf);
    bc__table_free(&m->table);
    bc__weight **ws = malloc((1 + 8 * (size_t)m->hp.n_layer) * sizeof *ws);
    if (ws != NULL) { /* else the copies leak: there is no other way to reach them */
        int n = matmul_weights(m, ws);
        for (int i = 0; i < n; i++) {
            bc__weight_repack_free(ws[i]);
            free(ws[i]->owned);
            free(ws[i]->perm);
        }
        free(ws);
    }
    free(m->layers);
    free(m->f32_vectors);
    free(m->lm_head_scale);
    free(m->alibi_slopes);
    free(m->rope_inv_freq);
    free(m->path);
    free(m);
}

/* A display name from the shape: official sizes map to the release names. */
static const char *variant_name(const bc__hparams *hp) {
    bool v2 = hp->n_vocab == 125696;
    if (hp->n_embd == 4096 && hp->n_layer == 32) return v2 ? "Baichuan2-7B" : "Baichuan-7B";
    if (hp->n_embd == 5120 && hp->n_layer == 40) return v2 ? "Baichuan2-13B" : "Baichuan-13B";
    return v2 ? "Baichuan2 (custom size)" : "Baichuan (custom size)";
}

void bc_model_get_info(const bc_model *m, bc_model_info *info) {
    const bc__hparams *hp = &m->hp;
    memset(info, 0, sizeof *info);
    info->path = m->path;
    info->architecture = hp->architecture;
    info->variant = variant_name(hp);
    info->pos_encoding = hp->pos_encoding;
    info->pos_encoding_explicit = hp->pos_encoding_explicit;
    info->norm_head = hp->norm_head;
    info->norm_head_explicit = hp->norm_head_explicit;
    info->file_format = m->format;
    info->n_files = m->n_files;
    info->n_vocab = hp->n_vocab;
    info->n_embd = hp->n_embd;
    info->n_ff = hp->n_ff;
    info->n_layer = hp->n_layer;
    info->n_head = hp->n_head;
    info->head_dim = hp->head_dim;
    info->n_ctx_train = hp->n_ctx_train;
    info->norm_eps = hp->norm_eps;
    info->rope_theta = hp->rope_theta;
    info->bos_token_id = hp->bos_token_id;
    info->eos_token_id = hp->eos_token_id;
    info->pad_token_id = hp->pad_token_id;
    info->n_params = m->n_params;
    info->weight_bytes = m->weight_bytes;
    info->repacked_bytes = m->repacked_bytes;
    info->released_bytes = m->released_bytes;
    info->quantized_at_load = m->quantized_at_load;
    info->quantized_bytes = m->quantized_bytes;
    info->n_quantized = m->n_quantized;
    info->quantization = m->quantization;
    info->converted_bytes = m->converted_bytes;
    info->n_converted = m->n_converted;
    memcpy(info->dtype_counts, m->dtype_counts, sizeof info->dtype_counts);
    info->n_ignored_tensors = m->n_ignored_tensors;
}

/*
 * load.c - build a model from a checkpoint directory or a GGUF file.
 *
 *   bc_model_load   config -> tensor table -> weights bound by name and
 *                   checked against the hyper-parameters (a 4-bit
 *                   checkpoint's matrices converted by quant/bnb4.c or
 *                   quant/gptq.c) -> quantized at load (quantize_at_load.c)
 *                   -> NormHead scales (derived.c) -> repacked copies
 *                   (repack.c) -> ALiBi slopes or RoPE frequencies
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
 * converted at load into heap copies instead (quantize_at_load.c).
 */
#include "model/model.h"

#include "formats/checkpoint.h"
#include "formats/gguf_config.h"
#include "formats/hf_config.h"
#include "kernels/kernels.h"
#include "model/derived.h"
#include "model/matrices.h"
#include "model/quantize_at_load.h"
#include "model/repack.h"
#include "quant/bnb4.h"
#include "quant/gptq.h"
#include "quant/quants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bc_model_params bc_model_default_params(void) {
    bc_model_params p;
    p.pos_encoding = BC_POS_ENCODING_AUTO;
    p.norm_head = BC_SWITCH_AUTO;
    p.repack = BC_SWITCH_AUTO;
    p.quantize = BC_FTYPE_COUNT;
    p.head_type = BC_DTYPE_COUNT;
    return p;
}

/* ------------------------------------------------------------------------ */
/* Binding tensors                                                          */
/* ------------------------------------------------------------------------ */

typedef struct binder {
    bc_model *model;
    bool *used; /* (n_tensors) which table entries the model uses */
    bc__err *err;
    /* A 4-bit checkpoint's matrices go through buf and are repacked at once
     * (nothing else needs their row-major blocks: no quantize at load, the
     * repack on): the blocks of one matrix at a time, their pages reused. */
    bool repack_now;
    bc__convert_buf buf;
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
        bc__convert_buf *buf = b->repack_now ? &b->buf : NULL;
        int rc = m->hp.quant.method == BC__QUANT_BNB4
                     ? bc__bnb4_convert(&m->table, &m->hp.quant, name, rows, cols, buf, &c, b->err)
                     : bc__gptq_convert(&m->table, &m->hp.quant, m->path, name, rows, cols, buf, &c, b->err);
        if (rc < 0) return -1;
        if (rc > 0) {
            bind_converted(b, &c, rows, cols, w);
            if (buf == NULL) return 0;
            /* The blocks are in the lent buffer: repacked now, or (no layout
             * for them here, no memory) copied out to be the matrix's own. */
            if (bc__weight_repack_all_cpus(w)) {
                w->data = w->owned = NULL;
                m->converted_bytes -= c.converted_bytes;
            } else {
                void *own = aligned_alloc(64, (c.converted_bytes + 63) / 64 * 64);
                w->data = w->owned = own; /* never the lent buffer, which goes with the binder */
                if (own == NULL)
                    return bc__errorf(b->err, BC_STATUS_ERROR_MEMORY, "out of memory for '%s' (%llu bytes)", name,
                                      (unsigned long long)c.converted_bytes);
                memcpy(own, c.blocks, c.converted_bytes);
            }
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
/* Load and free                                                            */
/* ------------------------------------------------------------------------ */

static int build(bc_model *m, bc_model_params params, bc__err *err) {
    const bc__hparams *hp = &m->hp;
    binder b = {m,
                calloc(m->table.n_tensors ? m->table.n_tensors : 1, sizeof(bool)),
                err,
                params.quantize == BC_FTYPE_COUNT && params.repack != BC_SWITCH_OFF,
                {NULL, 0}};
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

    if (m->quantized_at_load != BC_FTYPE_COUNT) {
        if (bc__model_quantize_at_load(m, params.head_type, err) != 0) goto done;
    } else if (params.head_type != BC_DTYPE_COUNT && bc__model_quantize_head(m, params.head_type, err) != 0) {
        goto done;
    }
    if (hp->norm_head && bc__model_head_scale(m, err) != 0) goto done;
    bc__model_repack(m, params.repack);
    if (bc__model_position_tables(m, err) != 0) goto done;
    rc = 0;
done:
    free(b.used);
    free(b.buf.p);
    return rc;
}

/* Whether the head can be converted to t at load (bc_model_params.head_type):
 * a type with a quantizer, or BC_DTYPE_COUNT (as stored). */
static bool head_type_ok(bc_dtype t) {
    switch (t) {
    case BC_DTYPE_COUNT:
    case BC_DTYPE_F32:
    case BC_DTYPE_F16:
    case BC_DTYPE_BF16:
    case BC_DTYPE_Q8_0:
    case BC_DTYPE_Q4_0:
    case BC_DTYPE_Q4_1:
    case BC_DTYPE_Q5_0:
    case BC_DTYPE_Q5_1:
    case BC_DTYPE_Q4_K:
    case BC_DTYPE_Q5_K:
    case BC_DTYPE_Q6_K: return true;
    default: return false;
    }
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
    if (!head_type_ok(params.head_type)) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT,
                   "params.head_type: %s is not a type the head can be converted to (q8_0, q6_k, q5_k, q4_k, q5_1, "
                   "q5_0, q4_1, q4_0, f16, bf16, f32)",
                   (unsigned)params.head_type < BC_DTYPE_COUNT ? bc_dtype_name(params.head_type) : "(unknown)");
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
    int n;
    bc__weight **ws = bc__model_matrices(m, &n);
    if (ws != NULL) { /* else the copies leak: there is no other way to reach them */
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

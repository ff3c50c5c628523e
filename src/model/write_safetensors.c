/*
 * write_safetensors.c - write a loaded model, with LoRA adapters merged, as
 * a Hugging Face directory (bc_model_write_hf, baichuan merge): config.json
 * (the source's, its quantization_config removed, torch_dtype and the
 * variant keys written explicitly), the tokenizer and generation files
 * copied, and one model.safetensors in the official tensor names, W_pack
 * fused in its own row order (a GGUF source's split, permuted Q/K/V put
 * back), lm_head as stored.
 *
 *   plan     the tensors in state_dict order with their byte ranges
 *   rows     a row as f32 (with every adapter's update), encoded to f32,
 *            f16 or bf16
 *   files    OUT.tmp/ filled, then renamed to OUT when complete
 */
#include "model/lora.h"
#include "model/model.h"

#include "formats/json_file.h"
#include "kernels/kernels.h"
#include "quant/quants.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum hf_kind {
    HF_EMBED,
    HF_ATTN_NORM,
    HF_W_PACK,
    HF_O,
    HF_FFN_NORM,
    HF_GATE,
    HF_UP,
    HF_DOWN,
    HF_NORM,
    HF_HEAD
} hf_kind;

typedef struct hf_tensor {
    char name[96];
    hf_kind kind;
    int layer;
    int64_t rows, cols; /* rows 0: a vector */
} hf_tensor;

typedef struct hf_writer {
    const bc_model *m;
    bc_lora **loras;
    int n_loras;
    bc_dtype type; /* f32, f16 or bf16 */
    bc__err *err;
} hf_writer;

static void add_lora_rows(const hf_writer *w, int il, bc__lora_slot slot, int64_t r, float *row) {
    for (int k = 0; k < w->n_loras; k++) {
        const bc__lora_mat *lm = bc__lora_mat_of(w->loras[k], il, slot);
        if (lm != NULL) bc__lora_delta_row(w->loras[k], lm, r, row);
    }
}

/* Row r of t as f32, adapters merged. */
static void hf_row(const hf_writer *w, const hf_tensor *t, int64_t r, float *row) {
    const bc_model *m = w->m;
    const bc__layer *L = t->layer >= 0 ? &m->layers[t->layer] : NULL;
    const int64_t E = m->hp.n_embd, D = m->hp.head_dim, half = D / 2;
    switch (t->kind) {
    case HF_EMBED: bc__weight_row_f32(&m->tok_embd, r, row); break;
    case HF_ATTN_NORM: memcpy(row, L->attn_norm, (size_t)E * sizeof(float)); break;
    case HF_FFN_NORM: memcpy(row, L->ffn_norm, (size_t)E * sizeof(float)); break;
    case HF_NORM: memcpy(row, m->out_norm, (size_t)E * sizeof(float)); break;
    case HF_W_PACK:
        if (L->wqkv.data != NULL) {
            bc__weight_row_f32(&L->wqkv, r, row);
        } else if (r < 2 * E) {
            /* W_pack row h*D + j*half + i is llama.cpp's row h*D + 2i + j */
            const int64_t in = r % E, h = in / D, j = (in % D) / half, i = in % half;
            bc__weight_row_f32(r < E ? &L->wq : &L->wk, h * D + 2 * i + j, row);
        } else {
            bc__weight_row_f32(&L->wv, r - 2 * E, row);
        }
        add_lora_rows(w, t->layer, BC__LORA_W_PACK, r, row);
        break;
    case HF_O:
        bc__weight_row_f32(&L->wo, r, row);
        add_lora_rows(w, t->layer, BC__LORA_O_PROJ, r, row);
        break;
    case HF_GATE:
        bc__weight_row_f32(&L->w_gate, r, row);
        add_lora_rows(w, t->layer, BC__LORA_GATE, r, row);
        break;
    case HF_UP:
        bc__weight_row_f32(&L->w_up, r, row);
        add_lora_rows(w, t->layer, BC__LORA_UP, r, row);
        break;
    case HF_DOWN:
        bc__weight_row_f32(&L->w_down, r, row);
        add_lora_rows(w, t->layer, BC__LORA_DOWN, r, row);
        break;
    case HF_HEAD: bc__weight_row_f32(&m->lm_head, r, row); break;
    }
}

static hf_tensor *plan(const bc_model *m, size_t *n_out) {
    const bc__hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    hf_tensor *t = calloc((size_t)hp->n_layer * 7 + 3, sizeof *t);
    if (t == NULL) return NULL;
    size_t n = 0;
    t[n++] = (hf_tensor){"model.embed_tokens.weight", HF_EMBED, -1, V, E};
    static const struct {
        const char *name;
        hf_kind kind;
    } layer[] = {{"input_layernorm", HF_ATTN_NORM}, {"self_attn.W_pack", HF_W_PACK},
                 {"self_attn.o_proj", HF_O},        {"post_attention_layernorm", HF_FFN_NORM},
                 {"mlp.gate_proj", HF_GATE},        {"mlp.up_proj", HF_UP},
                 {"mlp.down_proj", HF_DOWN}};
    for (int il = 0; il < hp->n_layer; il++)
        for (size_t k = 0; k < sizeof layer / sizeof layer[0]; k++) {
            hf_tensor *x = &t[n++];
            snprintf(x->name, sizeof x->name, "model.layers.%d.%s.weight", il, layer[k].name);
            x->kind = layer[k].kind;
            x->layer = il;
            x->rows = x->kind == HF_ATTN_NORM || x->kind == HF_FFN_NORM ? 0
                      : x->kind == HF_W_PACK                            ? 3 * E
                      : x->kind == HF_GATE || x->kind == HF_UP          ? F
                                                                        : E;
            x->cols = x->kind == HF_DOWN ? F : E;
        }
    t[n++] = (hf_tensor){"model.norm.weight", HF_NORM, -1, 0, E};
    t[n++] = (hf_tensor){"lm_head.weight", HF_HEAD, -1, V, E};
    *n_out = n;
    return t;
}

static int copy_file(const char *from, const char *to, bc__err *err) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    int rc = 0;
    char buf[1 << 16];
    size_t got;
    if (in == NULL || out == NULL) rc = -1;
    while (rc == 0 && (got = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, got, out) != got) rc = -1;
    if (in && ferror(in)) rc = -1;
    if (in) fclose(in);
    if (out && fclose(out) != 0) rc = -1;
    return rc ? bc__errorf(err, BC_STATUS_ERROR_IO, "copying %s to %s: %s", from, to, strerror(errno)) : 0;
}

/* OUT.tmp/config.json: the source's, made explicit about what it holds. */
static int write_config(const hf_writer *w, const char *src_dir, const char *dst_dir) {
    char *src = bc__path_join(src_dir, "config.json"), *dst = bc__path_join(dst_dir, "config.json");
    json_t *root = NULL;
    int rc = -1;
    if (src == NULL || dst == NULL) {
        bc__errorf(w->err, BC_STATUS_ERROR_MEMORY, "out of memory");
        goto done;
    }
    if (bc__json_file_load(src, &root, w->err) != 0) goto done;
    json_object_del(root, "quantization_config");
    json_object_set_new(root, "torch_dtype",
                        json_string(w->type == BC_DTYPE_F32   ? "float32"
                                    : w->type == BC_DTYPE_F16 ? "float16"
                                                              : "bfloat16"));
    json_object_set_new(root, "position_encoding",
                        json_string(w->m->hp.pos_encoding == BC_POS_ENCODING_ROPE ? "rope" : "alibi"));
    json_object_set_new(root, "norm_head", json_boolean(w->m->hp.norm_head));
    if (json_dump_file(root, dst, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        bc__errorf(w->err, BC_STATUS_ERROR_IO, "%s: cannot write", dst);
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    free(src);
    free(dst);
    return rc;
}

static int write_weights(const hf_writer *w, const char *path) {
    size_t n = 0;
    hf_tensor *t = plan(w->m, &n);
    const size_t esize = bc__dtype_traits_of(w->type)->block_bytes;
    const char *st = w->type == BC_DTYPE_F32 ? "F32" : w->type == BC_DTYPE_F16 ? "F16" : "BF16";
    bc__buf h = {0};
    float *row = NULL;
    void *enc = NULL;
    FILE *f = NULL;
    int rc = -1;
    if (t == NULL) goto oom;
    char item[256];
    uint64_t off = 0;
    if (bc__buf_append(&h, "{", 1) != 0) goto oom;
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = (uint64_t)(t[i].rows ? t[i].rows : 1) * (uint64_t)t[i].cols * esize;
        int k = t[i].rows ? snprintf(item, sizeof item,
                                     "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                     i ? "," : "", t[i].name, st, (long long)t[i].rows, (long long)t[i].cols,
                                     (unsigned long long)off, (unsigned long long)(off + bytes))
                          : snprintf(item, sizeof item,
                                     "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
                                     i ? "," : "", t[i].name, st, (long long)t[i].cols, (unsigned long long)off,
                                     (unsigned long long)(off + bytes));
        if (bc__buf_append(&h, item, (size_t)k) != 0) goto oom;
        off += bytes;
    }
    static const char meta[] = ",\"__metadata__\":{\"format\":\"pt\"}}";
    if (bc__buf_append(&h, meta, sizeof meta - 1) != 0) goto oom;
    while (h.len % 8)
        if (bc__buf_append(&h, " ", 1) != 0) goto oom;
    const int64_t max_cols = w->m->hp.n_ff > w->m->hp.n_embd ? w->m->hp.n_ff : w->m->hp.n_embd;
    row = malloc((size_t)max_cols * sizeof(float));
    enc = malloc((size_t)max_cols * sizeof(float));
    if (row == NULL || enc == NULL) goto oom;
    if ((f = fopen(path, "wb")) == NULL) {
        bc__errorf(w->err, BC_STATUS_ERROR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
        goto done;
    }
    uint64_t hl = h.len;
    if (fwrite(&hl, 8, 1, f) != 1 || fwrite(h.data, 1, h.len, f) != h.len) goto write_error;
    for (size_t i = 0; i < n; i++)
        for (int64_t r = 0; r < (t[i].rows ? t[i].rows : 1); r++) {
            hf_row(w, &t[i], r, row);
            bc__quantize_row(w->type, row, enc, t[i].cols);
            if (fwrite(enc, esize, (size_t)t[i].cols, f) != (size_t)t[i].cols) goto write_error;
        }
    if (fclose(f) != 0) {
        f = NULL;
        goto write_error;
    }
    f = NULL;
    rc = 0;
    goto done;
write_error:
    bc__errorf(w->err, BC_STATUS_ERROR_IO, "%s: write failed: %s", path, strerror(errno));
    goto done;
oom:
    bc__errorf(w->err, BC_STATUS_ERROR_MEMORY, "out of memory");
done:
    if (f != NULL) fclose(f);
    free(h.data);
    free(row);
    free(enc);
    free(t);
    return rc;
}

/* Removes what a failed write left in dir (the files this writer makes), and dir. */
static void remove_partial(const char *dir) {
    static const char *const names[] = {"tokenizer.model",        "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json", "config.json",           "model.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = bc__path_join(dir, names[i]);
        if (p != NULL) remove(p);
        free(p);
    }
    rmdir(dir);
}

bc_status bc_model_write_hf(const char *in_path, const char *out_dir, bc_quantize_params params, char *err_buf,
                            size_t err_size) {
    bc__err err = {BC_STATUS_OK, ""};
    bc_model *m = NULL;
    hf_writer w;
    memset(&w, 0, sizeof w);
    w.err = &err;
    char *tmp = NULL;
    if (in_path == NULL || out_dir == NULL ||
        (params.ftype != BC_FTYPE_F32 && params.ftype != BC_FTYPE_F16 && params.ftype != BC_FTYPE_BF16)) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT,
                   "a Hugging Face directory is written in f32, f16 or bf16 (for a quantized type write a GGUF)");
        goto done;
    }
    w.type = params.ftype == BC_FTYPE_F32 ? BC_DTYPE_F32 : params.ftype == BC_FTYPE_F16 ? BC_DTYPE_F16 : BC_DTYPE_BF16;
    if (!bc__is_directory(in_path)) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT,
                   "%s: a Hugging Face directory is written from one (its config.json and tokenizer are copied); "
                   "for a GGUF base write a GGUF",
                   in_path);
        goto done;
    }
    bc_model_params mp = params.model;
    mp.repack = BC_SWITCH_OFF;
    bc_status st = bc_model_load(in_path, mp, &m, err_buf, err_size);
    if (st != BC_STATUS_OK) return st;
    w.m = m;
    if (params.n_loras > 0 && (w.loras = calloc((size_t)params.n_loras, sizeof *w.loras)) == NULL) {
        bc__errorf(&err, BC_STATUS_ERROR_MEMORY, "out of memory");
        goto done;
    }
    for (; w.n_loras < params.n_loras; w.n_loras++) {
        char lerr[1024];
        float scale = params.lora_scales ? params.lora_scales[w.n_loras] : 1.0f;
        bc_status ls = bc_lora_load(m, params.lora_paths[w.n_loras], scale, &w.loras[w.n_loras], lerr, sizeof lerr);
        if (ls != BC_STATUS_OK) {
            bc__errorf(&err, ls, "%s", lerr);
            goto done;
        }
    }
    tmp = malloc(strlen(out_dir) + 5);
    if (tmp == NULL) {
        bc__errorf(&err, BC_STATUS_ERROR_MEMORY, "out of memory");
        goto done;
    }
    sprintf(tmp, "%s.tmp", out_dir);
    if (mkdir(tmp, 0755) != 0) {
        bc__errorf(&err, BC_STATUS_ERROR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    static const char *const copied[] = {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                                         "generation_config.json"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        char *from = bc__path_join(in_path, copied[i]), *to = bc__path_join(tmp, copied[i]);
        int rc = from && to ? 0 : bc__errorf(&err, BC_STATUS_ERROR_MEMORY, "out of memory");
        if (rc == 0 && bc__file_exists(from)) rc = copy_file(from, to, &err);
        free(from);
        free(to);
        if (rc != 0) goto done;
    }
    char *weights = bc__path_join(tmp, "model.safetensors");
    int rc = weights ? write_config(&w, in_path, tmp) : bc__errorf(&err, BC_STATUS_ERROR_MEMORY, "out of memory");
    if (rc == 0) rc = write_weights(&w, weights);
    free(weights);
    if (rc == 0 && rename(tmp, out_dir) != 0)
        bc__errorf(&err, BC_STATUS_ERROR_IO, "%s: cannot rename %s into place: %s", out_dir, tmp, strerror(errno));
done:
    if (err.status != BC_STATUS_OK && tmp != NULL) remove_partial(tmp);
    for (int k = 0; k < w.n_loras; k++) bc_lora_free(w.loras[k]);
    free(w.loras);
    free(tmp);
    bc_model_free(m);
    bc__err_copy(&err, err_buf, err_size);
    return err.status;
}

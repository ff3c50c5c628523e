/*
 * write_gguf.c - write a loaded model as a llama.cpp-compatible GGUF v3
 * (bc_model_quantize).
 *
 *   types      bc_quantize_default_params (the type of each tensor comes from
 *              ftype.c, shared with quantizing at load)
 *   plan       the tensors in llama.cpp's names and order, with their types
 *   metadata   baichuan.* hyper-parameters, our explicit variant keys, the
 *              vocabulary (tokenizer.ggml.*)
 *   rows       a source row as f32 (Q/K permuted as llama.cpp's converter
 *              does, the head normalized with NormHead), encoded to its type
 *              by quant/quants.c (bc__quantize_row)
 *   write      header, padding, then tensor by tensor, row by row, into
 *              OUT.tmp, renamed to OUT when complete
 *
 * llama.cpp's converter (convert_hf_to_gguf.py, BaichuanModel) splits W_pack
 * and applies _reverse_hf_permute to Q and K:
 *   w.reshape(n_head, 2, D/2, cols).swapaxes(1, 2).reshape(rows, cols)
 * so GGUF row h*D + 2i + j is W_pack row h*D + j*D/2 + i (j = 0, 1).
 */
#include "model/lora.h"
#include "model/model.h"

#include "formats/sp_model.h"
#include "kernels/kernels.h"
#include "quant/ftype.h"
#include "quant/quants.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGNMENT 32

#define GGML_QNT_VERSION 2

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

bc_quantize_params bc_quantize_default_params(void) {
    bc_quantize_params p;
    memset(&p, 0, sizeof p);
    p.ftype = BC_FTYPE_F16;
    p.model = bc_model_default_params();
    return p;
}

/* ------------------------------------------------------------------------ */
/* Plan                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct planned {
    char name[64];
    bc__tensor_kind kind;
    int layer;
    bc_dtype type;
    int64_t rows, cols; /* rows 1 for vectors */
    uint64_t offset;    /* in the data section */
    uint64_t n_bytes;
} planned;

typedef struct writer {
    const bc_model *m;
    bc_quantize_params params;
    planned *tensors;
    size_t n_tensors;
    bc__buf header;
    uint64_t n_kv;
    bc__err *err;
    bc_lora **loras; /* (n_loras) merged into the rows as they are written */
    int n_loras;
} writer;

static int plan_one(writer *w, bc__tensor_kind kind, int il, const char *name, int64_t rows, int64_t cols) {
    planned *p = &w->tensors[w->n_tensors++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->kind = kind;
    p->layer = il;
    p->rows = rows;
    p->cols = cols;
    if (bc__ftype_tensor_type(w->params.ftype, kind, il, w->m->hp.n_layer, cols, &p->type) != 0) {
        return bc__errorf(w->err, BC_STATUS_ERROR_ARGUMENT,
                          "tensor '%s': rows of %lld elements are not whole %s blocks (%d); llama.cpp cannot store "
                          "this shape as %s either",
                          name, (long long)cols, bc_dtype_name(bc__ftype_base(w->params.ftype)),
                          bc__dtype_traits_of(bc__ftype_base(w->params.ftype))->block_elems,
                          bc_ftype_name(w->params.ftype));
    }
    uint64_t row_bytes;
    if (bc__dtype_row_bytes(p->type, (uint64_t)cols, &row_bytes) != 0 ||
        bc__mul_u64(row_bytes, (uint64_t)rows, &p->n_bytes) != 0)
        return bc__errorf(w->err, BC_STATUS_ERROR_ARGUMENT, "tensor '%s': size overflows", name);
    return 0;
}

static int make_plan(writer *w) {
    const bc__hparams *hp = &w->m->hp;
    w->tensors = calloc((size_t)hp->n_layer * 9 + 3, sizeof *w->tensors);
    if (w->tensors == NULL) return bc__errorf(w->err, BC_STATUS_ERROR_MEMORY, "out of memory");
    int64_t E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    char name[64];
    if (plan_one(w, BC__TENSOR_TOK_EMBD, -1, "token_embd.weight", V, E) != 0) return -1;
    static const struct {
        bc__tensor_kind kind;
        const char *suffix;
    } layer_tensors[] = {
        {BC__TENSOR_ATTN_NORM, "attn_norm"}, {BC__TENSOR_ATTN_Q, "attn_q"},        {BC__TENSOR_ATTN_K, "attn_k"},
        {BC__TENSOR_ATTN_V, "attn_v"},       {BC__TENSOR_ATTN_OUT, "attn_output"}, {BC__TENSOR_FFN_NORM, "ffn_norm"},
        {BC__TENSOR_FFN_GATE, "ffn_gate"},   {BC__TENSOR_FFN_UP, "ffn_up"},        {BC__TENSOR_FFN_DOWN, "ffn_down"},
    };
    for (int il = 0; il < hp->n_layer; il++)
        for (size_t k = 0; k < sizeof layer_tensors / sizeof layer_tensors[0]; k++) {
            bc__tensor_kind kind = layer_tensors[k].kind;
            snprintf(name, sizeof name, "blk.%d.%s.weight", il, layer_tensors[k].suffix);
            int64_t rows = kind == BC__TENSOR_ATTN_NORM || kind == BC__TENSOR_FFN_NORM ? 1
                           : kind == BC__TENSOR_FFN_GATE || kind == BC__TENSOR_FFN_UP  ? F
                                                                                       : E;
            int64_t cols = kind == BC__TENSOR_FFN_DOWN ? F : E;
            if (plan_one(w, kind, il, name, rows, cols) != 0) return -1;
        }
    if (plan_one(w, BC__TENSOR_OUTPUT_NORM, -1, "output_norm.weight", 1, E) != 0 ||
        plan_one(w, BC__TENSOR_OUTPUT, -1, "output.weight", V, E) != 0)
        return -1;
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        w->tensors[i].offset = off;
        off += (w->tensors[i].n_bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Metadata                                                                 */
/* ------------------------------------------------------------------------ */

static int put(writer *w, const void *p, size_t n) {
    if (bc__buf_append(&w->header, p, n) != 0) return bc__errorf(w->err, BC_STATUS_ERROR_MEMORY, "out of memory");
    return 0;
}
static int put_u32(writer *w, uint32_t v) { return put(w, &v, 4); }
static int put_u64(writer *w, uint64_t v) { return put(w, &v, 8); }
static int put_str(writer *w, const char *s, size_t n) { return put_u64(w, n) || put(w, s, n) ? -1 : 0; }
static int put_key(writer *w, const char *key, uint32_t type) {
    w->n_kv++;
    return put_str(w, key, strlen(key)) || put_u32(w, type) ? -1 : 0;
}
static int kv_u32(writer *w, const char *key, uint32_t v) {
    return put_key(w, key, BC__GGUF_U32) || put_u32(w, v) ? -1 : 0;
}
static int kv_f32(writer *w, const char *key, float v) {
    return put_key(w, key, BC__GGUF_F32) || put(w, &v, 4) ? -1 : 0;
}
static int kv_bool(writer *w, const char *key, bool v) {
    uint8_t b = v;
    return put_key(w, key, BC__GGUF_BOOL) || put(w, &b, 1) ? -1 : 0;
}
static int kv_str(writer *w, const char *key, const char *v) {
    return put_key(w, key, BC__GGUF_STRING) || put_str(w, v, strlen(v)) ? -1 : 0;
}

/* tokenizer.ggml.* from a SentencePiece tokenizer.model, as llama.cpp's
 * converter writes them (_create_vocab_sentencepiece): ids past the model's
 * pieces become "[PADn]", score -10000, type UNUSED. */
static int vocab_from_sp(writer *w, const char *sp_path) {
    const bc_model *m = w->m;
    bc__file *f = NULL;
    bc__sp_model sp;
    memset(&sp, 0, sizeof sp);
    if (bc__file_map(sp_path, &f, w->err) != 0) return -1;
    int rc = -1;
    if (bc__sp_model_parse(&sp, f->data, (size_t)f->size, sp_path, w->err) != 0) goto done;
    int V = m->hp.n_vocab;
    if (sp.n_pieces > V) {
        bc__errorf(w->err, BC_STATUS_ERROR_MODEL, "%s: %d pieces, more than the model's vocabulary of %d", sp_path,
                   (int)sp.n_pieces, V);
        goto done;
    }
    char pad[32];
    if (kv_str(w, "tokenizer.ggml.model", "llama") || kv_str(w, "tokenizer.ggml.pre", "default") ||
        put_key(w, "tokenizer.ggml.tokens", BC__GGUF_ARRAY) || put_u32(w, BC__GGUF_STRING) || put_u64(w, (uint64_t)V))
        goto done;
    for (int i = 0; i < V; i++) {
        if (i < sp.n_pieces) {
            if (put_str(w, sp.pieces[i].text.ptr, sp.pieces[i].text.len) != 0) goto done;
        } else {
            snprintf(pad, sizeof pad, "[PAD%d]", i);
            if (put_str(w, pad, strlen(pad)) != 0) goto done;
        }
    }
    if (put_key(w, "tokenizer.ggml.scores", BC__GGUF_ARRAY) || put_u32(w, BC__GGUF_F32) || put_u64(w, (uint64_t)V))
        goto done;
    for (int i = 0; i < V; i++) {
        float s = i < sp.n_pieces ? sp.pieces[i].score : -10000.0f;
        if (put(w, &s, 4) != 0) goto done;
    }
    if (put_key(w, "tokenizer.ggml.token_type", BC__GGUF_ARRAY) || put_u32(w, BC__GGUF_I32) || put_u64(w, (uint64_t)V))
        goto done;
    for (int i = 0; i < V; i++) {
        int32_t t = i < sp.n_pieces ? sp.pieces[i].type : BC__SP_UNUSED;
        if (put(w, &t, 4) != 0) goto done;
    }
    int unk = sp.trainer.present ? sp.trainer.unk_id : 0;
    if (kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)m->hp.bos_token_id) ||
        kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)m->hp.eos_token_id) ||
        (unk >= 0 && unk < V && kv_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk)) ||
        kv_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)m->hp.pad_token_id) ||
        kv_bool(w, "tokenizer.ggml.add_bos_token", m->tok.add_bos_token) ||
        kv_bool(w, "tokenizer.ggml.add_eos_token", m->tok.add_eos_token))
        goto done;
    /* llama.cpp assumes a dummy prefix for a "llama" vocabulary unless told
     * otherwise (Baichuan's and the default model's have none). */
    bool add_prefix = sp.normalizer.present ? sp.normalizer.add_dummy_prefix : true;
    bool remove_ws = sp.normalizer.present ? sp.normalizer.remove_extra_whitespaces : true;
    if (kv_bool(w, "tokenizer.ggml.add_space_prefix", add_prefix) ||
        kv_bool(w, "tokenizer.ggml.remove_extra_whitespaces", remove_ws))
        goto done;
    /* A non-identity character map, as llama.cpp's T5 converter stores it
     * (llama.cpp reads it only for "t5" vocabularies; we read it for all). */
    const bc__span *cm = &sp.normalizer.precompiled_charsmap;
    if (cm->len > 0 && (put_key(w, "tokenizer.ggml.precompiled_charsmap", BC__GGUF_ARRAY) || put_u32(w, BC__GGUF_U8) ||
                        put_u64(w, (uint64_t)cm->len) || put(w, cm->ptr, cm->len)))
        goto done;
    /* generation_config.json's chat role ids and reply budget (not llama.cpp keys). */
    if (m->gen.present && (kv_u32(w, "baichuan.user_token_id", (uint32_t)m->gen.user_token_id) ||
                           kv_u32(w, "baichuan.assistant_token_id", (uint32_t)m->gen.assistant_token_id) ||
                           kv_u32(w, "baichuan.max_new_tokens", (uint32_t)m->gen.max_new_tokens)))
        goto done;
    rc = 0;
done:
    bc__sp_model_free(&sp);
    bc__file_unmap(f);
    return rc;
}

/* tokenizer.* of an input GGUF, and our chat role ids, copied as they are. */
static int vocab_from_gguf(writer *w) {
    const bc__gguf *g = &w->m->gguf;
    for (size_t i = 0; i < g->n_kv; i++) {
        const bc__gguf_kv *kv = &g->kvs[i];
        if (strncmp(kv->key, "tokenizer.", 10) != 0 && strcmp(kv->key, "baichuan.user_token_id") != 0 &&
            strcmp(kv->key, "baichuan.assistant_token_id") != 0 && strcmp(kv->key, "baichuan.max_new_tokens") != 0)
            continue;
        if (put_key(w, kv->key, kv->type) != 0 || put(w, kv->value, (size_t)kv->value_size) != 0) return -1;
    }
    return 0;
}

static int make_metadata(writer *w, const char *in_path) {
    const bc_model *m = w->m;
    const bc__hparams *hp = &m->hp;
    const char *base = strrchr(in_path, '/');
    base = base && base[1] ? base + 1 : in_path;
    if (kv_str(w, "general.architecture", "baichuan") || kv_str(w, "general.name", base) ||
        kv_u32(w, "general.file_type", (uint32_t)bc__ftype_llama(w->params.ftype)) ||
        kv_u32(w, "general.quantization_version", GGML_QNT_VERSION) ||
        kv_str(w, "baichuan.tensor_data_layout", "Meta AI original pth") ||
        kv_u32(w, "baichuan.context_length", (uint32_t)hp->n_ctx_train) ||
        kv_u32(w, "baichuan.embedding_length", (uint32_t)hp->n_embd) ||
        kv_u32(w, "baichuan.block_count", (uint32_t)hp->n_layer) ||
        kv_u32(w, "baichuan.feed_forward_length", (uint32_t)hp->n_ff) ||
        kv_u32(w, "baichuan.rope.dimension_count", (uint32_t)hp->head_dim) ||
        kv_f32(w, "baichuan.rope.freq_base", hp->rope_theta) ||
        kv_u32(w, "baichuan.attention.head_count", (uint32_t)hp->n_head) ||
        kv_u32(w, "baichuan.attention.head_count_kv", (uint32_t)hp->n_head) ||
        kv_f32(w, "baichuan.attention.layer_norm_rms_epsilon", hp->norm_eps) ||
        /* Our explicit variant: never guessed from the layer count on reading. */
        kv_str(w, "baichuan.position_encoding", bc_pos_encoding_name(hp->pos_encoding)) ||
        kv_bool(w, "baichuan.norm_head", hp->norm_head))
        return -1;
    if (m->is_gguf) return vocab_from_gguf(w);
    char *sp_path = bc__path_join(in_path, "tokenizer.model");
    if (sp_path == NULL) return bc__errorf(w->err, BC_STATUS_ERROR_MEMORY, "out of memory");
    int rc = bc__file_exists(sp_path) ? vocab_from_sp(w, sp_path) : 0;
    free(sp_path);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                     */
/* ------------------------------------------------------------------------ */

/* row += each adapter's update of row `packed` (W_pack's order for Q, K, V)
 * of slot's matrix in layer il. */
static void merge_loras(const writer *w, int il, bc__lora_slot slot, int64_t packed, float *row) {
    for (int k = 0; k < w->n_loras; k++) {
        const bc__lora_mat *m = bc__lora_mat_of(w->loras[k], il, slot);
        if (m != NULL) bc__lora_delta_row(w->loras[k], m, packed, row);
    }
}

/* Row r of tensor p as f32 into row (p->cols floats). */
static void source_row(const writer *w, const planned *p, int64_t r, float *row) {
    const bc_model *m = w->m;
    const bc__hparams *hp = &m->hp;
    const bc__layer *L = p->layer >= 0 ? &m->layers[p->layer] : NULL;
    int64_t E = hp->n_embd, D = hp->head_dim, half = D / 2;
    switch (p->kind) {
    case BC__TENSOR_TOK_EMBD: bc__weight_row_f32(&m->tok_embd, r, row); break;
    case BC__TENSOR_ATTN_NORM: memcpy(row, L->attn_norm, (size_t)E * sizeof(float)); break;
    case BC__TENSOR_FFN_NORM: memcpy(row, L->ffn_norm, (size_t)E * sizeof(float)); break;
    case BC__TENSOR_OUTPUT_NORM: memcpy(row, m->out_norm, (size_t)E * sizeof(float)); break;
    case BC__TENSOR_ATTN_Q:
    case BC__TENSOR_ATTN_K: {
        /* row r in llama.cpp's order is this W_pack row */
        int64_t h = r / D, i = (r % D) / 2, j = r % 2;
        int64_t packed = (p->kind == BC__TENSOR_ATTN_K ? E : 0) + h * D + j * half + i;
        if (L->wqkv.data == NULL) /* a GGUF source: already in llama.cpp's order */
            bc__weight_row_f32(p->kind == BC__TENSOR_ATTN_Q ? &L->wq : &L->wk, r, row);
        else
            bc__weight_row_f32(&L->wqkv, packed, row);
        merge_loras(w, p->layer, BC__LORA_W_PACK, packed, row);
        break;
    }
    case BC__TENSOR_ATTN_V:
        if (L->wqkv.data == NULL)
            bc__weight_row_f32(&L->wv, r, row);
        else
            bc__weight_row_f32(&L->wqkv, 2 * E + r, row);
        merge_loras(w, p->layer, BC__LORA_W_PACK, 2 * E + r, row);
        break;
    case BC__TENSOR_ATTN_OUT:
        bc__weight_row_f32(&L->wo, r, row);
        merge_loras(w, p->layer, BC__LORA_O_PROJ, r, row);
        break;
    case BC__TENSOR_FFN_GATE:
        bc__weight_row_f32(&L->w_gate, r, row);
        merge_loras(w, p->layer, BC__LORA_GATE, r, row);
        break;
    case BC__TENSOR_FFN_UP:
        bc__weight_row_f32(&L->w_up, r, row);
        merge_loras(w, p->layer, BC__LORA_UP, r, row);
        break;
    case BC__TENSOR_FFN_DOWN:
        bc__weight_row_f32(&L->w_down, r, row);
        merge_loras(w, p->layer, BC__LORA_DOWN, r, row);
        break;
    case BC__TENSOR_OUTPUT:
        bc__weight_row_f32(&m->lm_head, r, row);
        /* NormHead: write the normalized head, so that llama.cpp (which does
         * not normalize) computes Baichuan2's logits; normalizing again on
         * load here is harmless. */
        if (m->lm_head_scale)
            for (int64_t c = 0; c < p->cols; c++) row[c] *= m->lm_head_scale[r];
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Write                                                                    */
/* ------------------------------------------------------------------------ */

static int write_all(writer *w, const char *in_path, const char *out_path) {
    bc__err *err = w->err;
    if (make_plan(w) != 0) return -1;
    /* Header: magic, version, counts (n_kv patched in after), metadata, tensor infos. */
    if (put(w, "GGUF", 4) || put_u32(w, 3) || put_u64(w, w->n_tensors) || put_u64(w, 0)) return -1;
    if (make_metadata(w, in_path) != 0) return -1;
    memcpy(w->header.data + 16, &w->n_kv, 8);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const planned *p = &w->tensors[i];
        bool vector = p->rows == 1 && (p->kind == BC__TENSOR_ATTN_NORM || p->kind == BC__TENSOR_FFN_NORM ||
                                       p->kind == BC__TENSOR_OUTPUT_NORM);
        if (put_str(w, p->name, strlen(p->name)) || put_u32(w, vector ? 1 : 2) || put_u64(w, (uint64_t)p->cols) ||
            (!vector && put_u64(w, (uint64_t)p->rows)) ||
            put_u32(w, (uint32_t)bc__dtype_traits_of(p->type)->ggml_type) || put_u64(w, p->offset))
            return -1;
    }
    static const char zeros[ALIGNMENT];
    if (put(w, zeros, (ALIGNMENT - w->header.len % ALIGNMENT) % ALIGNMENT) != 0) return -1;

    char *tmp_path = malloc(strlen(out_path) + 5);
    if (tmp_path == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    sprintf(tmp_path, "%s.tmp", out_path);
    int rc = -1;
    float *row = NULL;
    void *enc = NULL;
    FILE *f = fopen(tmp_path, "wb");
    if (f == NULL) {
        bc__errorf(err, BC_STATUS_ERROR_IO, "%s: cannot open for writing: %s", out_path, strerror(errno));
        goto done;
    }
    int64_t max_cols = w->m->hp.n_ff > w->m->hp.n_embd ? w->m->hp.n_ff : w->m->hp.n_embd;
    row = malloc((size_t)max_cols * sizeof(float));
    enc = malloc((size_t)max_cols * sizeof(float));
    if (row == NULL || enc == NULL) {
        bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
        goto done;
    }
    if (fwrite(w->header.data, 1, w->header.len, f) != w->header.len) goto write_error;
    uint64_t total = 0, done_bytes = 0, pos = 0;
    for (size_t i = 0; i < w->n_tensors; i++) total += w->tensors[i].n_bytes;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const planned *p = &w->tensors[i];
        for (; pos < p->offset; pos++)
            if (fputc(0, f) == EOF) goto write_error;
        uint64_t row_bytes = p->n_bytes / (uint64_t)p->rows;
        for (int64_t r = 0; r < p->rows; r++) {
            source_row(w, p, r, row);
            bc__quantize_row(p->type, row, enc, p->cols); /* p->cols is whole blocks (plan_one) */
            if (fwrite(enc, 1, (size_t)row_bytes, f) != row_bytes) goto write_error;
        }
        pos += p->n_bytes;
        done_bytes += p->n_bytes;
        if (w->params.progress) w->params.progress(w->params.progress_user, done_bytes, total, p->name);
    }
    if (fflush(f) != 0) goto write_error;
    if (fclose(f) != 0) {
        f = NULL;
        goto write_error;
    }
    f = NULL;
    if (rename(tmp_path, out_path) != 0) {
        bc__errorf(err, BC_STATUS_ERROR_IO, "%s: cannot rename %s into place: %s", out_path, tmp_path, strerror(errno));
        goto done;
    }
    rc = 0;
    goto done;
write_error:
    bc__errorf(err, BC_STATUS_ERROR_IO, "%s: write failed: %s", out_path, strerror(errno));
done:
    if (f != NULL) fclose(f);
    if (rc != 0) remove(tmp_path);
    free(tmp_path);
    free(row);
    free(enc);
    return rc;
}

bc_status bc_model_quantize(const char *in_path, const char *out_path, bc_quantize_params params, char *err_buf,
                            size_t err_size) {
    bc__err err = {BC_STATUS_OK, ""};
    if (in_path == NULL || out_path == NULL || (unsigned)params.ftype >= BC_FTYPE_COUNT) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT, "bc_model_quantize: invalid arguments");
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    bc_model *m = NULL;
    /* The writer reads row-major rows: no repacked copies (which would also
     * free the rows of matrices quantized at load). */
    bc_model_params mp = params.model;
    mp.repack = BC_SWITCH_OFF;
    bc_status st = bc_model_load(in_path, mp, &m, err_buf, err_size);
    if (st != BC_STATUS_OK) return st;
    if (params.loaded != NULL) {
        bc_model_info info;
        bc_model_get_info(m, &info);
        params.loaded(params.progress_user, &info);
    }
    writer w;
    memset(&w, 0, sizeof w);
    w.m = m;
    w.params = params;
    w.err = &err;
    if (params.n_loras > 0) {
        w.loras = calloc((size_t)params.n_loras, sizeof *w.loras);
        if (w.loras == NULL) bc__errorf(&err, BC_STATUS_ERROR_MEMORY, "out of memory");
        for (int k = 0; w.loras != NULL && k < params.n_loras; k++, w.n_loras++) {
            float scale = params.lora_scales ? params.lora_scales[k] : 1.0f;
            char lerr[1024];
            bc_status ls = bc_lora_load(m, params.lora_paths[k], scale, &w.loras[k], lerr, sizeof lerr);
            if (ls != BC_STATUS_OK) {
                bc__errorf(&err, ls, "%s", lerr);
                break;
            }
        }
    }
    if (err.status == BC_STATUS_OK) write_all(&w, in_path, out_path);
    for (int k = 0; k < w.n_loras; k++) bc_lora_free(w.loras[k]);
    free(w.loras);
    free(w.tensors);
    free(w.header.data);
    bc_model_free(m);
    bc__err_copy(&err, err_buf, err_size);
    return err.status;
}

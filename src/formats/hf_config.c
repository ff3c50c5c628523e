/*
 * hf_config.c - a Hugging Face model directory's configuration: config.json
 * (with its quantization_config), generation_config.json,
 * tokenizer_config.json and AutoGPTQ's quantize_config.json, read field by
 * field through json_file.h.
 *
 * Variant rules (DESIGN.md):
 *   position encoding  RoPE for BaiChuanForCausalLM; for BaichuanForCausalLM
 *                      RoPE when max_position_embeddings is present, else ALiBi
 *   NormHead           on when vocab_size == 125696 (Baichuan2)
 * An explicit "position_encoding" / "norm_head" key wins over the rules, and a
 * load param wins over both.
 */
#include "formats/hf_config.h"

#include "formats/json_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAICHUAN2_VOCAB 125696
#define MAX_DIM         (1 << 20) /* no plausible hidden/ff/vocab size is larger */
#define MAX_LAYERS      1024

/* ------------------------------------------------------------------------ */
/* config.json                                                              */
/* ------------------------------------------------------------------------ */

static int read_architecture(const bc__json_doc *doc, bc__hparams *hp, bc__err *err) {
    json_t *v = json_object_get(doc->root, "architectures");
    hp->architecture[0] = '\0';
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_array(v) || json_array_size(v) == 0 || !json_is_string(json_array_get(v, 0)))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: field \"architectures\" must be a non-empty array of strings", doc->path);
    const char *a = json_string_value(json_array_get(v, 0));
    if (strlen(a) >= sizeof hp->architecture)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: field \"architectures\": name too long", doc->path);
    strcpy(hp->architecture, a);
    return 0;
}

static int read_model_config(const bc__json_doc *doc, bc_model_params params, bc__hparams *hp, bc__err *err) {
    const char *s;
    if (bc__json_get_string(doc, "model_type", &s, err) != 0) return -1;
    if (s != NULL && strcmp(s, "baichuan") != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: model_type is \"%s\", not \"baichuan\"", doc->path, s);
    if (bc__json_get_string(doc, "hidden_act", &s, err) != 0) return -1;
    if (s != NULL && strcmp(s, "silu") != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: hidden_act \"%s\" is not supported (Baichuan uses \"silu\")",
                          doc->path, s);
    if (read_architecture(doc, hp, err) != 0) return -1;

    if (bc__json_get_int(doc, "vocab_size", 1, 0, 1, MAX_DIM * 4LL, &hp->n_vocab, err) != 0 ||
        bc__json_get_int(doc, "hidden_size", 1, 0, 1, MAX_DIM, &hp->n_embd, err) != 0 ||
        bc__json_get_int(doc, "intermediate_size", 1, 0, 1, MAX_DIM, &hp->n_ff, err) != 0 ||
        bc__json_get_int(doc, "num_hidden_layers", 1, 0, 1, MAX_LAYERS, &hp->n_layer, err) != 0 ||
        bc__json_get_int(doc, "num_attention_heads", 1, 0, 1, MAX_DIM, &hp->n_head, err) != 0)
        return -1;
    if (hp->n_embd % hp->n_head != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                          doc->path, hp->n_embd, hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;

    int max_pos = 0, max_len = 0;
    hp->has_max_position_embeddings = json_object_get(doc->root, "max_position_embeddings") != NULL;
    if (bc__json_get_int(doc, "max_position_embeddings", 0, 0, 1, 1 << 24, &max_pos, err) != 0 ||
        bc__json_get_int(doc, "model_max_length", 0, 0, 1, 1 << 24, &max_len, err) != 0)
        return -1;
    hp->n_ctx_train = max_len ? max_len : max_pos ? max_pos : 4096;

    if (bc__json_get_float(doc, "rms_norm_eps", 1e-6, 0.0, 1.0, &hp->norm_eps, err) != 0 ||
        bc__json_get_float(doc, "rope_theta", 10000.0, 1.0, 1e12, &hp->rope_theta, err) != 0)
        return -1;
    if (bc__json_get_int(doc, "bos_token_id", 0, 1, 0, hp->n_vocab - 1, &hp->bos_token_id, err) != 0 ||
        bc__json_get_int(doc, "eos_token_id", 0, 2, 0, hp->n_vocab - 1, &hp->eos_token_id, err) != 0 ||
        bc__json_get_int(doc, "pad_token_id", 0, 0, 0, hp->n_vocab - 1, &hp->pad_token_id, err) != 0)
        return -1;

    bool tied = false;
    if (bc__json_get_bool(doc, "tie_word_embeddings", false, &tied, NULL, err) != 0) return -1;
    if (tied)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: tie_word_embeddings is true, but Baichuan models have their own lm_head", doc->path);

    /* Position encoding: param > config key > architecture rule. */
    const char *pe;
    if (bc__json_get_string(doc, "position_encoding", &pe, err) != 0) return -1;
    if (params.pos_encoding != BC_POS_ENCODING_AUTO) {
        hp->pos_encoding = params.pos_encoding;
        hp->pos_encoding_explicit = true;
    } else if (pe != NULL) {
        if (strcmp(pe, "rope") == 0)
            hp->pos_encoding = BC_POS_ENCODING_ROPE;
        else if (strcmp(pe, "alibi") == 0)
            hp->pos_encoding = BC_POS_ENCODING_ALIBI;
        else
            return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                              "%s: field \"position_encoding\" is \"%s\"; expected \"rope\" or \"alibi\"", doc->path,
                              pe);
        hp->pos_encoding_explicit = true;
    } else if (strcmp(hp->architecture, "BaiChuanForCausalLM") == 0) {
        hp->pos_encoding = BC_POS_ENCODING_ROPE;
    } else if (strcmp(hp->architecture, "BaichuanForCausalLM") == 0) {
        hp->pos_encoding = hp->has_max_position_embeddings ? BC_POS_ENCODING_ROPE : BC_POS_ENCODING_ALIBI;
    } else {
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: architectures[0] is \"%s\", not BaichuanForCausalLM or BaiChuanForCausalLM; set "
                          "\"position_encoding\" (\"rope\" or \"alibi\") to load it anyway",
                          doc->path, hp->architecture);
    }
    if (hp->pos_encoding == BC_POS_ENCODING_ROPE && hp->head_dim % 2 != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: RoPE needs an even head dimension, got %d", doc->path,
                          hp->head_dim);

    /* NormHead: param > config key > vocabulary rule. */
    bool nh, nh_present;
    if (bc__json_get_bool(doc, "norm_head", false, &nh, &nh_present, err) != 0) return -1;
    if (params.norm_head != BC_SWITCH_AUTO) {
        hp->norm_head = params.norm_head == BC_SWITCH_ON;
        hp->norm_head_explicit = true;
    } else if (nh_present) {
        hp->norm_head = nh;
        hp->norm_head_explicit = true;
    } else {
        hp->norm_head = hp->n_vocab == BAICHUAN2_VOCAB;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* generation_config.json and tokenizer_config.json (both optional)         */
/* ------------------------------------------------------------------------ */

static int read_generation_config(const bc__json_doc *doc, int n_vocab, bc__gen_config *gen, bc__err *err) {
    gen->present = true;
    if (bc__json_get_int(doc, "user_token_id", 0, 195, 0, n_vocab - 1, &gen->user_token_id, err) != 0 ||
        bc__json_get_int(doc, "assistant_token_id", 0, 196, 0, n_vocab - 1, &gen->assistant_token_id, err) != 0 ||
        bc__json_get_int(doc, "max_new_tokens", 0, 2048, 0, 1 << 24, &gen->max_new_tokens, err) != 0 ||
        bc__json_get_float(doc, "temperature", 0.3, 0.0, 100.0, &gen->temperature, err) != 0 ||
        bc__json_get_int(doc, "top_k", 0, 5, 0, n_vocab, &gen->top_k, err) != 0 ||
        bc__json_get_float(doc, "top_p", 0.85, 0.0, 1.0, &gen->top_p, err) != 0 ||
        bc__json_get_float(doc, "repetition_penalty", 1.05, 0.0, 100.0, &gen->repetition_penalty, err) != 0 ||
        bc__json_get_bool(doc, "do_sample", true, &gen->do_sample, NULL, err) != 0)
        return -1;
    return 0;
}

static int read_tokenizer_config(const bc__json_doc *doc, bc__tok_config *tok, bc__err *err) {
    tok->present = true;
    if (bc__json_get_bool(doc, "add_bos_token", false, &tok->add_bos_token, NULL, err) != 0 ||
        bc__json_get_bool(doc, "add_eos_token", false, &tok->add_eos_token, NULL, err) != 0)
        return -1;
    return 0;
}

/* quantization_config (an object in config.json) or quantize_config.json
 * (AutoGPTQ): which published 4-bit layout the weights are in. */
static int read_gptq_fields(const bc__json_doc *doc, bc__quant_config *q, bc__err *err) {
    q->method = BC__QUANT_GPTQ;
    if (bc__json_get_int(doc, "bits", 1, 0, 1, 64, &q->gptq_bits, err) != 0 ||
        bc__json_get_int(doc, "group_size", 0, -1, -1, 1 << 20, &q->gptq_group_size, err) != 0 ||
        bc__json_get_bool(doc, "desc_act", false, &q->gptq_desc_act, NULL, err) != 0 ||
        bc__json_get_bool(doc, "sym", true, &q->gptq_sym, NULL, err) != 0)
        return -1;
    if (q->gptq_bits != 4)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: GPTQ with %d bits is not supported (only 4-bit GPTQ checkpoints can be loaded)",
                          doc->path, q->gptq_bits);
    if (q->gptq_group_size == 0 || q->gptq_group_size < -1)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: GPTQ group_size %d is neither positive nor -1", doc->path,
                          q->gptq_group_size);
    return 0;
}

static int read_quant_config(const bc__json_doc *cfg, bc__quant_config *q, bc__err *err) {
    memset(q, 0, sizeof *q);
    json_t *v = json_object_get(cfg->root, "quantization_config");
    if (v == NULL || json_is_null(v)) return 0;
    char where[512];
    snprintf(where, sizeof where, "%s: quantization_config", cfg->path);
    if (!json_is_object(v))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s must be an object, found %s", where, bc__json_kind(v));
    bc__json_doc doc = {where, v};
    const char *method, *type;
    bool in4 = false, in8 = false;
    if (bc__json_get_string(&doc, "quant_method", &method, err) != 0 ||
        bc__json_get_bool(&doc, "load_in_4bit", false, &in4, NULL, err) != 0 ||
        bc__json_get_bool(&doc, "load_in_8bit", false, &in8, NULL, err) != 0)
        return -1;
    q->source = "config.json";
    if (method != NULL && strcmp(method, "gptq") == 0) return read_gptq_fields(&doc, q, err);
    if (method != NULL && strcmp(method, "bitsandbytes") != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: quant_method \"%s\" is not supported (bitsandbytes 4-bit and GPTQ int4 are)", where,
                          method);
    if (in8 || !in4)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: only 4-bit bitsandbytes checkpoints can be loaded (load_in_4bit is %s, load_in_8bit %s)",
                          where, in4 ? "true" : "false", in8 ? "true" : "false");
    q->method = BC__QUANT_BNB4;
    if (bc__json_get_string(&doc, "bnb_4bit_quant_type", &type, err) != 0 ||
        bc__json_get_bool(&doc, "bnb_4bit_use_double_quant", false, &q->bnb_double_quant, NULL, err) != 0)
        return -1;
    if (type != NULL && strcmp(type, "nf4") != 0 && strcmp(type, "fp4") != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: bnb_4bit_quant_type \"%s\" is neither \"nf4\" nor \"fp4\"",
                          where, type);
    snprintf(q->bnb_quant_type, sizeof q->bnb_quant_type, "%s", type ? type : "");
    return 0;
}

static int gptq_cb(const bc__json_doc *doc, void *arg, bc__err *err) {
    bc__quant_config *q = arg;
    if (q->method != BC__QUANT_NONE) return 0; /* config.json's quantization_config wins */
    q->source = "quantize_config.json";
    return read_gptq_fields(doc, q, err);
}

/* Loads dir/name if it exists and runs fn on it; a missing file is fine. */
static int read_optional(const char *dir, const char *name, int (*fn)(const bc__json_doc *, void *, bc__err *),
                         void *arg, bc__err *err) {
    char *path = bc__path_join(dir, name);
    if (path == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    int rc = 0;
    if (bc__file_exists(path)) {
        bc__json_doc doc;
        rc = bc__json_doc_load(&doc, path, err);
        if (rc == 0) {
            rc = fn(&doc, arg, err);
            json_decref(doc.root);
        }
    }
    free(path);
    return rc;
}

typedef struct gen_arg {
    int n_vocab;
    bc__gen_config *gen;
} gen_arg;

static int gen_cb(const bc__json_doc *doc, void *arg, bc__err *err) {
    gen_arg *g = arg;
    return read_generation_config(doc, g->n_vocab, g->gen, err);
}

static int tok_cb(const bc__json_doc *doc, void *arg, bc__err *err) { return read_tokenizer_config(doc, arg, err); }

void bc__gen_config_defaults(bc__gen_config *gen) {
    memset(gen, 0, sizeof *gen);
    /* Defaults of an absent generation config are the official Chat ones. */
    gen->user_token_id = 195;
    gen->assistant_token_id = 196;
    gen->max_new_tokens = 2048;
    gen->temperature = 0.3f;
    gen->top_k = 5;
    gen->top_p = 0.85f;
    gen->repetition_penalty = 1.05f;
    gen->do_sample = true;
}

int bc__config_read(const char *dir, bc_model_params params, bc__hparams *hp, bc__gen_config *gen, bc__tok_config *tok,
                    bc__err *err) {
    memset(hp, 0, sizeof *hp);
    memset(tok, 0, sizeof *tok);
    bc__gen_config_defaults(gen);

    char *path = bc__path_join(dir, "config.json");
    if (path == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    bc__json_doc doc;
    int rc = bc__json_doc_load(&doc, path, err);
    if (rc == 0) {
        rc = read_model_config(&doc, params, hp, err);
        if (rc == 0) rc = read_quant_config(&doc, &hp->quant, err);
        json_decref(doc.root);
    }
    free(path);
    if (rc != 0) return -1;

    gen_arg g = {hp->n_vocab, gen};
    if (read_optional(dir, "generation_config.json", gen_cb, &g, err) != 0) return -1;
    if (read_optional(dir, "tokenizer_config.json", tok_cb, tok, err) != 0) return -1;
    if (read_optional(dir, "quantize_config.json", gptq_cb, &hp->quant, err) != 0) return -1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* What a tokenizer loaded from a model directory reads                     */
/* ------------------------------------------------------------------------ */

static int ctx_cb(const bc__json_doc *doc, void *arg, bc__err *err) {
    int *n_ctx_train = arg, max_pos = 0, max_len = 0;
    if (bc__json_get_int(doc, "max_position_embeddings", 0, 0, 1, 1 << 24, &max_pos, err) != 0 ||
        bc__json_get_int(doc, "model_max_length", 0, 0, 1, 1 << 24, &max_len, err) != 0)
        return -1;
    *n_ctx_train = max_len ? max_len : max_pos ? max_pos : 4096;
    return 0;
}

int bc__tok_dir_config_read(const char *dir, int n_vocab, bc__tok_config *tok, bc__gen_config *gen, int *n_ctx_train,
                            bc__err *err) {
    gen_arg g = {n_vocab, gen};
    if (read_optional(dir, "tokenizer_config.json", tok_cb, tok, err) != 0 ||
        read_optional(dir, "generation_config.json", gen_cb, &g, err) != 0 ||
        read_optional(dir, "config.json", ctx_cb, n_ctx_train, err) != 0)
        return -1;
    return 0;
}

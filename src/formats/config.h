/*
 * config.h - a model's configuration as its files state it: hyper-parameters
 * and variant, the published quantization layout, generation and tokenizer
 * settings (the types only). Read from a Hugging Face directory's JSON files
 * (hf_config.h) or a GGUF file's metadata (gguf_config.h).
 */
#ifndef BC_CONFIG_H
#define BC_CONFIG_H

#include "base/base.h"

#include <stdbool.h>

/* How the weights of a published quantized checkpoint are stored, from
 * config.json's quantization_config (or AutoGPTQ's quantize_config.json). */
typedef enum bc__quant_method {
    BC__QUANT_NONE = 0,
    BC__QUANT_BNB4, /* bitsandbytes 4-bit (Baichuan2-*-Chat-4bits) */
    BC__QUANT_GPTQ, /* GPTQ int4 (AutoGPTQ layout) */
} bc__quant_method;

typedef struct bc__quant_config {
    bc__quant_method method;
    const char *source;     /* "config.json" or "quantize_config.json", for messages */
    char bnb_quant_type[8]; /* bnb_4bit_quant_type: "nf4" or "fp4" ("" when absent) */
    bool bnb_double_quant;  /* bnb_4bit_use_double_quant */
    int gptq_bits;          /* bits: only 4 is accepted */
    int gptq_group_size;    /* group_size; -1 = one group per column */
    bool gptq_desc_act;     /* desc_act: groups in activation order, through g_idx */
    bool gptq_sym;          /* sym */
} bc__quant_config;

/* Hyper-parameters and variant, from config.json (and the load params). */
typedef struct bc__hparams {
    char architecture[64]; /* architectures[0], "" if absent */
    int n_vocab;           /* vocab_size */
    int n_embd;            /* hidden_size */
    int n_ff;              /* intermediate_size */
    int n_layer;           /* num_hidden_layers */
    int n_head;            /* num_attention_heads */
    int head_dim;          /* n_embd / n_head */
    int n_ctx_train;       /* model_max_length, else max_position_embeddings, else 4096 */
    bool has_max_position_embeddings;
    float norm_eps;                               /* rms_norm_eps, default 1e-6 */
    float rope_theta;                             /* rope_theta, default 10000 */
    int bos_token_id, eos_token_id, pad_token_id; /* defaults 1, 2, 0 */
    bc_pos_encoding pos_encoding;                 /* ROPE or ALIBI, never AUTO after loading */
    bool pos_encoding_explicit;                   /* from a config key or a load param */
    bool norm_head;
    bool norm_head_explicit;
    bc__quant_config quant; /* a published quantized checkpoint's layout */
} bc__hparams;

/* generation_config.json, when present. */
typedef struct bc__gen_config {
    bool present;
    int user_token_id;        /* default 195 */
    int assistant_token_id;   /* default 196 */
    int max_new_tokens;       /* default 2048 */
    float temperature;        /* default 0.3 */
    int top_k;                /* default 5 */
    float top_p;              /* default 0.85 */
    float repetition_penalty; /* default 1.05 */
    bool do_sample;           /* default true */
} bc__gen_config;

/* tokenizer_config.json, when present. */
typedef struct bc__tok_config {
    bool present;
    bool add_bos_token; /* default false */
    bool add_eos_token; /* default false */
} bc__tok_config;

#endif /* BC_CONFIG_H */

/*
 * model.h - the loaded model: hyper-parameters, variant, and weights bound to
 * the tensors of the checkpoint. Shared by the loader, the context and the
 * forward pass; not part of the public API.
 */
#ifndef BC_MODEL_H
#define BC_MODEL_H

#include "gguf.h"
#include "internal.h"

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

/* Reads config.json, then the optional generation_config.json and
 * tokenizer_config.json, from dir. Applies the variant rules of DESIGN.md with
 * params' explicit settings winning. */
BC__HIDDEN int bc__config_read(const char *dir, bc_model_params params, bc__hparams *hp, bc__gen_config *gen,
                               bc__tok_config *tok, bc__err *err);

/* The largest JSON file of a model directory read (config.json, the shard
 * index, ...): the real ones hold kilobytes; a larger file is refused before
 * it is parsed. */
#define BC__JSON_FILE_MAX ((long long)16 << 20)

/* Parses the JSON file at path (duplicate keys refused) into *out, which the
 * caller frees with json_decref. Refuses a file over BC__JSON_FILE_MAX bytes;
 * every error names the file (and the line and column of a syntax error). */
struct json_t;
BC__HIDDEN int bc__json_file_load(const char *path, struct json_t **out, bc__err *err);

/* The defaults of an absent generation_config.json (the official Chat ones). */
BC__HIDDEN void bc__gen_config_defaults(bc__gen_config *gen);

/* Hyper-parameters and variant from a GGUF file's metadata (gguf_config.c):
 * baichuan.* keys, with our explicit baichuan.position_encoding and
 * baichuan.norm_head winning over llama.cpp's rules, and params over both. */
BC__HIDDEN int bc__gguf_config_read(const bc__gguf *g, const bc__tensor_table *t, bc_model_params params,
                                    bc__hparams *hp, bc__err *err);

/* Reads the weights of the Hugging Face checkpoint in dir into t; sets the
 * container format and the number of weight files. */
BC__HIDDEN int bc__checkpoint_read(bc__tensor_table *t, const char *dir, bc_file_format *format, int *n_files,
                                   bc__err *err);

/* Runs fn(arg) on one thread per CPU (at most 64), the caller's among them;
 * fn takes its work from arg until none is left. Fewer threads if some
 * cannot be started. For the load-time conversions (model.c). */
BC__HIDDEN void bc__run_on_all_cpus(void *(*fn)(void *), void *arg);

/* Matrix `name` ("<prefix>.weight") of a published 4-bit checkpoint. When
 * the table holds it in the converter's layout instead of as one tensor,
 * the converter checks it against (rows, cols) and m->hp.quant, converts it
 * into an owned copy of our blocks at w (w->owned == w->data, perm for GPTQ
 * desc_act), sets used[] for the tensors it read, adds to m's counts
 * (n_params, weight_bytes as stored, dtype_counts, n_converted,
 * converted_bytes, quantization), and returns 1; returns 0 when the table
 * holds none of its tensors; -1 with err naming the file and tensor.
 *   bc__bnb4_bind  "<name>.data" + "<name>.quant_state.*"   (bnb4.c)
 *   bc__gptq_bind  "<prefix>.qweight", ".qzeros", ".scales", ".g_idx"  (gptq.c) */
struct bc__weight;
BC__HIDDEN int bc__bnb4_bind(struct bc_model *m, bool *used, const char *name, int64_t rows, int64_t cols,
                             struct bc__weight *w, bc__err *err);
BC__HIDDEN int bc__gptq_bind(struct bc_model *m, bool *used, const char *name, int64_t rows, int64_t cols,
                             struct bc__weight *w, bc__err *err);

/* A weight matrix (rows, cols), row-major, in its stored dtype. Vectors are
 * matrices with one row. */
typedef struct bc__weight {
    const void *data;
    bc_dtype dtype;
    int64_t rows, cols;
    const char *name;                   /* the checkpoint's tensor name (owned by the table) */
    void *packed;                       /* NULL, or the same rows interleaved in layout `pack` by
                                         * bc__weight_repack (kernels/kernels.h), owned by the
                                         * weight's owner; data stays the row-major original for
                                         * every other use */
    const struct bc__pack_layout *pack; /* the layout of packed, NULL without */
    void *owned;                        /* NULL, or data when it is a heap copy made at load
                                         * (bc_model_params.quantize, or a 4-bit checkpoint's
                                         * blocks), owned by the model */
    int32_t *perm;                      /* NULL, or (cols) the column order of data: column k
                                         * of the stored rows multiplies activation perm[k]
                                         * (GPTQ with desc_act); owned by the model */
} bc__weight;

typedef struct bc__layer {
    const float *attn_norm; /* (n_embd) input_layernorm, as f32 */
    bc__weight wqkv;        /* (3*n_embd, n_embd) W_pack: Q rows, then K, then V;
                             * data NULL when the file splits them (GGUF) */
    bc__weight wq, wk, wv;  /* (n_embd, n_embd) each, GGUF only: Q and K rows in
                             * llama.cpp's interleaved RoPE order (see forward.c) */
    bc__weight wo;          /* (n_embd, n_embd) o_proj */
    const float *ffn_norm;  /* (n_embd) post_attention_layernorm, as f32 */
    bc__weight w_gate;      /* (n_ff, n_embd) */
    bc__weight w_up;        /* (n_ff, n_embd) */
    bc__weight w_down;      /* (n_embd, n_ff) */
} bc__layer;

struct bc_model {
    char *path;
    bc__hparams hp;
    bc__gen_config gen;
    bc__tok_config tok;

    bc__tensor_table table; /* owns the mappings all weights point into */
    bool is_gguf;
    bc__gguf gguf; /* the GGUF metadata, when is_gguf */
    bc_file_format format;
    int n_files;

    bc__weight tok_embd;   /* (n_vocab, n_embd) */
    bc__layer *layers;     /* (n_layer) */
    const float *out_norm; /* (n_embd) model.norm, as f32 */
    bc__weight lm_head;    /* (n_vocab, n_embd) as stored (not normalized) */
    float *lm_head_scale;  /* (n_vocab) 1 / max(|row|, 1e-12) with NormHead, else NULL */
    float *alibi_slopes;   /* (n_head) with ALiBi, else NULL */
    double *rope_inv_freq; /* (head_dim/2) theta^(-2i/head_dim) with RoPE, else NULL */

    float *f32_vectors; /* owned storage of the f32 norm vectors above */

    int64_t n_params;
    uint64_t weight_bytes;
    uint64_t repacked_bytes;    /* bytes of the weights' repacked copies */
    uint64_t released_bytes;    /* bytes of stored weights whose pages were released for them
                                 * (or for the copies quantized at load) */
    bc_ftype quantized_at_load; /* params.quantize; BC_FTYPE_COUNT when not used */
    uint64_t quantized_bytes;   /* bytes of the copies quantized at load still held (repacked ones are freed) */
    int n_quantized;            /* matrices converted at load */
    char quantization[256];     /* a 4-bit checkpoint's layout in words, "" for others */
    uint64_t converted_bytes;   /* bytes of the block copies a 4-bit checkpoint was converted to */
    int n_converted;            /* matrices converted from a 4-bit checkpoint's layout */
    int dtype_counts[BC_DTYPE_COUNT];
    int n_ignored_tensors;
};

#endif /* BC_MODEL_H */

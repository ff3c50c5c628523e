/*
 * model.h - the loaded model: hyper-parameters, variant, and weights bound to
 * the tensors of the checkpoint. Header-only: the type that the loader
 * (load.c) and its parts (quantize_at_load.c, repack.c, derived.c,
 * matrices.c) build, and the context, the forward pass and the GGUF writer
 * read; not part of the public API.
 */
#ifndef BC_MODEL_H
#define BC_MODEL_H

#include "formats/config.h"
#include "formats/gguf.h"
#include "kernels/weight.h"

#include <stdbool.h>

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

/*
 * ftype.h - what a bc_ftype stores: the ggml type of each tensor, by
 * llama.cpp's rules (llama_tensor_get_type for these ftypes). One rule for
 * the GGUF writer (bc_model_quantize) and for quantizing at load
 * (bc_model_params.quantize), so that both hold the same bytes.
 */
#ifndef BC_FTYPE_H
#define BC_FTYPE_H

#include "base/base.h"

/* What a tensor is, in llama.cpp's GGUF names. */
typedef enum bc__tensor_kind {
    BC__TENSOR_TOK_EMBD,    /* token_embd */
    BC__TENSOR_ATTN_NORM,   /* blk.N.attn_norm (vector) */
    BC__TENSOR_ATTN_Q,      /* blk.N.attn_q */
    BC__TENSOR_ATTN_K,      /* blk.N.attn_k */
    BC__TENSOR_ATTN_V,      /* blk.N.attn_v */
    BC__TENSOR_ATTN_OUT,    /* blk.N.attn_output */
    BC__TENSOR_FFN_NORM,    /* blk.N.ffn_norm (vector) */
    BC__TENSOR_FFN_GATE,    /* blk.N.ffn_gate */
    BC__TENSOR_FFN_UP,      /* blk.N.ffn_up */
    BC__TENSOR_FFN_DOWN,    /* blk.N.ffn_down */
    BC__TENSOR_OUTPUT_NORM, /* output_norm (vector) */
    BC__TENSOR_OUTPUT,      /* output (the lm_head) */
} bc__tensor_kind;

/* The default type of a matrix under ft (q4_K for q4_k_m). */
BC__HIDDEN bc_dtype bc__ftype_base(bc_ftype ft);

/* llama.cpp's llama_ftype value for ft (general.file_type). */
BC__HIDDEN int bc__ftype_llama(bc_ftype ft);

/* The type under ft of a tensor of kind `kind` in layer il (-1 outside the
 * layers) of n_layer, with rows of ne0 elements: f32 for the norm vectors,
 * llama.cpp's _M mixes and its fallbacks for rows that are not whole k-blocks
 * for the matrices. Returns 0, or -1 when no type fits the row (a 32-block
 * type and a row that is not whole blocks). */
BC__HIDDEN int bc__ftype_tensor_type(bc_ftype ft, bc__tensor_kind kind, int il, int n_layer, int64_t ne0,
                                     bc_dtype *out);

#endif /* BC_FTYPE_H */

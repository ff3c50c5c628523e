/*
 * ftype.c - bc_ftype names and the type of each tensor under them (see
 * ftype.h).
 */
#include "quant/ftype.h"

#include <strings.h>

/* llama_ftype values (llama.h), written as general.file_type. */
enum {
    LLAMA_FTYPE_ALL_F32 = 0,
    LLAMA_FTYPE_MOSTLY_F16 = 1,
    LLAMA_FTYPE_MOSTLY_Q4_0 = 2,
    LLAMA_FTYPE_MOSTLY_Q4_1 = 3,
    LLAMA_FTYPE_MOSTLY_Q8_0 = 7,
    LLAMA_FTYPE_MOSTLY_Q5_0 = 8,
    LLAMA_FTYPE_MOSTLY_Q5_1 = 9,
    LLAMA_FTYPE_MOSTLY_Q4_K_M = 15,
    LLAMA_FTYPE_MOSTLY_Q5_K_M = 17,
    LLAMA_FTYPE_MOSTLY_Q6_K = 18,
    LLAMA_FTYPE_MOSTLY_BF16 = 32,
};

typedef struct ftype_info {
    const char *name;
    bc_dtype base; /* the default type of a matrix */
    int llama_ftype;
    bool quantized;
} ftype_info;

static const ftype_info ftypes[BC_FTYPE_COUNT] = {
    [BC_FTYPE_F32] = {"f32", BC_DTYPE_F32, LLAMA_FTYPE_ALL_F32, false},
    [BC_FTYPE_F16] = {"f16", BC_DTYPE_F16, LLAMA_FTYPE_MOSTLY_F16, false},
    [BC_FTYPE_BF16] = {"bf16", BC_DTYPE_BF16, LLAMA_FTYPE_MOSTLY_BF16, false},
    [BC_FTYPE_Q8_0] = {"q8_0", BC_DTYPE_Q8_0, LLAMA_FTYPE_MOSTLY_Q8_0, true},
    [BC_FTYPE_Q4_0] = {"q4_0", BC_DTYPE_Q4_0, LLAMA_FTYPE_MOSTLY_Q4_0, true},
    [BC_FTYPE_Q4_1] = {"q4_1", BC_DTYPE_Q4_1, LLAMA_FTYPE_MOSTLY_Q4_1, true},
    [BC_FTYPE_Q5_0] = {"q5_0", BC_DTYPE_Q5_0, LLAMA_FTYPE_MOSTLY_Q5_0, true},
    [BC_FTYPE_Q5_1] = {"q5_1", BC_DTYPE_Q5_1, LLAMA_FTYPE_MOSTLY_Q5_1, true},
    [BC_FTYPE_Q4_K_M] = {"q4_k_m", BC_DTYPE_Q4_K, LLAMA_FTYPE_MOSTLY_Q4_K_M, true},
    [BC_FTYPE_Q5_K_M] = {"q5_k_m", BC_DTYPE_Q5_K, LLAMA_FTYPE_MOSTLY_Q5_K_M, true},
    [BC_FTYPE_Q6_K] = {"q6_k", BC_DTYPE_Q6_K, LLAMA_FTYPE_MOSTLY_Q6_K, true},
};

const char *bc_ftype_name(bc_ftype ftype) { return (unsigned)ftype < BC_FTYPE_COUNT ? ftypes[ftype].name : "?"; }

bool bc_ftype_from_name(const char *name, bc_ftype *out) {
    for (int i = 0; i < BC_FTYPE_COUNT; i++)
        if (strcasecmp(name, ftypes[i].name) == 0) {
            *out = (bc_ftype)i;
            return true;
        }
    return false;
}

bc_dtype bc__ftype_base(bc_ftype ft) { return ftypes[ft].base; }

int bc__ftype_llama(bc_ftype ft) { return ftypes[ft].llama_ftype; }

static bool block_fits(bc_dtype t, int64_t ne0) { return ne0 % bc__dtype_traits_of(t)->block_elems == 0; }

/* llama.cpp's use_more_bits: the first and last eighths and every third layer between. */
static bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

/* llama_tensor_get_type for a non-GQA, non-MoE, non-Falcon model. */
int bc__ftype_tensor_type(bc_ftype ft, bc__tensor_kind kind, int il, int n_layer, int64_t ne0, bc_dtype *out) {
    if (kind == BC__TENSOR_ATTN_NORM || kind == BC__TENSOR_FFN_NORM || kind == BC__TENSOR_OUTPUT_NORM) {
        *out = BC_DTYPE_F32;
        return 0;
    }
    bc_dtype base = ftypes[ft].base, t = base;
    if (ftypes[ft].quantized) {
        if (kind == BC__TENSOR_OUTPUT) {
            if (!block_fits(base, ne0))
                t = BC_DTYPE_Q8_0;
            else if (base != BC_DTYPE_Q8_0)
                t = BC_DTYPE_Q6_K;
        } else if (kind == BC__TENSOR_ATTN_V || kind == BC__TENSOR_FFN_DOWN) {
            if ((ft == BC_FTYPE_Q4_K_M || ft == BC_FTYPE_Q5_K_M) && use_more_bits(il, n_layer)) t = BC_DTYPE_Q6_K;
        }
        if (!block_fits(t, ne0)) { /* llama.cpp's fallbacks for rows that are not whole k-blocks */
            switch (t) {
            case BC_DTYPE_Q4_K: t = BC_DTYPE_Q5_0; break;
            case BC_DTYPE_Q5_K: t = BC_DTYPE_Q5_1; break;
            case BC_DTYPE_Q6_K: t = BC_DTYPE_Q8_0; break;
            default: return -1;
            }
            if (!block_fits(t, ne0)) t = BC_DTYPE_F16;
        }
    }
    *out = t;
    return 0;
}

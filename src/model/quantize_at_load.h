/*
 * quantize_at_load.h - bc_model_params.quantize: the model's matrices
 * converted at load into the types the GGUF writer would give them.
 */
#ifndef BC_QUANTIZE_AT_LOAD_H
#define BC_QUANTIZE_AT_LOAD_H

#include "model/model.h"

/* Converts every matrix of m (bound, not yet repacked) to its type under
 * m->quantized_at_load (the head to head_type unless that is
 * BC_DTYPE_COUNT), on all CPUs, into heap copies that replace the stored
 * ones (W_pack split into wq, wk, wv; wqkv zeroed), and updates m's
 * quantized_bytes, n_quantized, released_bytes and converted_bytes. Leaves
 * m->lm_head_scale NULL. Returns 0, or -1 with err set (a dtype or shape it
 * cannot convert, no memory). */
BC__HIDDEN int bc__model_quantize_at_load(bc_model *m, bc_dtype head_type, bc__err *err);
/* The same for the lm_head alone, to type (bc_model_params.head_type): from
 * its stored rows (f32, f16, bf16 or a 4-bit checkpoint's blocks), the
 * NormHead head normalized first. */
BC__HIDDEN int bc__model_quantize_head(bc_model *m, bc_dtype type, bc__err *err);

#endif /* BC_QUANTIZE_AT_LOAD_H */

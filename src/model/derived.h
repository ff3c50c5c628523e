/*
 * derived.h - what the model computes once at load from its weights and
 * hyper-parameters: the NormHead row scales, the ALiBi slopes, the RoPE
 * frequencies.
 */
#ifndef BC_DERIVED_H
#define BC_DERIVED_H

#include "model/model.h"

/* NormHead: m->lm_head_scale (n_vocab) = 1 / max(|row|, 1e-12) of each row
 * of m->lm_head, a new malloc'd array (the caller frees a previous one).
 * Returns 0, or -1 with err set when out of memory. */
BC__HIDDEN int bc__model_head_scale(bc_model *m, bc__err *err);

/* m->alibi_slopes (n_head) with ALiBi, else m->rope_inv_freq (head_dim/2).
 * Returns 0, or -1 with err set when out of memory. */
BC__HIDDEN int bc__model_position_tables(bc_model *m, bc__err *err);

#endif /* BC_DERIVED_H */

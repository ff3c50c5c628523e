/*
 * repack.h - repacked copies of the model's matrices in the interleaved
 * layouts of this CPU's kernels (kernels/kernels.h), made once at load.
 */
#ifndef BC_MODEL_REPACK_H
#define BC_MODEL_REPACK_H

#include "model/model.h"

/* Repacks every matrix that has a layout for this CPU's kernels, unless
 * repack is BC_SWITCH_OFF, on all CPUs, and updates m's repacked_bytes,
 * released_bytes, quantized_bytes and converted_bytes. The stored pages of a
 * mapped matrix are released; the heap copy of a matrix quantized at load or
 * converted from a 4-bit checkpoint is freed (data NULL). Never fails: a
 * matrix left without a copy is read row-major. */
BC__HIDDEN void bc__model_repack(bc_model *m, bc_switch repack);

#endif /* BC_MODEL_REPACK_H */

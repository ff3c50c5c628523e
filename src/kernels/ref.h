/*
 * ref.h - the portable C kernels, one per dtype: what every CPU runs
 * without AVX2, and the spec the SIMD kernels are tested against.
 */
#ifndef BC_REF_H
#define BC_REF_H

#include "kernels/kernel_types.h"

/* The C row kernel of each dtype (never NULL for a dtype < BC_DTYPE_COUNT);
 * each reads the activation format bc__act_kind gives its dtype. */
BC__HIDDEN extern const bc__dot_fn bc__dot_c[BC_DTYPE_COUNT];

#endif /* BC_REF_H */

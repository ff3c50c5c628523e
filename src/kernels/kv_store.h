/*
 * kv_store.h - one row of keys or values into the KV pool, converted to the
 * cache type (kv_store.c).
 */
#ifndef BC_KV_STORE_H
#define BC_KV_STORE_H

#include "base/base.h"

/* One row of n keys or values into the KV pool as type (f32, f16, q8_0). */
BC__HIDDEN void bc__kv_store_row(bc_dtype type, const float *src, void *dst, int64_t n);

#endif /* BC_KV_STORE_H */

/*
 * repack.h - a weight's copy in the interleaved layout of this CPU's
 * kernels (bc__pack_layout, kernel_types.h), made at load; the matmul reads
 * it in place of the row-major data.
 */
#ifndef BC_REPACK_H
#define BC_REPACK_H

#include "kernels/kernel_types.h"
#include "kernels/weight.h"

/* Whether w gets a repacked copy at the current level: a layout at or below
 * it whose group divides w's rows (bc__pack_layout_for), and cols of whole
 * blocks of the dtype. */
BC__HIDDEN bool bc__pack_supported(const bc__weight *w);
/* Makes w's repacked copy for the current level: a new 64-aligned buffer at
 * w->packed (huge pages for large ones) and its layout at w->pack. Returns
 * false, with w unchanged, when w has no layout or memory ran out (the
 * matmul then reads w->data as before). */
BC__HIDDEN bool bc__weight_repack(bc__weight *w);
/* The same with one thread per CPU over the groups of w (a matrix repacked
 * as soon as it is converted, before the next one is). */
BC__HIDDEN bool bc__weight_repack_all_cpus(bc__weight *w);
/* Frees w's repacked copy, if any, and clears w->packed and w->pack. */
BC__HIDDEN void bc__weight_repack_free(bc__weight *w);
/* Bytes of w's repacked copy (0 when it has none). */
BC__HIDDEN size_t bc__repack_bytes(const bc__weight *w);

#endif /* BC_REPACK_H */

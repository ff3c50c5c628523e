/*
 * isa.h - the instruction-set level the kernels run at: the best one this
 * CPU has (asked once, at run time: no -march flag needed), unless a test
 * or a benchmark forces a lower one.
 */
#ifndef BC_ISA_H
#define BC_ISA_H

#include "kernels/kernel_types.h"

/* The best level this CPU supports. */
BC__HIDDEN bc__isa bc__kernels_detect(void);
/* The level in use: the detected one unless forced. */
BC__HIDDEN bc__isa bc__kernels_isa(void);
/* Forces the kernels to a level (clamped to the detected one), or back to the
 * detected level with -1. For tests and benchmarks; not thread-safe against
 * running matmuls. Returns the level now in use. */
BC__HIDDEN bc__isa bc__kernels_force(int level);
BC__HIDDEN const char *bc__isa_name(bc__isa isa);
/* Whether the CPU has AVX512_BF16 (vdpbf16ps), whatever the level in use. */
BC__HIDDEN bool bc__cpu_has_avx512_bf16(void);

#endif /* BC_ISA_H */

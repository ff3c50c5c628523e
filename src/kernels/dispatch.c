/*
 * dispatch.c - the kernel of a dtype at a level (see dispatch.h), from the
 * tables of the SIMD files and ref.c's C kernels.
 */
#include "kernels/dispatch.h"

#include "kernels/avx2_half.h"
#include "kernels/avx512_half.h"
#include "kernels/isa.h"
#include "kernels/ref.h"
#include "kernels/x86.h"

bc__dot_fn bc__dot_kernel(bc_dtype dtype, bc__isa isa) {
    if ((unsigned)dtype >= BC_DTYPE_COUNT) return NULL;
    if (isa >= BC__ISA_AVX512 && bc__dot_avx512[dtype]) return bc__dot_avx512[dtype];
    if (isa >= BC__ISA_AVX2 && bc__dot_avx2[dtype]) return bc__dot_avx2[dtype];
    return bc__dot_c[dtype];
}

bc__gemm4_fn bc__gemm4_kernel(bc_dtype dtype, bc__isa isa) {
    if ((unsigned)dtype >= BC_DTYPE_COUNT) return NULL;
    if (isa >= BC__ISA_AVX512 && bc__gemm4_avx512[dtype]) return bc__gemm4_avx512[dtype];
    if (isa >= BC__ISA_AVX512 && bc__gemm4_avx512_half[dtype]) return bc__gemm4_avx512_half[dtype];
    if (isa >= BC__ISA_AVX2) return bc__gemm4_avx2[dtype];
    return NULL;
}

const bc__pack_layout *bc__pack_layout_of(bc_dtype dtype, bc__isa isa) {
    if ((unsigned)dtype >= BC_DTYPE_COUNT) return NULL;
    if (isa >= BC__ISA_AVX512 && bc__pack_avx512[dtype]) return bc__pack_avx512[dtype];
    if (isa >= BC__ISA_AVX2 && bc__pack_avx2[dtype]) return bc__pack_avx2[dtype];
    return NULL;
}

const bc__pack_layout *bc__pack_layout_for(bc_dtype dtype, bc__isa isa, int64_t rows) {
    for (int level = (int)isa; level > BC__ISA_C; level--) {
        const bc__pack_layout *l = bc__pack_layout_of(dtype, (bc__isa)level);
        if (l == NULL) return NULL;
        if (rows > 0 && rows % l->rows == 0) return l;
        level = (int)l->isa; /* the next try is the level below this layout's */
    }
    return NULL;
}

bool bc__kernels_bf16(void) {
    if (bc__kernels_isa() < BC__ISA_AVX512 || bc__gemm4_bf16_act_bf16 == NULL) return false;
    return bc__cpu_has_avx512_bf16();
}

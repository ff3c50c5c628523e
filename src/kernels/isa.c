/*
 * isa.c - the instruction-set level of the kernels (see isa.h): CPU feature
 * detection, and the level a test or benchmark forced.
 */
#include "kernels/isa.h"

#include <stdatomic.h>

static atomic_int forced_isa = -1;

bc__isa bc__kernels_detect(void) {
    /* Only where the x86 kernels are built (x86.c): a level reported is a
     * level whose kernels run. */
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return BC__ISA_C;
    /* F16C has no __builtin_cpu_supports name in older compilers; every AVX2
     * CPU made has it. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni"))
        return BC__ISA_AVX512;
    return BC__ISA_AVX2;
#else
    return BC__ISA_C;
#endif
}

bc__isa bc__kernels_isa(void) {
    static atomic_int detected = -1;
    int d = atomic_load(&detected);
    if (d < 0) {
        d = (int)bc__kernels_detect();
        atomic_store(&detected, d);
    }
    int f = atomic_load(&forced_isa);
    return (bc__isa)(f >= 0 && f < d ? f : d);
}

bc__isa bc__kernels_force(int level) {
    atomic_store(&forced_isa, level);
    return bc__kernels_isa();
}

const char *bc_kernel_level(void) { return bc__isa_name(bc__kernels_isa()); }

const char *bc__isa_name(bc__isa isa) {
    switch (isa) {
    case BC__ISA_C: return "c";
    case BC__ISA_AVX2: return "avx2";
    case BC__ISA_AVX512: return "avx512";
    default: return "?";
    }
}

bool bc__cpu_has_avx512_bf16(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    /* CPUID leaf 7 sub-leaf 1, EAX bit 5: AVX512_BF16 (no __builtin_cpu_supports
     * name for it in gcc 12). Asked once: CPUID traps to the hypervisor. */
    static atomic_int has = -1;
    int h = atomic_load(&has);
    if (h < 0) {
        unsigned eax = 7, ebx, ecx = 1, edx;
        __asm__("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
        h = (int)((eax >> 5) & 1);
        atomic_store(&has, h);
    }
    return h != 0;
#else
    return false;
#endif
}

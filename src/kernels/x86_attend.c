/*
 * x86_attend.c - the x86 part kernels of tiled attention (x86_attend.h):
 * the template x86_attend_tmpl.h at 8 lanes (AVX2) and 16 (AVX-512). Every
 * function carries a target attribute, so the file builds without any -m
 * flag and the code only runs after isa.c has checked the CPU.
 */
#include "kernels/x86_attend.h"

#include "quant/blocks.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#include "kernels/x86_common.h"

#define ATT_W      8
#define ATT_SFX    avx2
#define ATT_TARGET T_AVX2
#include "kernels/x86_attend_tmpl.h"
#undef ATT_W
#undef ATT_SFX
#undef ATT_TARGET

#define ATT_W      16
#define ATT_SFX    avx512
#define ATT_TARGET T_AVX512
#include "kernels/x86_attend_tmpl.h"
#undef ATT_W
#undef ATT_SFX
#undef ATT_TARGET

#endif

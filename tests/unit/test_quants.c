/*
 * test_quants.c - the block formats of quants.c: dequantize of hand-built
 * blocks against values worked out by hand from the layout, quantize ->
 * dequantize round trips within stated bounds, odd sizes, the f16/bf16
 * conversions, and (when tests/data/ggml_golden.bin is present) bytes and
 * values written by llama.cpp's own quantizer.
 *
 * Round-trip bounds, per 32-weight block with amax = max |x|, and
 * [min, max] the block's range (f16 rounding of the scales included):
 *   q8_0  |err| <= 0.57 * amax / 127   (half a step, plus 127 * d * 2^-11 from d in f16)
 *   q4_0  |err| <= 1.01 * amax / 8     (the side opposite the signed max clamps at 7)
 *   q5_0  |err| <= 1.01 * amax / 16
 *   q4_1  |err| <= 0.51 * (max - min) / 15 + 2^-10 * (|min| + |max|)
 *   q5_1  |err| <= 0.51 * (max - min) / 31 + 2^-10 * (|min| + |max|)
 * K formats, over a row of N(0,1) values, rms(err) / rms(x) at most
 *   q4_K 0.10, q5_K 0.05, q6_K 0.025 (llama.cpp's own figures are ~0.08,
 *   ~0.04, ~0.02), and per sub-block |err| <= 1.5 * range / nmax (range =
 *   max - min(min, 0), or 2 * amax for q6_K; above half a step because the
 *   sub-block scales themselves are quantized to 6 or 8 bits).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quants.h"
#include "quant/blocks.h"

/* A fixed pseudo-random sequence (xorshift64*), uniform in [-1, 1). */
static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s ? s : 1; }
static float rng_uniform(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 2685821657736338717ULL;
    return (float)((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
/* Approximately N(0, 1): sum of 4 uniforms, scaled. */
static float rng_normal(void) {
    float s = 0;
    for (int i = 0; i < 4; i++) s += rng_uniform();
    return s * 0.8660254f;
}

static int setup(void **state) {
    (void)state;
    bc__f16_init();
    return 0;
}

static const bc_dtype all_dtypes[] = {BC_DTYPE_F32,  BC_DTYPE_F16,  BC_DTYPE_BF16, BC_DTYPE_Q8_0,
                                      BC_DTYPE_Q4_0, BC_DTYPE_Q4_1, BC_DTYPE_Q5_0, BC_DTYPE_Q5_1,
                                      BC_DTYPE_Q4_K, BC_DTYPE_Q5_K, BC_DTYPE_Q6_K};
#define N_DTYPES (sizeof all_dtypes / sizeof all_dtypes[0])

/* ------------------------------------------------------------------------ */
/* Half precision                                                           */
/* ------------------------------------------------------------------------ */

static void test_f16_conversion(void **state) {
    (void)state;
    assert_int_equal(bc__f32_to_f16(1.0f), 0x3C00);
    assert_int_equal(bc__f32_to_f16(-2.0f), 0xC000);
    assert_int_equal(bc__f32_to_f16(0.5f), 0x3800);
    assert_int_equal(bc__f32_to_f16(65504.0f), 0x7BFF);
    assert_int_equal(bc__f32_to_f16(65520.0f), 0x7C00);      /* rounds up to inf */
    assert_int_equal(bc__f32_to_f16(5.9604645e-8f), 0x0001); /* smallest subnormal */
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1). */
    assert_int_equal(bc__f32_to_f16(1.0f + 0x1p-11f), 0x3C00);
    assert_int_equal(bc__f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);
    assert_true((bc__f32_to_f16(NAN) & 0x7C00) == 0x7C00 && (bc__f32_to_f16(NAN) & 0x03FF) != 0);
    /* Every finite half survives the round trip. */
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        assert_int_equal(bc__f32_to_f16(bc__f16_to_f32((uint16_t)h)), h);
    }
    assert_int_equal(bc__f32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(bc__f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);     /* tie to even */
    assert_int_equal(bc__f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82); /* tie to even, up */
    assert_true((bc__f32_to_bf16(NAN) & 0x7F80) == 0x7F80 && (bc__f32_to_bf16(NAN) & 0x7F) != 0);
}

/* ------------------------------------------------------------------------ */
/* Hand-built blocks                                                        */
/* ------------------------------------------------------------------------ */

static void dequant(bc_dtype t, const void *blk, float *out, int64_t n) {
    assert_int_equal(bc__dequantize_row(t, blk, out, n), 0);
}

static void test_hand_q8_0(void **state) {
    (void)state;
    bc__block_q8_0 b = {0x4000, {0}}; /* d = 2 */
    b.qs[3] = -5;
    b.qs[31] = 127;
    float y[32];
    dequant(BC_DTYPE_Q8_0, &b, y, 32);
    assert_true(y[3] == -10.0f && y[31] == 254.0f && y[0] == 0.0f);
}

static void test_hand_q4(void **state) {
    (void)state;
    float y[32];
    bc__block_q4_0 a = {0x3800, {0}}; /* d = 0.5; all nibbles 0 -> -8 * 0.5 */
    a.qs[0] = 0x9F;                   /* w0 = (15-8)*0.5, w16 = (9-8)*0.5 */
    dequant(BC_DTYPE_Q4_0, &a, y, 32);
    assert_true(y[0] == 3.5f && y[16] == 0.5f && y[1] == -4.0f && y[31] == -4.0f);

    bc__block_q4_1 b = {0x3400, 0xBC00, {0}}; /* d = 0.25, m = -1 */
    b.qs[1] = 0x3C;                           /* w1 = 12*0.25 - 1, w17 = 3*0.25 - 1 */
    dequant(BC_DTYPE_Q4_1, &b, y, 32);
    assert_true(y[1] == 2.0f && y[17] == -0.25f && y[0] == -1.0f);
}

static void test_hand_q5(void **state) {
    (void)state;
    float y[32];
    bc__block_q5_0 a = {0x3C00, {0}, {0}}; /* d = 1 */
    /* qh as a little-endian u32: bit 0 (weight 0) and bit 17 (weight 17). */
    a.qh[0] = 0x01;
    a.qh[2] = 0x02;
    a.qs[0] = 0x21; /* w0 low nibble 1, w16 high nibble 2 */
    dequant(BC_DTYPE_Q5_0, &a, y, 32);
    assert_true(y[0] == 1.0f);    /* (1 | 16) - 16 */
    assert_true(y[16] == -14.0f); /* 2 - 16 */
    assert_true(y[17] == 0.0f);   /* (0 | 16) - 16 */
    assert_true(y[1] == -16.0f);  /* 0 - 16 */

    bc__block_q5_1 b = {0x3800, 0x4200, {0}, {0}}; /* d = 0.5, m = 3 */
    b.qh[3] = 0x80;                                /* bit 31: weight 31 */
    b.qs[15] = 0xF7;                               /* w15 = 7, w31 = 15 | 16 */
    dequant(BC_DTYPE_Q5_1, &b, y, 32);
    assert_true(y[15] == 6.5f && y[31] == 18.5f && y[0] == 3.0f);
}

/* Sub-block 0: scale 3, min 2; sub-block 5: scale 37, min 50 (6-bit values
 * split into a nibble in byte 9 and two top bits in bytes 1 and 5). */
static void set_k_scales(uint8_t *s) {
    memset(s, 0, 12);
    s[0] = 3;
    s[4] = 2;
    s[9] = (37 & 0xF) | ((50 & 0xF) << 4);
    s[1] |= (37 >> 4) << 6;
    s[5] |= (50 >> 4) << 6;
}

static void test_hand_q4_K(void **state) {
    (void)state;
    bc__block_q4_K b;
    memset(&b, 0, sizeof b);
    b.d = 0x3C00;    /* 1 */
    b.dmin = 0x3800; /* 0.5 */
    set_k_scales(b.scales);
    uint8_t sc, m;
    bc__k_scale_min(5, b.scales, &sc, &m);
    assert_int_equal(sc, 37);
    assert_int_equal(m, 50);
    b.qs[0] = 0x07;  /* weight 0: sub-block 0, q 7 */
    b.qs[66] = 0xA0; /* weight 128+32+2 = 162: high nibble of qs[64+2], sub-block 5, q 10 */
    float y[256];
    dequant(BC_DTYPE_Q4_K, &b, y, 256);
    assert_true(y[0] == 3.0f * 7 - 0.5f * 2);
    assert_true(y[2] == -1.0f);
    assert_true(y[162] == 37.0f * 10 - 0.5f * 50);
    assert_true(y[130] == -0.0f * 0); /* sub-block 4: scale 0, min 0 */
}

static void test_hand_q5_K(void **state) {
    (void)state;
    bc__block_q5_K b;
    memset(&b, 0, sizeof b);
    b.d = 0x3C00;
    b.dmin = 0x3800;
    set_k_scales(b.scales);
    b.qs[66] = 0xA0;
    b.qh[2] = 1 << 5; /* fifth bit of weight 64*2 + 32 + 2: bit 2*2+1 of qh[2] */
    b.qh[0] = 1 << 0; /* weight 0 */
    float y[256];
    dequant(BC_DTYPE_Q5_K, &b, y, 256);
    assert_true(y[162] == 37.0f * 26 - 25.0f);
    assert_true(y[0] == 3.0f * 16 - 1.0f);
    assert_true(y[1] == -1.0f);
}

static void test_hand_q6_K(void **state) {
    (void)state;
    bc__block_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = 0x3800; /* 0.5 */
    b.scales[0] = 2;
    b.scales[5] = -3;
    b.ql[0] = 0x0F;  /* weight 0: low nibble 15 */
    b.qh[0] = 0x02;  /* bits 0-1 = 2: q = 15 | 32 = 47 -> 15 */
    b.ql[16] = 0x30; /* weight 64 + 16 = 80 (sub-block 5): high nibble 3 */
    b.qh[16] = 0x10; /* bits 4-5 = 1: q = 3 | 16 = 19 -> -13 */
    float y[256];
    dequant(BC_DTYPE_Q6_K, &b, y, 256);
    assert_true(y[0] == 0.5f * 2 * 15);
    assert_true(y[80] == 0.5f * -3 * -13);
    assert_true(y[1] == 0.5f * 2 * -32);
    assert_true(y[255] == 0.0f); /* scale 0 */
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                              */
/* ------------------------------------------------------------------------ */

static void round_trip(bc_dtype t, const float *x, float *y, int64_t n) {
    uint64_t bytes;
    assert_int_equal(bc__dtype_row_bytes(t, (uint64_t)n, &bytes), 0);
    void *q = malloc(bytes);
    assert_non_null(q);
    assert_int_equal(bc__quantize_row(t, x, q, n), 0);
    assert_int_equal(bc__dequantize_row(t, q, y, n), 0);
    free(q);
}

static void test_round_trip_32(void **state) {
    (void)state;
    enum { N = 32 * 64 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    rng_seed(7);
    for (int i = 0; i < N; i++) x[i] = rng_normal() * (1 + (i / 32) % 5); /* block scales vary */
    x[5] = 0;                                                             /* a zero block below */
    for (int i = 64; i < 96; i++) x[i] = 0;
    const bc_dtype ts[] = {BC_DTYPE_Q8_0, BC_DTYPE_Q4_0, BC_DTYPE_Q4_1, BC_DTYPE_Q5_0, BC_DTYPE_Q5_1};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        round_trip(ts[k], x, y, N);
        for (int b = 0; b < N / 32; b++) {
            float amax = 0, min = INFINITY, max = -INFINITY;
            for (int j = 0; j < 32; j++) {
                float v = x[b * 32 + j];
                amax = fmaxf(amax, fabsf(v));
                min = fminf(min, v);
                max = fmaxf(max, v);
            }
            float bound = 0;
            switch (ts[k]) {
            case BC_DTYPE_Q8_0: bound = 0.57f * amax / 127; break;
            case BC_DTYPE_Q4_0: bound = 1.01f * amax / 8; break;
            case BC_DTYPE_Q5_0: bound = 1.01f * amax / 16; break;
            case BC_DTYPE_Q4_1: bound = 0.51f * (max - min) / 15 + 0x1p-10f * (fabsf(min) + fabsf(max)); break;
            case BC_DTYPE_Q5_1: bound = 0.51f * (max - min) / 31 + 0x1p-10f * (fabsf(min) + fabsf(max)); break;
            default: break;
            }
            for (int j = 0; j < 32; j++) {
                float err = fabsf(y[b * 32 + j] - x[b * 32 + j]);
                if (err > bound)
                    fail_msg("%s block %d elem %d: |err| %g > bound %g", bc_dtype_name(ts[k]), b, j, err, bound);
            }
        }
    }
    free(x);
    free(y);
}

static void test_round_trip_k(void **state) {
    (void)state;
    enum { N = 256 * 16 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    rng_seed(11);
    for (int i = 0; i < N; i++) x[i] = rng_normal();
    for (int i = 256; i < 512; i++) x[i] = 0; /* an all-zero block */
    const bc_dtype ts[] = {BC_DTYPE_Q4_K, BC_DTYPE_Q5_K, BC_DTYPE_Q6_K};
    const double rel[] = {0.10, 0.05, 0.025};
    const int nmax[] = {15, 31, 63};
    for (int k = 0; k < 3; k++) {
        round_trip(ts[k], x, y, N);
        double se = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            se += (double)(y[i] - x[i]) * (y[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        double r = sqrt(se / sx);
        printf("# %s: rms(err)/rms(x) = %.4f (bound %.3f)\n", bc_dtype_name(ts[k]), r, rel[k]);
        assert_true(r <= rel[k]);
        for (int i = 256; i < 512; i++) assert_true(y[i] == 0.0f);
        int sub = ts[k] == BC_DTYPE_Q6_K ? 16 : 32;
        float worst = 0;
        for (int b = 0; b < N / sub; b++) {
            float min = INFINITY, max = -INFINITY;
            for (int j = 0; j < sub; j++) {
                min = fminf(min, x[b * sub + j]);
                max = fmaxf(max, x[b * sub + j]);
            }
            /* q6_K is symmetric: its range is 2 * amax over 63 steps. */
            float range = ts[k] == BC_DTYPE_Q6_K ? 2 * fmaxf(fabsf(min), fabsf(max)) : max - fminf(min, 0);
            for (int j = 0; j < sub; j++) {
                float ratio = fabsf(y[b * sub + j] - x[b * sub + j]) / (range / nmax[k]);
                if (ratio > worst) worst = ratio;
            }
        }
        printf("# %s: max |err| / (range / nmax) = %.3f (bound 1.5)\n", bc_dtype_name(ts[k]), worst);
        assert_true(worst <= 1.5f);
    }
    free(x);
    free(y);
}

/* Odd sizes: one block, three blocks, invalid lengths; the reference dot
 * equals the double-precision dot of the dequantized row. */
static void test_sizes_and_dot(void **state) {
    (void)state;
    const int64_t lens[] = {32, 96, 256, 768, 4096 + 256};
    float *x = malloc((4096 + 256) * sizeof *x), *a = malloc((4096 + 256) * sizeof *a);
    float *y = malloc((4096 + 256) * sizeof *y);
    uint8_t *q = malloc(4 * (4096 + 256) + 64);
    rng_seed(3);
    for (int i = 0; i < 4096 + 256; i++) {
        x[i] = rng_normal();
        a[i] = rng_normal();
    }
    for (size_t k = 0; k < N_DTYPES; k++) {
        bc_dtype t = all_dtypes[k];
        const bc__dtype_traits *tr = bc__dtype_traits_of(t);
        assert_int_equal(bc__quantize_row(t, x, q, tr->block_elems == 1 ? -1 : tr->block_elems + 1), -1);
        assert_int_equal(bc__dequantize_row(t, q, y, tr->block_elems == 1 ? -1 : 33), -1);
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            int64_t n = lens[l];
            if (n % tr->block_elems) continue;
            memset(q, 0xAB, 4 * (4096 + 256) + 64);
            assert_int_equal(bc__quantize_row(t, x, q, n), 0);
            uint64_t bytes;
            assert_int_equal(bc__dtype_row_bytes(t, (uint64_t)n, &bytes), 0);
            assert_int_equal(q[bytes], 0xAB); /* nothing written past the row */
            assert_int_equal(bc__dequantize_row(t, q, y, n), 0);
            double want = 0;
            for (int64_t i = 0; i < n; i++) want += (double)y[i] * a[i];
            float got = bc__dot_ref(t, q, a, n);
            assert_true(fabs(got - want) <= 1e-6 * (1 + fabs(want)));
        }
    }
    assert_int_equal(bc__quantize_row(BC_DTYPE_COUNT, x, q, 32), -1);
    free(x);
    free(a);
    free(y);
    free(q);
}

/* ------------------------------------------------------------------------ */
/* Golden data from llama.cpp                                               */
/* ------------------------------------------------------------------------ */

/* tests/data/ggml_golden.bin, written by a program against ggml (not part
 * of this repository): "BCGG" u32 version 1, u32 n (floats), then n floats
 * (the input), then for each dtype: u32 ggml_type, u32 n_bytes, the bytes of
 * ggml's quantize (no importance matrix), and n floats of ggml's dequantize
 * of those bytes. */
static void test_golden(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/ggml_golden.bin", BC_SOURCE_DIR);
    FILE *f = fopen(path, "rb");
    if (f == NULL) fail_msg("%s: cannot open", path);
    char magic[4];
    uint32_t version, n;
    assert_int_equal(fread(magic, 1, 4, f), 4);
    assert_memory_equal(magic, "BCGG", 4);
    assert_int_equal(fread(&version, 4, 1, f), 1);
    assert_int_equal(version, 1);
    assert_int_equal(fread(&n, 4, 1, f), 1);
    assert_true(n > 0 && n % 256 == 0 && n <= (1u << 20));
    float *x = malloc(n * sizeof *x), *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    uint8_t *ref = malloc(4 * (size_t)n), *ours = malloc(4 * (size_t)n);
    assert_int_equal(fread(x, 4, n, f), n);
    uint32_t ggml_type, n_bytes;
    int n_types = 0;
    while (fread(&ggml_type, 4, 1, f) == 1) {
        assert_int_equal(fread(&n_bytes, 4, 1, f), 1);
        assert_true(n_bytes <= 4 * n);
        assert_int_equal(fread(ref, 1, n_bytes, f), n_bytes);
        assert_int_equal(fread(want, 4, n, f), n);
        bc_dtype t = BC_DTYPE_COUNT;
        for (size_t k = 0; k < N_DTYPES; k++)
            if (bc__dtype_traits_of(all_dtypes[k])->ggml_type == (int)ggml_type) t = all_dtypes[k];
        assert_int_not_equal(t, BC_DTYPE_COUNT);
        const bc__dtype_traits *tr = bc__dtype_traits_of(t);
        /* Our dequantize of ggml's bytes equals ggml's dequantize exactly. */
        assert_int_equal(bc__dequantize_row(t, ref, got, n), 0);
        assert_memory_equal(got, want, n * sizeof(float));
        /* Our quantize gives ggml's bytes. */
        assert_int_equal(bc__quantize_row(t, x, ours, n), 0);
        int n_blocks = (int)(n / (uint32_t)tr->block_elems), differ = 0;
        for (int b = 0; b < n_blocks; b++)
            differ += memcmp(ours + (size_t)b * tr->block_bytes, ref + (size_t)b * tr->block_bytes,
                             (size_t)tr->block_bytes) != 0;
        printf("# golden %s: %d of %d blocks differ from llama.cpp\n", tr->name, differ, n_blocks);
        assert_int_equal(differ, 0);
        n_types++;
    }
    assert_true(n_types >= 8);
    fclose(f);
    free(x);
    free(want);
    free(got);
    free(ref);
    free(ours);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_conversion), cmocka_unit_test(test_hand_q8_0),
        cmocka_unit_test(test_hand_q4),        cmocka_unit_test(test_hand_q5),
        cmocka_unit_test(test_hand_q4_K),      cmocka_unit_test(test_hand_q5_K),
        cmocka_unit_test(test_hand_q6_K),      cmocka_unit_test(test_round_trip_32),
        cmocka_unit_test(test_round_trip_k),   cmocka_unit_test(test_sizes_and_dot),
        cmocka_unit_test(test_golden),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

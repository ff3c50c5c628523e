/*
 * test_vec.c - the f32 vector kernels of src/kernels/vec.c at every level
 * the CPU reports (the lower ones forced), against double precision:
 * silu(g) * u = g / (1 + e^-g) * u, for g over the whole range the model
 * can produce (|g| up to 100, where e^-g overflows or vanishes) and odd
 * lengths (the SIMD tails), and the same bits for an element whatever its
 * place in the vector.
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

#include "kernels/isa.h"
#include "kernels/vec.h"

static double silu_mul_ref(double g, double u) { return g / (1.0 + exp(-g)) * u; }

static void test_silu_mul(void **state) {
    (void)state;
    enum { N = 4099 };
    float *g = malloc(N * sizeof(float)), *u = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    float *g1 = malloc(N * sizeof(float));
    assert_non_null(g);
    assert_non_null(u);
    assert_non_null(y);
    assert_non_null(g1);
    uint64_t s = 88172645463325252ULL;
    for (int i = 0; i < N; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        const double r = (double)(s >> 11) / 9007199254740992.0;
        /* a grid over [-100, 100], then random values, most of them small */
        g[i] = i < 2001 ? (float)(-100.0 + 0.1 * i) : (float)((r - 0.5) * (i % 3 == 0 ? 40.0 : 6.0));
        u[i] = (float)(0.5 + r);
    }
    const bc__isa top = bc__kernels_detect();
    for (int level = 0; level <= (int)top; level++) {
        assert_int_equal(bc__kernels_force(level), level);
        double worst = 0;
        memcpy(y, g, N * sizeof(float));
        bc__silu_mul(y, u, N);
        for (int i = 0; i < N; i++) {
            const double ref = silu_mul_ref(g[i], u[i]), err = fabs(y[i] - ref);
            /* a few ulp of f32, and below e^-87 (the exp's floor) a tiny absolute error */
            const double bound = 8 * 0x1p-24 * fabs(ref) + 1e-35;
            if (!(err <= bound))
                fail_msg("%s: silu(%.9g) * %.9g = %.9g, reference %.9g", bc__isa_name((bc__isa)level), g[i], u[i], y[i],
                         ref);
            if (err / bound > worst) worst = err / bound;
        }
        /* An element's bits do not depend on its place: each one alone. */
        for (int i = 0; i < N; i += 97) {
            float one = g[i];
            bc__silu_mul(&one, &u[i], 1);
            assert_memory_equal(&one, &y[i], sizeof one);
        }
        /* Every length up to 20 (the tails) from an odd offset. */
        for (int n = 1; n <= 20; n++) {
            memcpy(g1, g + 3, (size_t)n * sizeof(float));
            bc__silu_mul(g1, u + 3, n);
            for (int i = 0; i < n; i++) {
                float one = g[3 + i];
                bc__silu_mul(&one, &u[3 + i], 1);
                assert_memory_equal(&one, &g1[i], sizeof one);
            }
        }
        printf("# %-6s silu_mul: %d values, max error / bound %.3f\n", bc__isa_name((bc__isa)level), N, worst);
    }
    bc__kernels_force(-1);
    free(g);
    free(u);
    free(y);
    free(g1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silu_mul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

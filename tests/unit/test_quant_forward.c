/*
 * test_quant_forward.c - the forward pass with block-quantized weights.
 *
 * Loads the f32 fixture b2_7b_f32_st (RoPE + NormHead, hidden 32, ff 88),
 * runs 8 tokens for reference logits, then re-quantizes in place every
 * matrix whose rows are whole 32-blocks (embedding, W_pack, o_proj, gate,
 * up, lm_head; down_proj has 88 columns and stays f32) to q8_0, q5_1 and
 * q4_0, and compares the logits of the quantized kernels with those of the
 * same weights dequantized to f32 (so that only the kernels and their 8-bit
 * activations differ):
 *   max |logit - dequantized-f32 logit| <= tol * max |f32 logit|,
 *   tol = 0.04 (q8_0), 0.06 (q5_1), 0.05 (q4_0) (measured 0.024, 0.037, 0.018:
 * this random model amplifies the activations' 8-bit rounding too).
 * The distance to the f32 model itself is printed: it is dominated by the
 * weights' quantization, which this tiny random model amplifies (~4 % of the
 * largest logit for q8_0, ~19 % for q5_1, ~46 % for q4_0), whatever kernel
 * computes it. This exercises the embedding lookup through dequantize and
 * every quantized matmul of the pass.
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

#include "kernels/dispatch.h"
#include "kernels/isa.h"
#include "model/model.h"
#include "kernels/kernels.h"
#include "quant/quants.h"

#define N_TOK 8

static bc_model *load(const char *name) {
    const char *dir = getenv("BC_FIXTURES");
    assert_non_null(dir);
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    bc_model *model = NULL;
    if (bc_model_load(path, bc_model_default_params(), &model, err, sizeof err) != BC_STATUS_OK)
        fail_msg("loading %s: %s", path, err);
    return model;
}

/* Logits of N_TOK tokens of one sequence into out (N_TOK * n_vocab). */
static void run(const bc_model *m, float *out) {
    bc_context_params p = bc_context_default_params();
    p.n_ctx = 16;
    p.n_batch = N_TOK;
    p.n_threads = 2;
    bc_context *ctx = NULL;
    char err[1024];
    if (bc_context_init(m, p, &ctx, err, sizeof err) != BC_STATUS_OK) fail_msg("context: %s", err);
    bc_batch_entry e[N_TOK];
    for (int i = 0; i < N_TOK; i++) {
        e[i].seq = 0;
        e[i].pos = i;
        e[i].token = 3 + (i * 7919) % 1000;
        e[i].logits = true;
    }
    assert_int_equal(bc_context_decode(ctx, e, N_TOK), BC_STATUS_OK);
    for (int i = 0; i < N_TOK; i++)
        memcpy(out + (size_t)i * (size_t)m->hp.n_vocab, bc_context_logits(ctx, i), (size_t)m->hp.n_vocab * 4);
    bc_context_free(ctx);
}

/* Quantizes w (f32) to t into a new buffer and points w at it (with the
 * repacked copy the loader would make, where there is one); with as_f32, at
 * the dequantized weights in f32 instead. */
static void *requantize(bc__weight *w, bc_dtype t, int as_f32) {
    if (w->dtype != BC_DTYPE_F32 || w->cols % 32 != 0) return NULL;
    uint64_t row_bytes;
    assert_int_equal(bc__dtype_row_bytes(t, (uint64_t)w->cols, &row_bytes), 0);
    uint8_t *q = malloc((size_t)w->rows * row_bytes);
    assert_non_null(q);
    for (int64_t r = 0; r < w->rows; r++)
        assert_int_equal(bc__quantize_row(t, (const float *)w->data + r * w->cols, q + (size_t)r * row_bytes, w->cols),
                         0);
    w->data = q;
    w->dtype = t;
    if (as_f32) {
        float *f = malloc((size_t)(w->rows * w->cols) * 4);
        for (int64_t r = 0; r < w->rows; r++)
            bc__dequantize_row(t, q + (size_t)r * row_bytes, f + r * w->cols, w->cols);
        free(q);
        w->data = f;
        w->dtype = BC_DTYPE_F32;
        return f;
    }
    bc__weight_repack(w);
    return q;
}

static void test_quantized_logits(void **state) {
    (void)state;
    bc_model *m = load("b2_7b_f32_st");
    size_t V = (size_t)m->hp.n_vocab;
    float *ref = malloc(N_TOK * V * sizeof(float)), *got = malloc(N_TOK * V * sizeof(float));
    run(m, ref);
    float ref_max = 0;
    for (size_t i = 0; i < N_TOK * V; i++) ref_max = fmaxf(ref_max, fabsf(ref[i]));

    const bc_dtype types[] = {BC_DTYPE_Q8_0, BC_DTYPE_Q5_1, BC_DTYPE_Q4_0};
    const float tol[] = {0.04f, 0.06f, 0.05f};
    float *deq = malloc(N_TOK * V * sizeof(float));
    for (int k = 0; k < 3; k++) {
        for (int as_f32 = 1; as_f32 >= 0; as_f32--) {
            /* Every matrix of the model: saved, re-quantized, restored after. */
            int n_w = 2 + 5 * m->hp.n_layer;
            bc__weight **ws = malloc((size_t)n_w * sizeof *ws), *saved = malloc((size_t)n_w * sizeof *saved);
            void **bufs = calloc((size_t)n_w, sizeof *bufs);
            int j = 0;
            ws[j++] = &m->tok_embd;
            ws[j++] = &m->lm_head;
            for (int il = 0; il < m->hp.n_layer; il++) {
                bc__layer *L = &m->layers[il];
                ws[j++] = &L->wqkv;
                ws[j++] = &L->wo;
                ws[j++] = &L->w_gate;
                ws[j++] = &L->w_up;
                ws[j++] = &L->w_down;
            }
            int n_quant = 0, n_packed = 0;
            for (j = 0; j < n_w; j++) {
                saved[j] = *ws[j];
                bufs[j] = requantize(ws[j], types[k], as_f32);
                n_quant += bufs[j] != NULL;
                n_packed += ws[j]->packed != NULL;
            }
            assert_int_equal(n_quant, 2 + 4 * m->hp.n_layer);
            /* q4_0 and q8_0 run the repacked kernels where the CPU has them. */
            if (!as_f32 && bc__pack_layout_of(types[k], bc__kernels_isa()) != NULL) assert_true(n_packed > 0);
            run(m, as_f32 ? deq : got);
            for (j = 0; j < n_w; j++) {
                if (ws[j]->packed != saved[j].packed) bc__weight_repack_free(ws[j]);
                *ws[j] = saved[j];
                free(bufs[j]);
            }
            free(ws);
            free(saved);
            free(bufs);
        }
        float diff = 0, diff_f32 = 0;
        for (size_t i = 0; i < N_TOK * V; i++) {
            diff = fmaxf(diff, fabsf(got[i] - deq[i]));
            diff_f32 = fmaxf(diff_f32, fabsf(got[i] - ref[i]));
        }
        printf("# %s: max |diff| / max |logit| against its dequantized weights in f32 %.4f (tol %.2f), "
               "against the f32 model %.4f\n",
               bc_dtype_name(types[k]), diff / ref_max, tol[k], diff_f32 / ref_max);
        assert_true(diff <= tol[k] * ref_max);
    }
    free(deq);
    free(ref);
    free(got);
    bc_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_quantized_logits)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_batch.c - the batched forward pass with per-sequence KV caches:
 *   - several sequences interleaved in one batch == each sequence alone
 *   - incremental decoding (prompt, then one token at a time) == one full pass
 *   - thread counts give identical logits
 *   - a prompt's chunking and the rest of the batch leave a token's logits
 *     the same bits
 *   - bad batches are refused without touching the caches
 *   - a forked sequence goes on as the whole sequence decoded alone
 *   - the per-op profile: same logits with it on, figures that add up to a
 *     total no larger than the caller's own clock, counts, reset
 * Runs on the fixture checkpoints made by tools/gen_fixtures.py (BC_FIXTURES).
 * Uses only the public header.
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
#include <time.h>

#include "baichuan.h"

/* RoPE + NormHead, ALiBi with 6 heads, ALiBi + NormHead with 40 heads (f16). */
static const char *const fixtures[] = {"b2_7b_f32_st", "b1_13b_f32_bin", "b2_13b_f16_st_sharded"};

static bc_model *load_fixture(const char *name) {
    const char *dir = getenv("BC_FIXTURES");
    assert_non_null(dir);
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    bc_model *model = NULL;
    bc_status st = bc_model_load(path, bc_model_default_params(), &model, err, sizeof err);
    if (st != BC_STATUS_OK) fail_msg("loading %s: %s", path, err);
    return model;
}

/* A context with an f32 cache (exact) and a pool of n_ctx * n_seq positions. */
static bc_context *new_context_kv(const bc_model *model, int n_ctx, int n_seq, int n_batch, int n_threads,
                                  bc_dtype cache_type, int n_kv) {
    bc_context_params p = bc_context_default_params();
    p.n_ctx = n_ctx;
    p.cache_type = cache_type;
    p.n_kv = n_kv;
    p.n_seq = n_seq;
    p.n_batch = n_batch;
    p.n_threads = n_threads;
    bc_context *ctx = NULL;
    char err[1024];
    if (bc_context_init(model, p, &ctx, err, sizeof err) != BC_STATUS_OK) fail_msg("context: %s", err);
    return ctx;
}

static bc_context *new_context(const bc_model *model, int n_ctx, int n_seq, int n_batch, int n_threads) {
    return new_context_kv(model, n_ctx, n_seq, n_batch, n_threads, BC_DTYPE_F32, 0);
}

static int n_vocab_of(const bc_model *model) {
    bc_model_info info;
    bc_model_get_info(model, &info);
    return info.n_vocab;
}

/* Deterministic token ids in [3, n_vocab). */
static int32_t token_at(int seq, int i, int n_vocab) {
    uint32_t h = (uint32_t)(seq * 7919 + i * 104729 + 17) * 2654435761u;
    return (int32_t)(3 + h % (uint32_t)(n_vocab - 3));
}

/* max |a - b| / max(1, max |b|) over n values. */
static double rel_err(const float *a, const float *b, int n) {
    double max_diff = 0, max_ref = 1;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > max_diff) max_diff = d;
        if (fabs(b[i]) > max_ref) max_ref = fabs(b[i]);
    }
    return max_diff / max_ref;
}

/* Logits of positions [0, len) of sequence tag decoded alone in a single
 * pass with a cache of cache_type: (len, n_vocab). */
static float *decode_alone_kv(const bc_model *model, int seq_tag, int len, int n_threads, bc_dtype cache_type) {
    int V = n_vocab_of(model);
    bc_context *ctx = new_context_kv(model, len, 1, len, n_threads, cache_type, 0);
    bc_batch_entry *b = calloc((size_t)len, sizeof *b);
    for (int i = 0; i < len; i++) b[i] = (bc_batch_entry){0, i, token_at(seq_tag, i, V), true};
    assert_int_equal(bc_context_decode(ctx, b, len), BC_STATUS_OK);
    float *out = malloc((size_t)len * (size_t)V * sizeof(float));
    for (int i = 0; i < len; i++)
        memcpy(out + (size_t)i * (size_t)V, bc_context_logits(ctx, i), (size_t)V * sizeof(float));
    free(b);
    bc_context_free(ctx);
    return out;
}

/* The same with an f32 cache (exact). */
static float *decode_alone(const bc_model *model, int seq_tag, int len, int n_threads) {
    return decode_alone_kv(model, seq_tag, len, n_threads, BC_DTYPE_F32);
}

static void test_batched_equals_alone(void **state) {
    (void)state;
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        bc_model *model = load_fixture(fixtures[f]);
        int V = n_vocab_of(model);
        enum { N_SEQ = 3 };
        const int len[N_SEQ] = {5, 11, 17};
        float *alone[N_SEQ];
        for (int s = 0; s < N_SEQ; s++) alone[s] = decode_alone(model, s, len[s], 2);

        /* Round-robin interleave of the three sequences in one batch. */
        bc_context *ctx = new_context(model, 32, N_SEQ, 64, 2);
        bc_batch_entry b[64];
        int n = 0, at[N_SEQ] = {0};
        while (n < len[0] + len[1] + len[2])
            for (int s = 0; s < N_SEQ; s++)
                if (at[s] < len[s]) {
                    b[n++] = (bc_batch_entry){s, at[s], token_at(s, at[s], V), true};
                    at[s]++;
                }
        assert_int_equal(bc_context_decode(ctx, b, n), BC_STATUS_OK);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            const float *got = bc_context_logits(ctx, i);
            assert_non_null(got);
            double e = rel_err(got, alone[b[i].seq] + (size_t)b[i].pos * (size_t)V, V);
            if (e > worst) worst = e;
        }
        printf("  %s: batched vs alone max rel err %.3g\n", fixtures[f], worst);
        assert_true(worst <= 1e-5);
        for (int s = 0; s < N_SEQ; s++) {
            assert_int_equal(bc_context_seq_len(ctx, s), len[s]);
            free(alone[s]);
        }
        bc_context_free(ctx);
        bc_model_free(model);
    }
}

static void test_incremental_equals_full(void **state) {
    (void)state;
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        bc_model *model = load_fixture(fixtures[f]);
        int V = n_vocab_of(model);
        const int prompt = 20, total = 36;
        float *full = decode_alone(model, 9, total, 2);

        /* Prompt as one batch, then single tokens; a second sequence advances
         * in the same batches to show steps of different sequences mix. */
        bc_context *ctx = new_context(model, total, 2, prompt, 2);
        bc_batch_entry b[64];
        for (int i = 0; i < prompt; i++) b[i] = (bc_batch_entry){0, i, token_at(9, i, V), i == prompt - 1};
        assert_int_equal(bc_context_decode(ctx, b, prompt), BC_STATUS_OK);
        assert_null(bc_context_logits(ctx, 0)); /* did not ask */
        double worst = rel_err(bc_context_logits(ctx, prompt - 1), full + (size_t)(prompt - 1) * (size_t)V, V);
        for (int i = prompt; i < total; i++) {
            b[0] = (bc_batch_entry){1, i - prompt, token_at(4, i, V), false};
            b[1] = (bc_batch_entry){0, i, token_at(9, i, V), true};
            assert_int_equal(bc_context_decode(ctx, b, 2), BC_STATUS_OK);
            double e = rel_err(bc_context_logits(ctx, 1), full + (size_t)i * (size_t)V, V);
            if (e > worst) worst = e;
        }
        printf("  %s: incremental vs full max rel err %.3g\n", fixtures[f], worst);
        assert_true(worst <= 1e-5);

        /* Truncating and decoding the tail again reproduces it. */
        assert_int_equal(bc_context_seq_truncate(ctx, 0, prompt), BC_STATUS_OK);
        assert_int_equal(bc_context_seq_len(ctx, 0), prompt);
        b[0] = (bc_batch_entry){0, prompt, token_at(9, prompt, V), true};
        assert_int_equal(bc_context_decode(ctx, b, 1), BC_STATUS_OK);
        assert_true(rel_err(bc_context_logits(ctx, 0), full + (size_t)prompt * (size_t)V, V) <= 1e-5);

        free(full);
        bc_context_free(ctx);
        bc_model_free(model);
    }
}

/* The logits of positions [0, len) of sequence tag 0 decoded in chunks of
 * `chunk` tokens (logits for every position), with sequence 1 advancing one
 * token in every chunk's batch when `mixed`. (len, n_vocab), f32 cache. */
static float *decode_chunked(const bc_model *model, int len, int chunk, bool mixed, int n_threads, int chunk_until,
                             int first_chunk) {
    const int V = n_vocab_of(model);
    const int most = chunk > first_chunk ? chunk : first_chunk;
    bc_context *ctx = new_context(model, len, 2, most + 1, n_threads);
    bc_batch_entry *b = calloc((size_t)most + 1, sizeof *b);
    float *out = malloc((size_t)len * (size_t)V * sizeof(float));
    for (int at = 0, step = 0; at < len; step++) {
        int n = 0;
        if (mixed) b[n++] = (bc_batch_entry){1, step, token_at(5, step, V), false};
        const int first = n;
        const int size = at < chunk_until ? first_chunk : chunk;
        for (; n - first < size && at < len; at++) b[n++] = (bc_batch_entry){0, at, token_at(0, at, V), true};
        assert_int_equal(bc_context_decode(ctx, b, n), BC_STATUS_OK);
        for (int i = first; i < n; i++)
            memcpy(out + (size_t)b[i].pos * (size_t)V, bc_context_logits(ctx, i), (size_t)V * sizeof(float));
    }
    free(b);
    bc_context_free(ctx);
    return out;
}

/* argv[1]: the default model (models/default), whose shapes quantize. */
static const char *default_model;

/* With the f32 cache a token's logits are the same bits however its prompt
 * is chunked (-b) and whatever else is in the batch: 600 positions (three of
 * the attention's key segments) in one pass, in chunks of 64, in chunks of 7
 * beside another sequence, and one token at a time beside it (from position
 * 480 on, across the third segment's start); on 2 threads,
 * where a single-token step splits its keys over the threads. The RoPE and
 * ALiBi fixtures with f32 weights, and the default model quantized at load
 * to Q8_0, Q4_0 and Q4_K_M (the kernels of GGUF files), with RoPE and with
 * ALiBi. Not f16/bf16 weights: their four-row matmul kernel sums in another
 * order than the one-row kernel, and in one that depends on how many
 * activation rows share a call (avx2_half.c). */
static void test_chunking_bit_identical(void **state) {
    (void)state;
    static const struct {
        const char *fixture; /* NULL: the default model */
        bc_ftype quantize;
        bc_pos_encoding pe;
    } models[] = {
        {"b2_7b_f32_st", BC_FTYPE_COUNT, BC_POS_ENCODING_AUTO},
        {"b1_13b_f32_bin", BC_FTYPE_COUNT, BC_POS_ENCODING_AUTO},
        {NULL, BC_FTYPE_Q8_0, BC_POS_ENCODING_AUTO},
        {NULL, BC_FTYPE_Q4_0, BC_POS_ENCODING_AUTO},
        {NULL, BC_FTYPE_Q4_K_M, BC_POS_ENCODING_AUTO},
        {NULL, BC_FTYPE_Q4_0, BC_POS_ENCODING_ALIBI},
    };
    for (size_t f = 0; f < sizeof models / sizeof models[0]; f++) {
        char path[4096], err[1024], name[4200];
        if (models[f].fixture)
            snprintf(path, sizeof path, "%s/%s", getenv("BC_FIXTURES"), models[f].fixture);
        else
            snprintf(path, sizeof path, "%s", default_model);
        snprintf(name, sizeof name, "%s (quantize %d, pos %d)", path, (int)models[f].quantize, (int)models[f].pe);
        bc_model_params mp = bc_model_default_params();
        mp.quantize = models[f].quantize;
        mp.pos_encoding = models[f].pe;
        bc_model *model = NULL;
        if (bc_model_load(path, mp, &model, err, sizeof err) != BC_STATUS_OK) fail_msg("%s: %s", name, err);
        const int V = n_vocab_of(model), len = 600;
        float *whole = decode_chunked(model, len, len, false, 2, 0, len);
        /* the one-token way only from position 480 on (positions before it
         * in chunks of 64): its steps cross the last segment's start */
        static const struct {
            int chunk;
            bool mixed;
            int until;
        } ways[] = {{64, false, 0}, {7, true, 0}, {1, true, 480}};
        for (size_t w = 0; w < sizeof ways / sizeof ways[0]; w++) {
            float *got = decode_chunked(model, len, ways[w].chunk, ways[w].mixed, 2, ways[w].until, 64);
            for (int i = 0; i < len; i++)
                if (memcmp(got + (size_t)i * (size_t)V, whole + (size_t)i * (size_t)V, (size_t)V * sizeof(float)))
                    fail_msg("%s: position %d in chunks of %d%s differs in bits from one pass", name, i, ways[w].chunk,
                             ways[w].mixed ? " beside another sequence" : "");
            free(got);
        }
        printf("  %s: %d positions, the same bits in 4 chunkings\n", name, len);
        free(whole);
        bc_model_free(model);
    }
}

static void test_threads_identical(void **state) {
    (void)state;
    bc_model *model = load_fixture("b2_7b_f32_st");
    int V = n_vocab_of(model);
    float *one = decode_alone(model, 3, 13, 1);
    float *three = decode_alone(model, 3, 13, 3);
    assert_memory_equal(one, three, (size_t)13 * (size_t)V * sizeof(float));
    free(one);
    free(three);
    bc_model_free(model);
}

static void test_bad_batches(void **state) {
    (void)state;
    bc_model *model = load_fixture("b2_7b_f32_st");
    int V = n_vocab_of(model);
    bc_context *ctx = new_context(model, 4, 2, 4, 1);
    bc_batch_entry b[4] = {{0, 0, 5, true}, {0, 1, 6, true}};
    assert_int_equal(bc_context_decode(ctx, b, 2), BC_STATUS_OK);

    /* A gap, a repeat, an unknown sequence, a bad token, an empty batch. */
    b[0] = (bc_batch_entry){0, 3, 5, true};
    assert_int_equal(bc_context_decode(ctx, b, 1), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(bc_context_error(ctx), "position"));
    b[0] = (bc_batch_entry){0, 1, 5, true};
    assert_int_equal(bc_context_decode(ctx, b, 1), BC_STATUS_ERROR_ARGUMENT);
    b[0] = (bc_batch_entry){2, 0, 5, true};
    assert_int_equal(bc_context_decode(ctx, b, 1), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(bc_context_error(ctx), "sequence"));
    b[0] = (bc_batch_entry){1, 0, V, true};
    assert_int_equal(bc_context_decode(ctx, b, 1), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(bc_context_error(ctx), "token"));
    b[0] = (bc_batch_entry){1, 0, -1, true};
    assert_int_equal(bc_context_decode(ctx, b, 1), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(bc_context_decode(ctx, b, 0), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(bc_context_decode(ctx, b, 5), BC_STATUS_ERROR_ARGUMENT);

    /* Past n_ctx: refused as a whole, the valid first entry not applied. */
    b[0] = (bc_batch_entry){0, 2, 7, true};
    b[1] = (bc_batch_entry){0, 3, 8, true};
    b[2] = (bc_batch_entry){0, 4, 9, true};
    assert_int_equal(bc_context_decode(ctx, b, 3), BC_STATUS_ERROR_CONTEXT_FULL);
    assert_int_equal(bc_context_seq_len(ctx, 0), 2);
    assert_int_equal(bc_context_seq_len(ctx, 1), 0);
    assert_null(bc_context_logits(ctx, 0));

    /* And the context still works. */
    assert_int_equal(bc_context_decode(ctx, b, 2), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_len(ctx, 0), 4);
    bc_context_free(ctx);

    char err[256];
    bc_context_params p = bc_context_default_params();
    p.n_seq = 0;
    assert_int_equal(bc_context_init(model, p, &ctx, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_null(ctx);
    bc_model_free(model);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A prompt of 9, then 6 steps of two sequences together; the logits of every
 * step into out ((1 + 6 * 2) rows of n_vocab). Returns the caller-side wall
 * time of the decode calls. A refused batch is tried after the prompt. */
static double profile_workload(bc_context *ctx, int V, float *out) {
    bc_batch_entry b[16];
    double seconds = 0;
    for (int i = 0; i < 9; i++) b[i] = (bc_batch_entry){0, i, token_at(0, i, V), i == 8};
    double t0 = now_s();
    assert_int_equal(bc_context_decode(ctx, b, 9), BC_STATUS_OK);
    seconds += now_s() - t0;
    memcpy(out, bc_context_logits(ctx, 8), (size_t)V * sizeof(float));
    b[0] = (bc_batch_entry){0, 3, 5, true}; /* a gap: refused, not counted */
    assert_int_equal(bc_context_decode(ctx, b, 1), BC_STATUS_ERROR_ARGUMENT);
    for (int i = 0; i < 6; i++) {
        b[0] = (bc_batch_entry){0, 9 + i, token_at(0, 9 + i, V), true};
        b[1] = (bc_batch_entry){1, i, token_at(1, i, V), true};
        t0 = now_s();
        assert_int_equal(bc_context_decode(ctx, b, 2), BC_STATUS_OK);
        seconds += now_s() - t0;
        for (int r = 0; r < 2; r++)
            memcpy(out + (size_t)(1 + 2 * i + r) * (size_t)V, bc_context_logits(ctx, r), (size_t)V * sizeof(float));
    }
    return seconds;
}

static void test_profile(void **state) {
    (void)state;
    /* RoPE + NormHead, and ALiBi without NormHead (its rope and norm_head stay 0). */
    const char *const names[] = {"b2_7b_f32_st", "b1_13b_f32_bin"};
    for (size_t f = 0; f < 2; f++) {
        bc_model *model = load_fixture(names[f]);
        bc_model_info info;
        bc_model_get_info(model, &info);
        int V = info.n_vocab;
        size_t rows = 13 * (size_t)V;
        float *plain = malloc(rows * sizeof(float)), *timed = malloc(rows * sizeof(float));

        bc_context *ctx = new_context(model, 16, 2, 16, 2);
        bc_profile p;
        memset(&p, 0xff, sizeof p);
        assert_int_equal(bc_context_profile(ctx, &p), BC_STATUS_ERROR_ARGUMENT);
        assert_true(p.total_seconds == 0 && p.n_decodes == 0 && p.op_seconds[BC_PROFILE_OP_QKV] == 0);
        profile_workload(ctx, V, plain);
        bc_context_free(ctx);

        bc_context_params cp = bc_context_default_params();
        cp.n_ctx = 16;
        cp.n_seq = 2;
        cp.n_batch = 16;
        cp.n_threads = 2;
        cp.cache_type = BC_DTYPE_F32;
        cp.profile = true;
        char err[256];
        assert_int_equal(bc_context_init(model, cp, &ctx, err, sizeof err), BC_STATUS_OK);
        double wall = profile_workload(ctx, V, timed);
        assert_memory_equal(plain, timed, rows * sizeof(float));

        assert_int_equal(bc_context_profile(ctx, &p), BC_STATUS_OK);
        assert_int_equal(p.n_decodes, 7);
        assert_int_equal(p.n_tokens, 9 + 6 * 2);
        double sum = 0;
        for (int k = 0; k < BC_PROFILE_OP_COUNT; k++) {
            printf("  %s: %-11s %9.3f us\n", names[f], bc_profile_op_name((bc_profile_op)k), p.op_seconds[k] * 1e6);
            assert_true(p.op_seconds[k] >= 0);
            sum += p.op_seconds[k];
        }
        assert_true(fabs(sum - p.total_seconds) <= 1e-9 * p.total_seconds + 1e-12);
        assert_true(p.total_seconds > 0 && p.total_seconds <= wall);
        const bc_profile_op busy[] = {BC_PROFILE_OP_EMBEDDING, BC_PROFILE_OP_ATTN_NORM,   BC_PROFILE_OP_QKV,
                                      BC_PROFILE_OP_KV_STORE,  BC_PROFILE_OP_ATTENTION,   BC_PROFILE_OP_O_PROJ,
                                      BC_PROFILE_OP_RESIDUAL,  BC_PROFILE_OP_FFN_NORM,    BC_PROFILE_OP_GATE_UP,
                                      BC_PROFILE_OP_DOWN,      BC_PROFILE_OP_OUTPUT_NORM, BC_PROFILE_OP_LM_HEAD};
        for (size_t k = 0; k < sizeof busy / sizeof busy[0]; k++) assert_true(p.op_seconds[busy[k]] > 0);
        bool rope = info.pos_encoding == BC_POS_ENCODING_ROPE;
        assert_true(rope ? p.op_seconds[BC_PROFILE_OP_ROPE] > 0 : p.op_seconds[BC_PROFILE_OP_ROPE] == 0);
        assert_true(info.norm_head ? p.op_seconds[BC_PROFILE_OP_NORM_HEAD] > 0
                                   : p.op_seconds[BC_PROFILE_OP_NORM_HEAD] == 0);
        assert_string_equal(bc_profile_op_name(BC_PROFILE_OP_OTHER), "other");
        assert_string_equal(bc_profile_op_name(BC_PROFILE_OP_COUNT), "?");

        bc_context_profile_reset(ctx);
        assert_int_equal(bc_context_profile(ctx, &p), BC_STATUS_OK);
        assert_true(p.total_seconds == 0 && p.n_decodes == 0 && p.n_tokens == 0);
        for (int k = 0; k < BC_PROFILE_OP_COUNT; k++) assert_true(p.op_seconds[k] == 0);

        free(plain);
        free(timed);
        bc_context_free(ctx);
        bc_model_free(model);
    }
}

/* ------------------------------------------------------------------------ */
/* The paged KV pool, cache types, prefix reuse                             */
/* ------------------------------------------------------------------------ */

static double max_rel_err_rows(const float *a, const float *b, int rows, int V) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double e = rel_err(a + (size_t)r * (size_t)V, b + (size_t)r * (size_t)V, V);
        if (e > worst) worst = e;
    }
    return worst;
}

/* f16 within 1e-3 of the f32 cache on every fixture; q8_0 (head_dim 32 only)
 * within 3e-2; q8_0 refused by name where head_dim is not a multiple of 32. */
static void test_cache_types(void **state) {
    (void)state;
    const char *const names[] = {"b2_7b_f32_st", "b1_13b_f32_bin", "b2_13b_f16_st_sharded", "kv_hd32"};
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        bc_model *model = load_fixture(names[f]);
        bc_model_info info;
        bc_model_get_info(model, &info);
        const int len = 40, V = info.n_vocab;
        float *exact = decode_alone_kv(model, 2, len, 2, BC_DTYPE_F32);
        float *half = decode_alone_kv(model, 2, len, 2, BC_DTYPE_F16);
        double e16 = max_rel_err_rows(half, exact, len, V);
        printf("  %s: f16 cache vs f32 max rel err %.3g\n", names[f], e16);
        assert_true(e16 <= 1e-3);
        assert_true(bc_model_kv_bytes_per_position(model, BC_DTYPE_F16) ==
                    2ull * (uint64_t)info.n_layer * (uint64_t)info.n_embd * 2);
        if (info.head_dim % 32 == 0) {
            float *q8 = decode_alone_kv(model, 2, len, 2, BC_DTYPE_Q8_0);
            double e8 = max_rel_err_rows(q8, exact, len, V);
            printf("  %s: q8_0 cache vs f32 max rel err %.3g\n", names[f], e8);
            assert_true(e8 <= 3e-2);
            assert_true(e8 > 0); /* it is quantized */
            free(q8);
        } else {
            bc_context_params p = bc_context_default_params();
            p.n_ctx = 8;
            p.cache_type = BC_DTYPE_Q8_0;
            bc_context *ctx = NULL;
            char err[512];
            assert_int_equal(bc_context_init(model, p, &ctx, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
            assert_null(ctx);
            assert_non_null(strstr(err, "q8_0"));
            assert_non_null(strstr(err, "head_dim"));
        }
        free(exact);
        free(half);
        bc_model_free(model);
    }
}

static void decode_run(bc_context *ctx, int seq, int tag, int from, int to, int V) {
    bc_batch_entry b[64];
    for (int i = from; i < to; i++) b[i - from] = (bc_batch_entry){seq, i, token_at(tag, i, V), true};
    assert_int_equal(bc_context_decode(ctx, b, to - from), BC_STATUS_OK);
}

/* Sequences share a pool smaller than n_seq * n_ctx: blocks come and go,
 * a batch that needs more than is free is refused whole, a cached block is
 * evicted when nothing else is free, and the logits stay those of a
 * sequence decoded alone (bit for bit, with an f32 cache). */
static void test_paged_pool(void **state) {
    (void)state;
    bc_model *model = load_fixture("b2_7b_f32_st");
    int V = n_vocab_of(model);
    float *alone = decode_alone_kv(model, 1, 20, 2, BC_DTYPE_F32);
    bc_context *ctx = new_context_kv(model, 64, 3, 64, 2, BC_DTYPE_F32, 4 * BC_KV_BLOCK);
    assert_int_equal(bc_context_n_kv(ctx), 64);
    bc_kv_stats st;
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_blocks, 4);
    assert_int_equal(st.n_free, 4);

    decode_run(ctx, 0, 0, 0, 20, V);
    decode_run(ctx, 1, 1, 0, 20, V); /* blocks 2 and 3: seq 1's table is not seq 0's */
    assert_memory_equal(bc_context_logits(ctx, 19), alone + 19 * (size_t)V, (size_t)V * sizeof(float));
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_free, 0);

    /* Full: refused with nothing changed. */
    bc_batch_entry b = {2, 0, 7, true};
    assert_int_equal(bc_context_decode(ctx, &b, 1), BC_STATUS_ERROR_KV_FULL);
    assert_non_null(strstr(bc_context_error(ctx), "KV pool"));
    assert_int_equal(bc_context_seq_len(ctx, 2), 0);
    assert_int_equal(bc_context_seq_blocks_needed(ctx, 0, 40), 2);
    assert_int_equal(bc_context_seq_reserve(ctx, 0, 40), BC_STATUS_ERROR_KV_FULL);
    assert_int_equal(bc_context_seq_len(ctx, 0), 20);
    assert_int_equal(bc_context_seq_reserve(ctx, 0, 100), BC_STATUS_ERROR_CONTEXT_FULL);

    /* Seq 0 ends: its full block stays cached, the partial one is freed. */
    assert_int_equal(bc_context_seq_truncate(ctx, 0, 0), BC_STATUS_OK);
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_free, 2);
    assert_int_equal(st.n_cached, 1);

    /* Seq 2 takes the free block, then evicts the cached one. */
    decode_run(ctx, 2, 2, 0, 20, V);
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_free, 0);
    assert_int_equal(st.n_evicted, 1);
    int32_t ids[20];
    for (int i = 0; i < 20; i++) ids[i] = token_at(0, i, V);
    assert_int_equal(bc_context_seq_reuse(ctx, 0, ids, 20, 19), 0); /* evicted: nothing to reuse */

    /* Reserving ahead: afterwards the decode needs no block. */
    assert_int_equal(bc_context_seq_truncate(ctx, 2, 0), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reserve(ctx, 0, 33), BC_STATUS_ERROR_KV_FULL); /* 3 blocks, 2 free */
    assert_int_equal(bc_context_seq_reserve(ctx, 0, 32), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_blocks_needed(ctx, 0, 32), 0);
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_free, 0);
    assert_int_equal(bc_context_seq_len(ctx, 0), 0);
    decode_run(ctx, 0, 1, 0, 20, V);
    assert_memory_equal(bc_context_logits(ctx, 19), alone + 19 * (size_t)V, (size_t)V * sizeof(float));
    free(alone);
    bc_context_free(ctx);
    bc_model_free(model);
}

/* Prefix reuse: whole cached blocks are taken, the rest computed, and the
 * logits are those of the whole sequence decoded alone; a partial reuse of a
 * block copies it before writing (the cached block stays intact); two
 * sequences that compute the same blocks at once end up sharing one copy. */
static void test_prefix_reuse(void **state) {
    (void)state;
    bc_model *model = load_fixture("b2_7b_f32_st");
    int V = n_vocab_of(model);
    const int len = 48;
    float *full = decode_alone_kv(model, 5, len + 1, 2, BC_DTYPE_F32);
    int32_t ids[48];
    for (int i = 0; i < len; i++) ids[i] = token_at(5, i, V);
    bc_context *ctx = new_context_kv(model, 64, 3, 64, 2, BC_DTYPE_F32, 0);

    decode_run(ctx, 0, 5, 0, 40, V);
    assert_int_equal(bc_context_seq_truncate(ctx, 0, 0), BC_STATUS_OK);
    bc_kv_stats st;
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_cached, 2); /* positions 0..31; 32..39 was a partial block */

    /* Not for a sequence that holds positions, nor with a different start. */
    int32_t other[48];
    memcpy(other, ids, sizeof other);
    other[3] ^= 1;
    assert_int_equal(bc_context_seq_reuse(ctx, 1, other, len, len - 1), 0);
    assert_int_equal(bc_context_seq_reuse(ctx, 1, ids, len, len - 1), 32);
    assert_int_equal(bc_context_seq_len(ctx, 1), 32);
    assert_int_equal(bc_context_seq_reuse(ctx, 1, ids, len, len - 1), 0);
    decode_run(ctx, 1, 5, 32, 48, V);
    double e = 0;
    for (int i = 32; i < 48; i++) {
        double ei = rel_err(bc_context_logits(ctx, i - 32), full + (size_t)i * (size_t)V, V);
        if (ei > e) e = ei;
    }
    printf("  reused 32 positions: rest vs whole-sequence logits max rel err %.3g\n", e);
    assert_true(e <= 1e-6);

    /* Seq 2 shares seq 1's three blocks up to position 46 and writes another
     * token at 47: it copies the third block first, so seq 1's stays. */
    assert_int_equal(bc_context_seq_reuse(ctx, 2, ids, len, len - 1), 47);
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_shared, 3);
    bc_batch_entry b = {2, 47, ids[47] == 3 ? 4 : 3, true};
    assert_int_equal(bc_context_decode(ctx, &b, 1), BC_STATUS_OK);
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_shared, 2);
    /* A new sequence finds seq 1's blocks intact: position 48 after them
     * gives the logits of the whole sequence decoded alone. */
    assert_int_equal(bc_context_seq_truncate(ctx, 1, 0), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reuse(ctx, 0, ids, len, len), 48);
    b = (bc_batch_entry){0, 48, token_at(5, 48, V), true};
    assert_int_equal(bc_context_decode(ctx, &b, 1), BC_STATUS_OK);
    assert_true(rel_err(bc_context_logits(ctx, 0), full + 48 * (size_t)V, V) <= 1e-6);

    /* Recomputing a cached block: once full, it is swapped for its twin. */
    assert_int_equal(bc_context_seq_truncate(ctx, 2, 0), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reuse(ctx, 2, ids, len, len - 1), 47);
    decode_run(ctx, 2, 5, 47, 48, V);
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_shared, 3);

    /* Twins: two sequences computing the same 32 positions in one batch. */
    for (int s = 0; s < 3; s++) assert_int_equal(bc_context_seq_truncate(ctx, s, 0), BC_STATUS_OK);
    bc_context_kv_stats(ctx, &st);
    int free_before = st.n_free;
    bc_batch_entry tw[64];
    for (int i = 0; i < 32; i++) {
        tw[2 * i] = (bc_batch_entry){0, i, token_at(8, i, V), false};
        tw[2 * i + 1] = (bc_batch_entry){1, i, token_at(8, i, V), false};
    }
    assert_int_equal(bc_context_decode(ctx, tw, 64), BC_STATUS_OK);
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_shared, 2);
    assert_int_equal(st.n_free, free_before - 2);
    free(full);
    bc_context_free(ctx);
    bc_model_free(model);
}

/* Forking: a prompt decoded once on seq 0, forked into seqs 1 and 2, each
 * continued with its own tokens; every continuation's logits are those of
 * its whole sequence decoded alone (bit for bit, f32 cache), and seq 0's
 * positions survive the writes of its forks. */
/* bc_context_parallel_for runs every index once, and 16 generators
 * stepped through it (two threads) draw exactly the ids and text of the
 * same generators stepped one after another: a sequence's sampling does
 * not depend on the others sampled beside it. */
typedef struct step_job {
    bc_generator **g;
    const float *rows;
    int n_vocab;
    int32_t *ids;
    int *hits;
    bc_generated *outs;
} step_job;

static void step_one(void *arg, int i) {
    step_job *j = arg;
    j->hits[i]++;
    assert_int_equal(bc_generator_step(j->g[i], j->rows + (size_t)i * (size_t)j->n_vocab, &j->outs[i]), BC_STATUS_OK);
    j->ids[i] = j->outs[i].id;
}

static void test_parallel_steps(void **state) {
    (void)state;
    enum { N = 16, STEPS = 12 };
    bc_model *model = load_fixture("gen_rope");
    bc_context *ctx = new_context(model, 64, 1, 16, 2);
    const char *dir = getenv("BC_FIXTURES");
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/gen_rope/tokenizer.model", dir);
    bc_tokenizer *tok = NULL;
    if (bc_tokenizer_load(path, &tok, err, sizeof err) != BC_STATUS_OK) fail_msg("%s: %s", path, err);
    bc_model_info info;
    bc_model_get_info(model, &info);
    const int V = info.n_vocab;
    bc_generator *g[2][N];
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < N; i++) {
            bc_generator_params p = bc_generator_default_params();
            p.sampler.temperature = 1.1f;
            p.sampler.top_k = i % 2 ? 0 : 20;
            p.sampler.top_p = i % 3 ? 1.0f : 0.9f;
            p.sampler.seed = 77 + (uint64_t)i;
            if (bc_generator_init(tok, p, &g[w][i], err, sizeof err) != BC_STATUS_OK) fail_msg("generator: %s", err);
        }
    float *rows = malloc((size_t)N * (size_t)V * sizeof *rows);
    assert_non_null(rows);
    uint64_t x = 12345;
    for (int step = 0; step < STEPS; step++) {
        for (size_t k = 0; k < (size_t)N * (size_t)V; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            rows[k] = (float)((x >> 40) % 1000) / 100.0f;
        }
        int32_t ids[2][N];
        int hits[N] = {0};
        bc_generated outs[N];
        step_job job = {g[0], rows, V, ids[0], hits, outs};
        bc_context_parallel_for(ctx, step_one, &job, N);
        for (int i = 0; i < N; i++) {
            assert_int_equal(hits[i], 1);
            bc_generated out;
            assert_int_equal(bc_generator_step(g[1][i], rows + (size_t)i * (size_t)V, &out), BC_STATUS_OK);
            ids[1][i] = out.id;
            if (ids[0][i] != ids[1][i])
                fail_msg("step %d sequence %d: %d in parallel, %d alone", step, i, ids[0][i], ids[1][i]);
            assert_int_equal(outs[i].text_len, out.text_len);
            if (out.text_len > 0) assert_memory_equal(outs[i].text, out.text, out.text_len);
        }
    }
    for (int i = 0; i < N; i++) {
        bc_generator_free(g[0][i]);
        bc_generator_free(g[1][i]);
    }
    free(rows);
    bc_tokenizer_free(tok);
    bc_context_free(ctx);
    bc_model_free(model);
}

/* A sequence alone in a pool of exactly its context, the prefix cache on:
 * cut back into a full block (indexed as it filled) and grown back to the
 * whole context, the block is written in place (no copy needing a block the
 * pool does not have), and the logits are those of the first time. */
static void test_truncate_into_indexed_block(void **state) {
    (void)state;
    bc_model *model = load_fixture("b2_7b_f32_st");
    const int V = n_vocab_of(model), n_ctx = 64;
    bc_context *ctx = new_context_kv(model, n_ctx, 1, n_ctx, 2, BC_DTYPE_F32, 0);
    decode_run(ctx, 0, 7, 0, n_ctx, V);
    float *first = malloc((size_t)V * sizeof(float));
    memcpy(first, bc_context_logits(ctx, n_ctx - 1), (size_t)V * sizeof(float));
    for (int cut = 40; cut >= 0; cut -= 20) { /* inside the third block, then the second, then none */
        assert_int_equal(bc_context_seq_truncate(ctx, 0, cut), BC_STATUS_OK);
        decode_run(ctx, 0, 7, cut, n_ctx, V);
        assert_memory_equal(bc_context_logits(ctx, n_ctx - cut - 1), first, (size_t)V * sizeof(float));
    }
    free(first);
    bc_context_free(ctx);
    bc_model_free(model);
}

static void test_fork(void **state) {
    (void)state;
    bc_model *model = load_fixture("b2_7b_f32_st");
    int V = n_vocab_of(model);
    const int n_prompt = 21, n_more = 14; /* the prompt ends inside its second block */
    bc_context *ctx = new_context_kv(model, 64, 4, 64, 2, BC_DTYPE_F32, 0);
    decode_run(ctx, 0, 9, 0, n_prompt, V);

    /* Errors leave everything as it was. */
    assert_int_equal(bc_context_seq_fork(ctx, 0, 0), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(bc_context_seq_fork(ctx, 0, 4), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(bc_context_seq_fork(ctx, -1, 1), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(bc_context_seq_fork(ctx, 1, 0), BC_STATUS_ERROR_ARGUMENT); /* seq 0 is not empty */
    assert_non_null(strstr(bc_context_error(ctx), "not empty"));
    assert_int_equal(bc_context_seq_len(ctx, 0), n_prompt);

    bc_kv_stats st;
    bc_context_kv_stats(ctx, &st);
    int free_before = st.n_free;
    assert_int_equal(bc_context_seq_fork(ctx, 0, 1), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_fork(ctx, 0, 2), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_len(ctx, 1), n_prompt);
    bc_context_kv_stats(ctx, &st);
    assert_int_equal(st.n_free, free_before); /* shared, not copied */
    assert_int_equal(st.n_shared, 2);
    /* The first write copies the partial block: one for it, one past it. */
    assert_int_equal(bc_context_seq_blocks_needed(ctx, 1, n_more), 2);

    /* Continuations: seq 1 goes on with tag 9's own tokens (the prompt's
     * sequence), seq 2 with tag 9's tokens but one changed at n_prompt. */
    float *whole = decode_alone_kv(model, 9, n_prompt + n_more, 2, BC_DTYPE_F32);
    decode_run(ctx, 1, 9, n_prompt, n_prompt + n_more, V);
    for (int i = n_prompt; i < n_prompt + n_more; i++)
        assert_memory_equal(bc_context_logits(ctx, i - n_prompt), whole + (size_t)i * (size_t)V,
                            (size_t)V * sizeof(float));

    bc_batch_entry b = {2, n_prompt, token_at(9, n_prompt, V) == 3 ? 4 : 3, true};
    assert_int_equal(bc_context_decode(ctx, &b, 1), BC_STATUS_OK);
    float *differs = malloc((size_t)V * sizeof(float));
    memcpy(differs, bc_context_logits(ctx, 0), (size_t)V * sizeof(float));
    /* Expected for seq 2: a fresh sequence with the same ids, decoded alone. */
    bc_context *fresh = new_context_kv(model, 64, 1, 64, 2, BC_DTYPE_F32, 0);
    bc_batch_entry fb[64];
    for (int i = 0; i < n_prompt; i++) fb[i] = (bc_batch_entry){0, i, token_at(9, i, V), false};
    fb[n_prompt] = (bc_batch_entry){0, n_prompt, b.token, true};
    assert_int_equal(bc_context_decode(fresh, fb, n_prompt + 1), BC_STATUS_OK);
    assert_memory_equal(differs, bc_context_logits(fresh, n_prompt), (size_t)V * sizeof(float));
    bc_context_free(fresh);

    /* Seq 0 is untouched by its forks' writes: it goes on exactly as the
     * whole sequence does. */
    decode_run(ctx, 0, 9, n_prompt, n_prompt + 3, V);
    for (int i = n_prompt; i < n_prompt + 3; i++)
        assert_memory_equal(bc_context_logits(ctx, i - n_prompt), whole + (size_t)i * (size_t)V,
                            (size_t)V * sizeof(float));

    /* Reserved blocks past src's positions are not shared. */
    assert_int_equal(bc_context_seq_truncate(ctx, 2, 0), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reserve(ctx, 0, 20), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_fork(ctx, 0, 3), BC_STATUS_OK);
    /* Both must copy the shared partial block (positions 16..31); only seq 3
     * needs a block for positions 32..43, which seq 0 reserved. */
    assert_int_equal(bc_context_seq_len(ctx, 3), n_prompt + 3);
    assert_int_equal(bc_context_seq_blocks_needed(ctx, 0, 20), 1);
    assert_int_equal(bc_context_seq_blocks_needed(ctx, 3, 20), 2);
    free(differs);
    free(whole);
    bc_context_free(ctx);
    bc_model_free(model);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DEFAULT_MODEL_DIR\n", argv[0]);
        return 2;
    }
    default_model = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_alone), cmocka_unit_test(test_incremental_equals_full),
        cmocka_unit_test(test_threads_identical),    cmocka_unit_test(test_chunking_bit_identical),
        cmocka_unit_test(test_bad_batches),          cmocka_unit_test(test_profile),
        cmocka_unit_test(test_cache_types),          cmocka_unit_test(test_paged_pool),
        cmocka_unit_test(test_prefix_reuse),         cmocka_unit_test(test_fork),
        cmocka_unit_test(test_parallel_steps),       cmocka_unit_test(test_truncate_into_indexed_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

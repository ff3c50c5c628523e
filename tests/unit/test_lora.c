/*
 * test_lora.c - LoRA adapters through the public API:
 *   - a batch mixing sequences under four different adapters, a set of two,
 *     and none gives each sequence the bits it gets decoded alone (prompt
 *     chunks and single steps interleaved), RoPE and ALiBi
 *   - an adapter changes the logits; scale 0 gives the base's bits
 *   - the prefix cache is keyed by adapter set: blocks computed under one set
 *     are never reused under another or the base, and are reused under the
 *     same set with the logits of a fresh computation
 *   - bc_context_seq_set_loras refuses a non-empty sequence, too many
 *     adapters and an adapter of another model; a fork keeps the adapters
 * The adapters are PEFT-layout directories this test writes (safetensors
 * with seeded random factors, f32, f16 and bf16). Runs on the fixture
 * checkpoints made by tools/gen_fixtures.py (BC_FIXTURES).
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
#include <sys/stat.h>
#include <unistd.h>

#include "baichuan.h"

static bc_model *load_fixture(const char *name) {
    const char *dir = getenv("BC_FIXTURES");
    assert_non_null(dir);
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    bc_model *model = NULL;
    if (bc_model_load(path, bc_model_default_params(), &model, err, sizeof err) != BC_STATUS_OK)
        fail_msg("loading %s: %s", path, err);
    return model;
}

/* ------------------------------------------------------------------------ */
/* Writing adapters                                                         */
/* ------------------------------------------------------------------------ */

typedef struct adapter_spec {
    int rank;
    unsigned modules;  /* bc_lora_module bits */
    const char *dtype; /* "F32", "F16", "BF16" */
    bool rslora;
    uint64_t seed;
} adapter_spec;

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Uniform in [-a, a). */
static float rng_uniform(uint64_t *s, float a) { return a * (2.0f * (float)(rng_next(s) >> 40) / 16777216.0f - 1.0f); }

static uint16_t to_f16(float f) {
    /* Round to nearest for the normal range these values stay in. */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int e = (int)((x >> 23) & 0xff) - 127 + 15;
    uint32_t m = x & 0x7fffffu;
    if (e <= 0) return (uint16_t)sign; /* tiny: zero */
    uint32_t h = sign | ((uint32_t)e << 10) | (m >> 13);
    if ((m & 0x1fffu) > 0x1000u || ((m & 0x1fffu) == 0x1000u && (h & 1u))) h++;
    return (uint16_t)h;
}

static uint16_t to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors for a
 * model of the given shape. */
static void write_adapter(const char *dir, const adapter_spec *a, int n_embd, int n_ff, int n_layer) {
    static const char *const paths[] = {"self_attn.W_pack", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                        "mlp.down_proj"};
    static const char *const names[] = {"W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"};
    mkdir(dir, 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"peft_type\": \"LORA\", \"r\": %d, \"lora_alpha\": 16, \"use_rslora\": %s, \"bias\": \"none\", "
            "\"fan_in_fan_out\": false, \"task_type\": \"CAUSAL_LM\", \"target_modules\": [",
            a->rank, a->rslora ? "true" : "false");
    for (int m = 0, k = 0; m < 5; m++)
        if (a->modules & (1u << m)) fprintf(f, "%s\"%s\"", k++ ? ", " : "", names[m]);
    fprintf(f, "]}\n");
    fclose(f);

    const size_t esize = strcmp(a->dtype, "F32") == 0 ? 4 : 2;
    char *header = malloc(1 << 20);
    size_t hl = 0, data_bytes = 0;
    hl += (size_t)sprintf(header + hl, "{");
    for (int il = 0; il < n_layer; il++)
        for (int m = 0; m < 5; m++) {
            if (!(a->modules & (1u << m))) continue;
            const int in = m == 4 ? n_ff : n_embd, out = m == 0 ? 3 * n_embd : m == 2 || m == 3 ? n_ff : n_embd;
            for (int b = 0; b < 2; b++) {
                const int rows = b ? out : a->rank, cols = b ? a->rank : in;
                size_t n = (size_t)rows * (size_t)cols * esize;
                hl += (size_t)sprintf(header + hl,
                                      "%s\"base_model.model.model.layers.%d.%s.lora_%c.weight\": {\"dtype\": \"%s\", "
                                      "\"shape\": [%d, %d], \"data_offsets\": [%zu, %zu]}",
                                      hl > 1 ? ", " : "", il, paths[m], b ? 'B' : 'A', a->dtype, rows, cols, data_bytes,
                                      data_bytes + n);
                data_bytes += n;
            }
        }
    hl += (size_t)sprintf(header + hl, "}");
    while (hl % 8) header[hl++] = ' ';
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t h64 = hl;
    fwrite(&h64, 8, 1, f);
    fwrite(header, 1, hl, f);
    uint64_t s = a->seed;
    /* A's entries ~0.3, B's so that the update is a visible change */
    for (int il = 0; il < n_layer; il++)
        for (int m = 0; m < 5; m++) {
            if (!(a->modules & (1u << m))) continue;
            const int in = m == 4 ? n_ff : n_embd, out = m == 0 ? 3 * n_embd : m == 2 || m == 3 ? n_ff : n_embd;
            for (int b = 0; b < 2; b++) {
                size_t n = (size_t)(b ? out : a->rank) * (size_t)(b ? a->rank : in);
                for (size_t i = 0; i < n; i++) {
                    float v = rng_uniform(&s, b ? 0.02f : 0.3f);
                    if (esize == 4)
                        fwrite(&v, 4, 1, f);
                    else {
                        uint16_t h = strcmp(a->dtype, "F16") == 0 ? to_f16(v) : to_bf16(v);
                        fwrite(&h, 2, 1, f);
                    }
                }
            }
        }
    fclose(f);
    free(header);
}

static char tmp_root[256];

static bc_lora *make_lora(const bc_model *model, const char *name, const adapter_spec *a, float scale) {
    bc_model_info info;
    bc_model_get_info(model, &info);
    char dir[512], err[1024];
    snprintf(dir, sizeof dir, "%s/%s", tmp_root, name);
    write_adapter(dir, a, info.n_embd, info.n_ff, info.n_layer);
    bc_lora *l = NULL;
    if (bc_lora_load(model, dir, scale, &l, err, sizeof err) != BC_STATUS_OK) fail_msg("bc_lora_load %s: %s", dir, err);
    return l;
}

static int setup(void **state) {
    (void)state;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/test_lora.XXXXXX");
    return mkdtemp(tmp_root) == NULL ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Contexts                                                                 */
/* ------------------------------------------------------------------------ */

static bc_context *new_context(const bc_model *model, int n_ctx, int n_seq, int n_batch, bool prefix_cache) {
    bc_context_params p = bc_context_default_params();
    p.n_ctx = n_ctx;
    p.n_seq = n_seq;
    p.n_batch = n_batch;
    p.n_threads = 2;
    p.cache_type = BC_DTYPE_F32;
    p.prefix_cache = prefix_cache;
    bc_context *ctx = NULL;
    char err[1024];
    if (bc_context_init(model, p, &ctx, err, sizeof err) != BC_STATUS_OK) fail_msg("context: %s", err);
    return ctx;
}

static int32_t token_of(int seq, int pos, int n_vocab) { return (int32_t)((seq * 7919 + pos * 104729 + 13) % n_vocab); }

enum { N_SEQ = 6, PROMPT = 21, STEPS = 4, LEN = PROMPT + STEPS };

/* The sets of the sequences: four single adapters, the base, a pair. */
static int set_of(bc_lora *const *loras, int seq, const bc_lora **set) {
    switch (seq) {
    case 4: return 0;
    case 5:
        set[0] = loras[1];
        set[1] = loras[0];
        return 2;
    default: set[0] = loras[seq]; return 1;
    }
}

/* logits (LEN, n_vocab) of sequence seq decoded alone: the prompt in one
 * pass, then one token per pass. */
static void decode_alone(const bc_model *model, bc_lora *const *loras, int seq, int n_vocab, float *out) {
    bc_context *ctx = new_context(model, LEN, 1, LEN, false);
    const bc_lora *set[BC_MAX_SEQ_LORAS];
    int n = set_of(loras, seq, set);
    assert_int_equal(bc_context_seq_set_loras(ctx, 0, set, n), BC_STATUS_OK);
    bc_batch_entry b[PROMPT];
    for (int i = 0; i < PROMPT; i++) b[i] = (bc_batch_entry){0, i, token_of(seq, i, n_vocab), true};
    assert_int_equal(bc_context_decode(ctx, b, PROMPT), BC_STATUS_OK);
    for (int i = 0; i < PROMPT; i++) memcpy(out + (size_t)i * n_vocab, bc_context_logits(ctx, i), (size_t)n_vocab * 4);
    for (int i = PROMPT; i < LEN; i++) {
        b[0] = (bc_batch_entry){0, i, token_of(seq, i, n_vocab), true};
        assert_int_equal(bc_context_decode(ctx, b, 1), BC_STATUS_OK);
        memcpy(out + (size_t)i * n_vocab, bc_context_logits(ctx, 0), (size_t)n_vocab * 4);
    }
    bc_context_free(ctx);
}

static void mixed_batch(const char *fixture) {
    bc_model *model = load_fixture(fixture);
    bc_model_info info;
    bc_model_get_info(model, &info);
    const int V = info.n_vocab;
    const adapter_spec specs[4] = {
        {16, 0x1f, "F32", false, 1},                                             /* all five modules */
        {1, BC_LORA_MODULE_W_PACK, "F16", false, 2},                             /* the official recipe */
        {4, BC_LORA_MODULE_GATE_PROJ | BC_LORA_MODULE_UP_PROJ, "BF16", true, 3}, /* before the SwiGLU */
        {8, BC_LORA_MODULE_O_PROJ | BC_LORA_MODULE_DOWN_PROJ, "F32", false, 4},
    };
    bc_lora *loras[4];
    for (int k = 0; k < 4; k++) {
        char name[32];
        snprintf(name, sizeof name, "%s_%d", fixture, k);
        loras[k] = make_lora(model, name, &specs[k], 1.0f);
    }
    float *alone = malloc((size_t)N_SEQ * LEN * (size_t)V * 4), *mixed = malloc((size_t)N_SEQ * LEN * (size_t)V * 4);
    assert_non_null(alone);
    assert_non_null(mixed);
    for (int s = 0; s < N_SEQ; s++) decode_alone(model, loras, s, V, alone + (size_t)s * LEN * V);

    /* Each adapter changes its sequence's logits: the adapters are not no-ops. */
    {
        bc_context *ctx = new_context(model, LEN, 1, LEN, false);
        bc_batch_entry b[PROMPT];
        for (int s = 0; s < 4; s++) {
            assert_int_equal(bc_context_seq_truncate(ctx, 0, 0), BC_STATUS_OK);
            for (int i = 0; i < PROMPT; i++) b[i] = (bc_batch_entry){0, i, token_of(s, i, V), i == PROMPT - 1};
            assert_int_equal(bc_context_decode(ctx, b, PROMPT), BC_STATUS_OK);
            const float *base = bc_context_logits(ctx, PROMPT - 1), *with = alone + ((size_t)s * LEN + PROMPT - 1) * V;
            double d = 0;
            for (int v = 0; v < V; v++) d = fmax(d, fabs((double)base[v] - with[v]));
            if (d < 1e-3) fail_msg("%s: adapter %d changes the logits by only %g", fixture, s, d);
        }
        bc_context_free(ctx);
    }

    /* All together: prompts split in chunks of different lengths, the rest
     * one token a step, each step holding every sequence's next entries. */
    bc_context *ctx = new_context(model, LEN, N_SEQ, N_SEQ * PROMPT, false);
    for (int s = 0; s < N_SEQ; s++) {
        const bc_lora *set[BC_MAX_SEQ_LORAS];
        int n = set_of(loras, s, set);
        assert_int_equal(bc_context_seq_set_loras(ctx, s, set, n), BC_STATUS_OK);
    }
    int pos[N_SEQ] = {0};
    bc_batch_entry b[N_SEQ * PROMPT];
    for (int step = 0; step < 40; step++) {
        int n = 0;
        for (int s = 0; s < N_SEQ; s++) {
            int take = pos[s] < PROMPT ? 1 + (s * 3 + step) % 7 : 1;
            if (pos[s] < PROMPT && pos[s] + take > PROMPT) take = PROMPT - pos[s];
            if ((step + s) % 5 == 0) take = 0; /* a sequence sits out a step now and then */
            for (int i = 0; i < take && pos[s] < LEN; i++, pos[s]++)
                b[n++] = (bc_batch_entry){s, pos[s], token_of(s, pos[s], V), true};
        }
        if (n == 0) continue;
        assert_int_equal(bc_context_decode(ctx, b, n), BC_STATUS_OK);
        for (int i = 0; i < n; i++)
            memcpy(mixed + ((size_t)b[i].seq * LEN + (size_t)b[i].pos) * V, bc_context_logits(ctx, i), (size_t)V * 4);
    }
    for (int s = 0; s < N_SEQ; s++) assert_int_equal(pos[s], LEN);
    for (int s = 0; s < N_SEQ; s++)
        for (int p = 0; p < LEN; p++)
            if (memcmp(alone + ((size_t)s * LEN + p) * V, mixed + ((size_t)s * LEN + p) * V, (size_t)V * 4) != 0)
                fail_msg("%s: sequence %d position %d: the mixed batch's logits differ from those decoded alone",
                         fixture, s, p);
    bc_context_free(ctx);

    /* Scale 0: the base's bits (the adapter adds exact zeros). */
    {
        char dir[512], err[1024];
        snprintf(dir, sizeof dir, "%s/%s_0", tmp_root, fixture);
        bc_lora *zero = NULL;
        assert_int_equal(bc_lora_load(model, dir, 0.0f, &zero, err, sizeof err), BC_STATUS_OK);
        bc_lora *zl[4] = {zero, zero, zero, zero};
        float *z = malloc((size_t)LEN * V * 4), *base = malloc((size_t)PROMPT * V * 4);
        decode_alone(model, zl, 0, V, z); /* sequence 0's tokens under {zero} */
        bc_context *c2 = new_context(model, LEN, 1, LEN, false);
        bc_batch_entry bb[PROMPT];
        for (int i = 0; i < PROMPT; i++) bb[i] = (bc_batch_entry){0, i, token_of(0, i, V), true};
        assert_int_equal(bc_context_decode(c2, bb, PROMPT), BC_STATUS_OK);
        for (int i = 0; i < PROMPT; i++) memcpy(base + (size_t)i * V, bc_context_logits(c2, i), (size_t)V * 4);
        assert_memory_equal(z, base, (size_t)PROMPT * V * 4);
        free(base);
        bc_context_free(c2);
        free(z);
        bc_lora_free(zero);
    }
    free(alone);
    free(mixed);
    for (int k = 0; k < 4; k++) bc_lora_free(loras[k]);
    bc_model_free(model);
}

static void test_mixed_batch_rope(void **state) {
    (void)state;
    mixed_batch("b2_7b_f32_st");
}

static void test_mixed_batch_alibi(void **state) {
    (void)state;
    mixed_batch("b1_13b_f32_bin");
}

/* ------------------------------------------------------------------------ */
/* The prefix cache                                                         */
/* ------------------------------------------------------------------------ */

enum { PC_TOKENS = 2 * BC_KV_BLOCK + 3 };

static void decode_tokens(bc_context *ctx, int seq, const int32_t *ids, int from, int to) {
    bc_batch_entry b[PC_TOKENS + 1];
    for (int i = from; i < to; i++) b[i - from] = (bc_batch_entry){seq, i, ids[i], i == to - 1};
    assert_int_equal(bc_context_decode(ctx, b, to - from), BC_STATUS_OK);
}

static void test_prefix_cache_keyed(void **state) {
    (void)state;
    bc_model *model = load_fixture("b2_7b_f32_st");
    bc_model_info info;
    bc_model_get_info(model, &info);
    const int V = info.n_vocab;
    const adapter_spec sa = {4, 0x1f, "F32", false, 11}, sb = {2, BC_LORA_MODULE_W_PACK, "F32", false, 12};
    bc_lora *a = make_lora(model, "pc_a", &sa, 1.0f), *b = make_lora(model, "pc_b", &sb, 1.0f);
    int32_t ids[PC_TOKENS + 1];
    for (int i = 0; i <= PC_TOKENS; i++) ids[i] = token_of(3, i, V);

    bc_context *ctx = new_context(model, 64, 8, 64, true);
    const bc_lora *set_a[1] = {a}, *set_b[1] = {b}, *set_ab[2] = {a, b}, *set_ba[2] = {b, a};
    /* seq 0 under a computes two full blocks, then lets them go to the cache */
    assert_int_equal(bc_context_seq_set_loras(ctx, 0, set_a, 1), BC_STATUS_OK);
    decode_tokens(ctx, 0, ids, 0, PC_TOKENS);
    /* a sequence holding positions cannot change adapters */
    assert_int_equal(bc_context_seq_set_loras(ctx, 0, set_b, 1), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(bc_context_seq_truncate(ctx, 0, 0), BC_STATUS_OK);

    /* the base, b, {a, b} and {b, a} find nothing */
    assert_int_equal(bc_context_seq_reuse(ctx, 1, ids, PC_TOKENS, PC_TOKENS), 0);
    assert_int_equal(bc_context_seq_set_loras(ctx, 2, set_b, 1), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reuse(ctx, 2, ids, PC_TOKENS, PC_TOKENS), 0);
    assert_int_equal(bc_context_seq_set_loras(ctx, 3, set_ab, 2), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reuse(ctx, 3, ids, PC_TOKENS, PC_TOKENS), 0);
    assert_int_equal(bc_context_seq_set_loras(ctx, 3, set_ba, 2), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reuse(ctx, 3, ids, PC_TOKENS, PC_TOKENS), 0);
    /* the same adapter (another sequence) finds both blocks */
    assert_int_equal(bc_context_seq_set_loras(ctx, 4, set_a, 1), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reuse(ctx, 4, ids, PC_TOKENS, PC_TOKENS), 2 * BC_KV_BLOCK);
    /* and goes on with the logits a fresh computation under a gives */
    decode_tokens(ctx, 4, ids, 2 * BC_KV_BLOCK, PC_TOKENS + 1);
    float *reused = malloc((size_t)V * 4);
    memcpy(reused, bc_context_logits(ctx, PC_TOKENS - 2 * BC_KV_BLOCK), (size_t)V * 4);

    /* now the base computes the same ids: a sequence under a must still get
     * a's blocks, and the base its own */
    decode_tokens(ctx, 1, ids, 0, PC_TOKENS);
    assert_int_equal(bc_context_seq_truncate(ctx, 1, 0), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reuse(ctx, 5, ids, PC_TOKENS, PC_TOKENS), 2 * BC_KV_BLOCK);
    decode_tokens(ctx, 5, ids, 2 * BC_KV_BLOCK, PC_TOKENS + 1);
    float *base_reused = malloc((size_t)V * 4);
    memcpy(base_reused, bc_context_logits(ctx, PC_TOKENS - 2 * BC_KV_BLOCK), (size_t)V * 4);
    /* under a again (after the base's blocks were indexed): a's blocks */
    assert_int_equal(bc_context_seq_set_loras(ctx, 7, set_a, 1), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_reuse(ctx, 7, ids, PC_TOKENS, PC_TOKENS), 2 * BC_KV_BLOCK);
    decode_tokens(ctx, 7, ids, 2 * BC_KV_BLOCK, PC_TOKENS + 1);
    assert_memory_equal(reused, bc_context_logits(ctx, PC_TOKENS - 2 * BC_KV_BLOCK), (size_t)V * 4);
    /* a fork keeps the adapters: its next token's logits are a's */
    assert_int_equal(bc_context_seq_truncate(ctx, 4, PC_TOKENS), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_fork(ctx, 4, 6), BC_STATUS_OK);
    decode_tokens(ctx, 6, ids, PC_TOKENS, PC_TOKENS + 1);
    assert_memory_equal(reused, bc_context_logits(ctx, 0), (size_t)V * 4);
    bc_context_free(ctx);

    bc_context *fresh = new_context(model, 64, 1, 64, false);
    assert_int_equal(bc_context_seq_set_loras(fresh, 0, set_a, 1), BC_STATUS_OK);
    decode_tokens(fresh, 0, ids, 0, PC_TOKENS + 1);
    assert_memory_equal(reused, bc_context_logits(fresh, PC_TOKENS), (size_t)V * 4);
    assert_int_equal(bc_context_seq_truncate(fresh, 0, 0), BC_STATUS_OK);
    assert_int_equal(bc_context_seq_set_loras(fresh, 0, NULL, 0), BC_STATUS_OK);
    decode_tokens(fresh, 0, ids, 0, PC_TOKENS + 1);
    assert_memory_equal(base_reused, bc_context_logits(fresh, PC_TOKENS), (size_t)V * 4);
    bc_context_free(fresh);
    free(reused);
    free(base_reused);
    bc_lora_free(a);
    bc_lora_free(b);
    bc_model_free(model);
}

static void test_set_loras_refusals(void **state) {
    (void)state;
    bc_model *model = load_fixture("b2_7b_f32_st"), *other = load_fixture("b1_13b_f32_bin");
    const adapter_spec s = {2, BC_LORA_MODULE_W_PACK, "F32", false, 21};
    bc_lora *l = make_lora(model, "ref_a", &s, 1.0f), *lo = make_lora(other, "ref_b", &s, 1.0f);
    bc_context *ctx = new_context(model, 32, 2, 32, true);
    const bc_lora *many[BC_MAX_SEQ_LORAS + 1];
    for (int i = 0; i <= BC_MAX_SEQ_LORAS; i++) many[i] = l;
    assert_int_equal(bc_context_seq_set_loras(ctx, 0, many, BC_MAX_SEQ_LORAS + 1), BC_STATUS_ERROR_ARGUMENT);
    assert_int_equal(bc_context_seq_set_loras(ctx, 0, many, BC_MAX_SEQ_LORAS), BC_STATUS_OK);
    const bc_lora *foreign[1] = {lo};
    assert_int_equal(bc_context_seq_set_loras(ctx, 1, foreign, 1), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(bc_context_error(ctx), "another model"));
    assert_int_equal(bc_context_seq_set_loras(ctx, 2, foreign, 0), BC_STATUS_ERROR_ARGUMENT);
    bc_lora_info li;
    bc_lora_get_info(l, &li);
    assert_int_equal(li.rank, 2);
    assert_int_equal(li.modules, BC_LORA_MODULE_W_PACK);
    assert_int_equal(li.n_matrices, 2);          /* two layers */
    assert_true(fabsf(li.scale - 8.0f) < 1e-6f); /* alpha 16 / r 2 */
    bc_context_free(ctx);
    bc_lora_free(l);
    bc_lora_free(lo);
    bc_model_free(other);
    bc_model_free(model);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_batch_rope),
        cmocka_unit_test(test_mixed_batch_alibi),
        cmocka_unit_test(test_prefix_cache_keyed),
        cmocka_unit_test(test_set_loras_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

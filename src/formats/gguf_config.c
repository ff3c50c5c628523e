/*
 * gguf_config.c - hyper-parameters and variant of a Baichuan GGUF file.
 *
 * Keys (llama.cpp's names for arch "baichuan"):
 *   general.architecture                      must be "baichuan"
 *   baichuan.embedding_length                 n_embd
 *   baichuan.feed_forward_length              n_ff
 *   baichuan.block_count                      n_layer
 *   baichuan.attention.head_count             n_head
 *   baichuan.attention.head_count_kv          must equal n_head if present
 *   baichuan.attention.layer_norm_rms_epsilon norm_eps (default 1e-6)
 *   baichuan.context_length                   n_ctx_train (default 4096)
 *   baichuan.rope.dimension_count             must be head_dim if present
 *   baichuan.rope.freq_base                   rope_theta (default 10000)
 *   tokenizer.ggml.tokens                     n_vocab (else token_embd rows)
 *   tokenizer.ggml.{bos,eos,padding}_token_id
 * Variant: position encoding from our explicit baichuan.position_encoding
 * ("rope" / "alibi"), else llama.cpp's rule (ALiBi iff block_count == 40);
 * NormHead from baichuan.norm_head, else vocab 125696. Load params win.
 */
#include "formats/gguf_config.h"

#include <string.h>

#define BAICHUAN2_VOCAB 125696
#define MAX_DIM         (1 << 20)
#define MAX_LAYERS      1024

static int get_required(const bc__gguf *g, const char *key, int64_t lo, int64_t hi, int *out, bc__err *err) {
    int64_t v;
    int r = bc__gguf_get_int(g, key, lo, hi, &v, err);
    if (r < 0) return -1;
    if (r == 0) return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: metadata '%s' is missing", g->file->path, key);
    *out = (int)v;
    return 0;
}

static int get_optional(const bc__gguf *g, const char *key, int64_t lo, int64_t hi, int def, int *out, bc__err *err) {
    int64_t v;
    int r = bc__gguf_get_int(g, key, lo, hi, &v, err);
    if (r < 0) return -1;
    *out = r ? (int)v : def;
    return 0;
}

int bc__gguf_config_read(const bc__gguf *g, const bc__tensor_table *t, bc_model_params params, bc__hparams *hp,
                         bc__err *err) {
    const char *path = g->file->path;
    memset(hp, 0, sizeof *hp);
    const char *s;
    size_t n;
    int r = bc__gguf_get_str(g, "general.architecture", &s, &n, err);
    if (r < 0) return -1;
    if (r == 0) return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: metadata 'general.architecture' is missing", path);
    if (n != 8 || memcmp(s, "baichuan", 8) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: general.architecture is \"%.*s\", not \"baichuan\"", path,
                          (int)(n > 64 ? 64 : n), s);
    strcpy(hp->architecture, "baichuan");

    if (get_required(g, "baichuan.embedding_length", 1, MAX_DIM, &hp->n_embd, err) != 0 ||
        get_required(g, "baichuan.feed_forward_length", 1, MAX_DIM, &hp->n_ff, err) != 0 ||
        get_required(g, "baichuan.block_count", 1, MAX_LAYERS, &hp->n_layer, err) != 0 ||
        get_required(g, "baichuan.attention.head_count", 1, MAX_DIM, &hp->n_head, err) != 0)
        return -1;
    if (hp->n_embd % hp->n_head != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: baichuan.embedding_length %d is not a multiple of baichuan.attention.head_count %d",
                          path, hp->n_embd, hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    int n_head_kv, n_rot;
    if (get_optional(g, "baichuan.attention.head_count_kv", 1, MAX_DIM, hp->n_head, &n_head_kv, err) != 0 ||
        get_optional(g, "baichuan.rope.dimension_count", 0, MAX_DIM, hp->head_dim, &n_rot, err) != 0 ||
        get_optional(g, "baichuan.context_length", 1, 1 << 24, 4096, &hp->n_ctx_train, err) != 0)
        return -1;
    if (n_head_kv != hp->n_head)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: baichuan.attention.head_count_kv is %d but head_count is %d (Baichuan has no grouped "
                          "attention)",
                          path, n_head_kv, hp->n_head);
    if (n_rot != hp->head_dim)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: baichuan.rope.dimension_count is %d; only full-head rotary (%d) is supported", path,
                          n_rot, hp->head_dim);
    hp->has_max_position_embeddings = false;

    double x;
    hp->norm_eps = 1e-6f;
    hp->rope_theta = 10000.0f;
    if ((r = bc__gguf_get_float(g, "baichuan.attention.layer_norm_rms_epsilon", &x, err)) < 0) return -1;
    if (r) {
        if (!(x >= 0.0 && x <= 1.0))
            return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                              "%s: baichuan.attention.layer_norm_rms_epsilon is %g, outside [0, 1]", path, x);
        hp->norm_eps = (float)x;
    }
    if ((r = bc__gguf_get_float(g, "baichuan.rope.freq_base", &x, err)) < 0) return -1;
    if (r) {
        if (!(x >= 1.0 && x <= 1e12))
            return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: baichuan.rope.freq_base is %g, outside [1, 1e12]", path,
                              x);
        hp->rope_theta = (float)x;
    }

    /* Vocabulary: the token list, else the embedding's rows. */
    const bc__gguf_kv *tokens = bc__gguf_find(g, "tokenizer.ggml.tokens");
    const bc__tensor *embd = bc__table_find(t, "token_embd.weight");
    if (tokens != NULL) {
        if (tokens->type != BC__GGUF_ARRAY || tokens->arr_type != BC__GGUF_STRING)
            return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                              "%s: tokenizer.ggml.tokens (byte %llu) is not an array of "
                              "strings",
                              path, (unsigned long long)tokens->offset);
        if (tokens->arr_n < 1 || tokens->arr_n > 4ull * MAX_DIM)
            return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: tokenizer.ggml.tokens has %llu entries", path,
                              (unsigned long long)tokens->arr_n);
        hp->n_vocab = (int)tokens->arr_n;
    } else if (embd != NULL && embd->n_dims == 2 && embd->shape[0] >= 1 && embd->shape[0] <= 4LL * MAX_DIM) {
        hp->n_vocab = (int)embd->shape[0];
    } else {
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: cannot tell the vocabulary size (no tokenizer.ggml.tokens, no usable token_embd.weight)",
                          path);
    }
    if (get_optional(g, "tokenizer.ggml.bos_token_id", 0, hp->n_vocab - 1, 1, &hp->bos_token_id, err) != 0 ||
        get_optional(g, "tokenizer.ggml.eos_token_id", 0, hp->n_vocab - 1, 2, &hp->eos_token_id, err) != 0 ||
        get_optional(g, "tokenizer.ggml.padding_token_id", 0, hp->n_vocab - 1, 0, &hp->pad_token_id, err) != 0)
        return -1;

    /* Position encoding: param > our key > llama.cpp's layer-count rule. */
    if ((r = bc__gguf_get_str(g, "baichuan.position_encoding", &s, &n, err)) < 0) return -1;
    if (params.pos_encoding != BC_POS_ENCODING_AUTO) {
        hp->pos_encoding = params.pos_encoding;
        hp->pos_encoding_explicit = true;
    } else if (r) {
        if (n == 4 && memcmp(s, "rope", 4) == 0)
            hp->pos_encoding = BC_POS_ENCODING_ROPE;
        else if (n == 5 && memcmp(s, "alibi", 5) == 0)
            hp->pos_encoding = BC_POS_ENCODING_ALIBI;
        else
            return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                              "%s: baichuan.position_encoding is \"%.*s\"; expected \"rope\" or \"alibi\"", path,
                              (int)(n > 64 ? 64 : n), s);
        hp->pos_encoding_explicit = true;
    } else {
        hp->pos_encoding = hp->n_layer == 40 ? BC_POS_ENCODING_ALIBI : BC_POS_ENCODING_ROPE;
    }
    if (hp->pos_encoding == BC_POS_ENCODING_ROPE && hp->head_dim % 2 != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: RoPE needs an even head dimension, got %d", path,
                          hp->head_dim);
    /* Split Q/K rows are in interleaved pairs per head, for ALiBi files too. */
    if (hp->head_dim % 2 != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: head dimension %d is odd; llama.cpp's Q/K layout needs it even", path, hp->head_dim);

    /* NormHead: param > our key > vocabulary rule. */
    bool nh;
    if ((r = bc__gguf_get_bool(g, "baichuan.norm_head", &nh, err)) < 0) return -1;
    if (params.norm_head != BC_SWITCH_AUTO) {
        hp->norm_head = params.norm_head == BC_SWITCH_ON;
        hp->norm_head_explicit = true;
    } else if (r) {
        hp->norm_head = nh;
        hp->norm_head_explicit = true;
    } else {
        hp->norm_head = hp->n_vocab == BAICHUAN2_VOCAB;
    }
    return 0;
}

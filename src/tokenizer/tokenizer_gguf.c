/*
 * tokenizer_gguf.c - the SentencePiece tokenizer from a GGUF file's
 * tokenizer.ggml.* metadata, as llama.cpp's converters and `baichuan
 * quantize` write it.
 *
 * A GGUF "llama" vocabulary holds what encoding needs of a tokenizer.model:
 *   tokenizer.ggml.tokens       string[n]  the pieces (U+2581 for spaces)
 *   tokenizer.ggml.scores       f32[n]     merge priority
 *   tokenizer.ggml.token_type   i32[n]     SentencePiece's piece types 1..6
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id   u32
 *   tokenizer.ggml.add_bos_token / add_eos_token        bool
 *   tokenizer.ggml.add_space_prefix                     bool
 *   tokenizer.ggml.remove_extra_whitespaces             bool
 *   tokenizer.ggml.precompiled_charsmap                 u8[] (optional)
 * and the rest is rebuilt: a BPE trainer spec with byte fallback when the
 * vocabulary has byte pieces (<0xXX>, type 6), an escaping normalizer whose
 * add_dummy_prefix and remove_extra_whitespaces come from the keys above,
 * with llama.cpp's defaults when they are absent (a dummy prefix: yes; extra
 * whitespace removal: no; BOS added: yes). There is no character map unless
 * the file carries one: Baichuan's tokenizers use the identity normalizer,
 * so their GGUFs lose nothing. Pieces after the tokenizer.model's (llama.cpp
 * pads the vocabulary with "[PADn]", type unused) are never produced.
 *
 * The chat settings are not llama.cpp keys: `baichuan quantize` stores
 * generation_config.json's as baichuan.user_token_id,
 * baichuan.assistant_token_id and baichuan.max_new_tokens; without them they
 * are Baichuan's 195, 196 and 2048.
 * model_max_length comes from baichuan.context_length (default 4096).
 */
#include "tokenizer/tokenizer_gguf.h"

#include "formats/gguf.h"

#include <stdlib.h>
#include <string.h>

/* An array key of element type `type` and exactly n elements (n = 0: any
 * count); NULL if absent (when optional), -1 via *bad on error. */
static const bc__gguf_kv *array_kv(const bc__gguf *g, const char *path, const char *key, uint32_t type, uint64_t n,
                                   bool required, bc__err *err, int *bad) {
    const bc__gguf_kv *kv = bc__gguf_find(g, key);
    if (kv == NULL) {
        if (required) *bad = bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: no %s in the metadata", path, key);
        return NULL;
    }
    if (kv->type != BC__GGUF_ARRAY || kv->arr_type != type) {
        *bad = bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: %s (byte %llu) is %s%s%s, expected an array of %s", path,
                          key, (unsigned long long)kv->offset, kv->type == BC__GGUF_ARRAY ? "an array of " : "",
                          bc__gguf_type_name(kv->type == BC__GGUF_ARRAY ? kv->arr_type : kv->type),
                          kv->type == BC__GGUF_ARRAY ? "" : " (not an array)", bc__gguf_type_name(type));
        return NULL;
    }
    if (n != 0 && kv->arr_n != n) {
        *bad = bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: %s has %llu elements but tokenizer.ggml.tokens has %llu (they must match)", path, key,
                          (unsigned long long)kv->arr_n, (unsigned long long)n);
        return NULL;
    }
    return kv;
}

/* An optional token id key: the piece it names as a span, or an empty span
 * when absent. */
static int special_piece(const bc__gguf *g, const char *path, const char *key, const bc__sp_model *sp, bc__span *out,
                         bc__err *err) {
    int64_t id;
    int r = bc__gguf_get_int(g, key, -1, INT32_MAX, &id, err);
    out->ptr = NULL;
    out->len = 0;
    if (r < 0) return -1;
    if (r == 0 || id < 0) return 0;
    if (id >= sp->n_pieces)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: %s is %lld, outside the vocabulary of %d tokens", path, key,
                          (long long)id, (int)sp->n_pieces);
    *out = sp->pieces[id].text;
    return 0;
}

static int bool_key(const bc__gguf *g, const char *key, bool def, bool *out, bc__err *err) {
    *out = def;
    return bc__gguf_get_bool(g, key, out, err) < 0 ? -1 : 0;
}

/* Copies the vocabulary out of the mapping into tok (tok->file_bytes owns
 * the piece texts and the character map). */
static int read_vocab(bc_tokenizer *tok, const bc__gguf *g, bc__err *err) {
    const char *path = tok->path;
    const char *model;
    size_t model_len;
    int r = bc__gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len, err);
    if (r < 0) return -1;
    if (r == 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: no tokenizer.ggml.model in the metadata: the file carries no vocabulary", path);
    if (model_len != 5 || memcmp(model, "llama", 5) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: tokenizer.ggml.model is '%.*s'; only SentencePiece vocabularies ('llama') are supported",
                          path, (int)(model_len < 64 ? model_len : 64), model);

    int bad = 0;
    const bc__gguf_kv *tokens = array_kv(g, path, "tokenizer.ggml.tokens", BC__GGUF_STRING, 0, true, err, &bad);
    if (tokens == NULL) return -1;
    uint64_t n = tokens->arr_n;
    if (n == 0 || n > INT32_MAX / 2)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: tokenizer.ggml.tokens has %llu tokens", path,
                          (unsigned long long)n);
    const bc__gguf_kv *scores = array_kv(g, path, "tokenizer.ggml.scores", BC__GGUF_F32, n, true, err, &bad);
    if (scores == NULL) return -1;
    const bc__gguf_kv *types = array_kv(g, path, "tokenizer.ggml.token_type", BC__GGUF_I32, n, true, err, &bad);
    if (types == NULL) return -1;
    const bc__gguf_kv *charsmap =
        array_kv(g, path, "tokenizer.ggml.precompiled_charsmap", BC__GGUF_U8, 0, false, err, &bad);
    if (bad) return -1;

    /* Strings: u64 length + bytes each, already bounds-checked by the
     * reader; the array's elements start after its 12-byte header. */
    const uint8_t *p = tokens->value + 12;
    size_t text_bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        text_bytes += (size_t)len;
        p += 8 + len;
    }
    size_t map_bytes = charsmap != NULL ? (size_t)charsmap->arr_n : 0;
    bc__sp_model *sp = &tok->sp;
    tok->file_size = text_bytes + map_bytes;
    tok->file_bytes = malloc(tok->file_size ? tok->file_size : 1);
    sp->pieces = calloc((size_t)n, sizeof *sp->pieces);
    if (tok->file_bytes == NULL || sp->pieces == NULL)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory for %llu tokens", path,
                          (unsigned long long)n);
    sp->n_pieces = (int32_t)n;
    p = tokens->value + 12;
    const uint8_t *s = scores->value + 12, *t = types->value + 12;
    size_t off = 0;
    bool any_byte = false;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        memcpy(tok->file_bytes + off, p + 8, (size_t)len);
        sp->pieces[i].text.ptr = (const char *)tok->file_bytes + off;
        sp->pieces[i].text.len = (size_t)len;
        off += (size_t)len;
        p += 8 + len;
        memcpy(&sp->pieces[i].score, s + 4 * i, 4);
        int32_t type;
        memcpy(&type, t + 4 * i, 4);
        if (type < BC__SP_NORMAL || type > BC__SP_BYTE)
            return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                              "%s: tokenizer.ggml.token_type of token %llu is %d (expected 1..6: normal, unknown, "
                              "control, user-defined, unused, byte)",
                              path, (unsigned long long)i, (int)type);
        sp->pieces[i].type = type;
        any_byte |= type == BC__SP_BYTE;
    }

    sp->trainer.present = true;
    sp->trainer.model_type = BC__SP_MODEL_BPE;
    sp->trainer.vocab_size = (int32_t)n;
    sp->trainer.byte_fallback = any_byte;
    if (special_piece(g, path, "tokenizer.ggml.bos_token_id", sp, &sp->trainer.bos_piece, err) != 0 ||
        special_piece(g, path, "tokenizer.ggml.eos_token_id", sp, &sp->trainer.eos_piece, err) != 0 ||
        special_piece(g, path, "tokenizer.ggml.unknown_token_id", sp, &sp->trainer.unk_piece, err) != 0)
        return -1;

    bc__sp_normalizer_spec *ns = &sp->normalizer;
    ns->present = true;
    ns->escape_whitespaces = true;
    if (bool_key(g, "tokenizer.ggml.add_space_prefix", true, &ns->add_dummy_prefix, err) != 0 ||
        bool_key(g, "tokenizer.ggml.remove_extra_whitespaces", false, &ns->remove_extra_whitespaces, err) != 0)
        return -1;
    static const char identity[] = "identity", precompiled[] = "precompiled";
    if (map_bytes > 0) {
        memcpy(tok->file_bytes + off, charsmap->value + 12, map_bytes);
        ns->precompiled_charsmap.ptr = (const char *)tok->file_bytes + off;
        ns->precompiled_charsmap.len = map_bytes;
        ns->name.ptr = precompiled;
        ns->name.len = sizeof precompiled - 1;
    } else {
        ns->name.ptr = identity;
        ns->name.len = sizeof identity - 1;
    }
    return 0;
}

/* What a model directory's JSON would say: BOS/EOS, chat role ids, context. */
static int read_settings(bc_tokenizer *tok, const bc__gguf *g, bc__err *err) {
    const char *path = tok->path;
    int64_t user = 195, assistant = 196, n_ctx = 4096, max_new = 2048;
    int64_t hi = tok->n_vocab - 1;
    if (bool_key(g, "tokenizer.ggml.add_bos_token", true, &tok->config.add_bos_token, err) != 0 ||
        bool_key(g, "tokenizer.ggml.add_eos_token", false, &tok->config.add_eos_token, err) != 0 ||
        bc__gguf_get_int(g, "baichuan.user_token_id", 0, hi, &user, err) < 0 ||
        bc__gguf_get_int(g, "baichuan.assistant_token_id", 0, hi, &assistant, err) < 0 ||
        bc__gguf_get_int(g, "baichuan.max_new_tokens", 0, 1 << 24, &max_new, err) < 0 ||
        bc__gguf_get_int(g, "baichuan.context_length", 1, INT32_MAX, &n_ctx, err) < 0)
        return -1;
    tok->gen.user_token_id = (int)user;
    tok->gen.assistant_token_id = (int)assistant;
    tok->gen.max_new_tokens = (int)max_new;
    tok->n_ctx_train = (int)n_ctx;
    if ((tok->config.add_bos_token && tok->bos_id < 0) || (tok->config.add_eos_token && tok->eos_id < 0))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: tokenizer.ggml.add_%s_token is true but the vocabulary has no %s control token", path,
                          tok->config.add_bos_token && tok->bos_id < 0 ? "bos" : "eos",
                          tok->config.add_bos_token && tok->bos_id < 0 ? "BOS" : "EOS");
    return 0;
}

int bc__tokenizer_from_gguf(bc_tokenizer *tok, const char *path, bc__err *err) {
    if ((tok->path = bc__strdup(path)) == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    bc__tensor_table table;
    bc__gguf g;
    memset(&table, 0, sizeof table);
    memset(&g, 0, sizeof g);
    int rc = bc__gguf_read(&table, path, &g, err) != 0 || read_vocab(tok, &g, err) != 0 ||
                     bc__tokenizer_build(tok, err) != 0 || read_settings(tok, &g, err) != 0
                 ? -1
                 : 0;
    bc__gguf_free(&g);
    bc__table_free(&table);
    return rc;
}

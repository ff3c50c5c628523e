/*
 * lora.c - LoRA adapters as PEFT's save_pretrained writes them (lora.h):
 * adapter_config.json read field by field, adapter_model.safetensors or
 * adapter_model.bin read into a tensor table, every factor matched to a
 * matrix of the model and checked, then copied into one allocation.
 *
 *   config     peft_type LORA, r, lora_alpha, use_rslora; everything that
 *              would change what the factors mean (DoRA, a bias, per-module
 *              ranks, modules_to_save, fan_in_fan_out) is refused
 *   names      base_model.model.model.layers.N.<module>.lora_{A,B}.weight
 *              with <module> self_attn.W_pack, self_attn.o_proj,
 *              mlp.gate_proj, mlp.up_proj or mlp.down_proj (PEFT's key
 *              without the adapter name, as the files hold it)
 *   factors    A (r, in) as it is, B (out, r) in transposed blocks of rows
 *              (lora.h), in the files' element type when they all share one
 *              (f32, f16 or bf16), else in f32
 *   merge      bc__lora_delta_row: a row of scale * B A, for writing a
 *              merged model
 *
 * The layer computes y = W x + scale * B (A x), scale = lora_alpha / r, or
 * lora_alpha / sqrt(r) with use_rslora (PEFT's LoraLayer.update_layer);
 * dropout is training only. W_pack's B rows are Q, K, V like W_pack's.
 */
#include "model/lora.h"

#include "formats/json_file.h"
#include "formats/safetensors.h"
#include "formats/torch.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest rank accepted: published adapters use 1..256. */
#define MAX_RANK 4096

/* The module paths of the slots, as in the checkpoint's tensor names. */
static const char *module_path(bc__lora_slot s) {
    static const char *const paths[BC__LORA_N_SLOTS] = {
        [BC__LORA_W_PACK] = "self_attn.W_pack", [BC__LORA_O_PROJ] = "self_attn.o_proj",
        [BC__LORA_GATE] = "mlp.gate_proj",      [BC__LORA_UP] = "mlp.up_proj",
        [BC__LORA_DOWN] = "mlp.down_proj",
    };
    return paths[s];
}

/* The module's own name (the last part of its path), as target_modules says it. */
static const char *module_name(bc__lora_slot s) { return strchr(module_path(s), '.') + 1; }

void bc__lora_slot_dims(const bc__hparams *hp, bc__lora_slot slot, int64_t *in, int64_t *out) {
    const int64_t E = hp->n_embd, F = hp->n_ff;
    switch (slot) {
    case BC__LORA_W_PACK: *in = E, *out = 3 * E; break;
    case BC__LORA_O_PROJ: *in = E, *out = E; break;
    case BC__LORA_GATE:
    case BC__LORA_UP: *in = E, *out = F; break;
    default: *in = F, *out = E; break;
    }
}

/* ------------------------------------------------------------------------ */
/* adapter_config.json                                                      */
/* ------------------------------------------------------------------------ */

typedef struct lora_config {
    int rank;
    float alpha;
    bool rslora;
} lora_config;

/* Whether a JSON value is absent or says "nothing": null, false, an empty
 * array or object. */
static bool is_empty(const json_t *v) {
    return v == NULL || json_is_null(v) || json_is_false(v) || (json_is_array(v) && json_array_size(v) == 0) ||
           (json_is_object(v) && json_object_size(v) == 0);
}

static int slot_of_module_name(const char *name) {
    for (int s = 0; s < BC__LORA_N_SLOTS; s++)
        if (strcmp(name, module_name((bc__lora_slot)s)) == 0 || strcmp(name, module_path((bc__lora_slot)s)) == 0)
            return s;
    return -1;
}

static int read_config(const bc__json_doc *doc, lora_config *c, bc__err *err) {
    const char *s;
    if (bc__json_get_string(doc, "peft_type", &s, err) != 0) return -1;
    if (s == NULL || strcmp(s, "LORA") != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: field \"peft_type\" is %s%s%s, not \"LORA\"", doc->path,
                          s ? "\"" : "", s ? s : "absent", s ? "\"" : "");
    if (bc__json_get_int(doc, "r", 1, 0, 1, MAX_RANK, &c->rank, err) != 0 ||
        bc__json_get_float(doc, "lora_alpha", 8.0, -1e6, 1e6, &c->alpha, err) != 0 ||
        bc__json_get_bool(doc, "use_rslora", false, &c->rslora, NULL, err) != 0)
        return -1;
    bool flag;
    if (bc__json_get_bool(doc, "use_dora", false, &flag, NULL, err) != 0) return -1;
    if (flag)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: field \"use_dora\" is true: DoRA adapters are not supported (only plain LoRA)",
                          doc->path);
    if (bc__json_get_bool(doc, "fan_in_fan_out", false, &flag, NULL, err) != 0) return -1;
    if (flag)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: field \"fan_in_fan_out\" is true, which is for Conv1D layers (GPT-2); Baichuan's are "
                          "Linear and PEFT saves them with it false",
                          doc->path);
    if (bc__json_get_string(doc, "bias", &s, err) != 0) return -1;
    if (s != NULL && strcmp(s, "none") != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: field \"bias\" is \"%s\": only \"none\" is supported (the base has no biases)",
                          doc->path, s);
    static const char *const refused[] = {"modules_to_save", "rank_pattern", "alpha_pattern", "layer_replication",
                                          "lora_bias"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (!is_empty(json_object_get(doc->root, refused[i])))
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: field \"%s\" is set: not supported", doc->path,
                              refused[i]);
    /* A list must name only modules the model has; a string is PEFT's
     * regular expression, and the tensors say what it matched. */
    json_t *tm = json_object_get(doc->root, "target_modules");
    if (json_is_array(tm)) {
        size_t i;
        json_t *v;
        json_array_foreach(tm, i, v) {
            if (!json_is_string(v))
                return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: field \"target_modules\"[%zu] is %s, not a string",
                                  doc->path, i, bc__json_kind(v));
            if (slot_of_module_name(json_string_value(v)) < 0)
                return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                                  "%s: field \"target_modules\" names \"%s\", which Baichuan does not have (W_pack, "
                                  "o_proj, gate_proj, up_proj, down_proj)",
                                  doc->path, json_string_value(v));
        }
    } else if (tm != NULL && !json_is_null(tm) && !json_is_string(tm)) {
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: field \"target_modules\" is %s, not a list or a string",
                          doc->path, bc__json_kind(tm));
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Tensor names                                                             */
/* ------------------------------------------------------------------------ */

#define KEY_PREFIX "base_model.model.model.layers."

/* Parses a factor's name: its layer, slot and whether it is B. 0, or -1
 * with a message naming the tensor. */
static int parse_name(const char *file, const char *name, int n_layer, int *layer, int *slot, bool *is_b,
                      bc__err *err) {
    if (strstr(name, "lora_magnitude_vector") != NULL)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s' is a DoRA magnitude vector: DoRA adapters are not supported", file, name);
    const size_t np = strlen(KEY_PREFIX);
    const char *p = name + np;
    char *end = NULL;
    long il = -1;
    if (strncmp(name, KEY_PREFIX, np) == 0 && *p >= '0' && *p <= '9') il = strtol(p, &end, 10);
    if (il < 0 || end == NULL || *end != '.')
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%s' is not a LoRA factor of a Baichuan layer (expected " KEY_PREFIX
                          "N.<module>.lora_A.weight or lora_B.weight)",
                          file, name);
    p = end + 1;
    for (int s = 0; s < BC__LORA_N_SLOTS; s++) {
        const char *mp = module_path((bc__lora_slot)s);
        size_t n = strlen(mp);
        if (strncmp(p, mp, n) != 0 || p[n] != '.') continue;
        const char *rest = p + n + 1;
        if (strcmp(rest, "lora_A.weight") != 0 && strcmp(rest, "lora_B.weight") != 0) {
            if (strstr(rest, "bias") != NULL)
                return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                                  "%s: tensor '%s' is a LoRA bias: only bias \"none\" is supported", file, name);
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: tensor '%s' is not a LoRA factor (expected lora_A.weight or lora_B.weight)", file,
                              name);
        }
        if (il >= n_layer)
            return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: tensor '%s' is for layer %ld; the model has %d layers",
                              file, name, il, n_layer);
        *layer = (int)il;
        *slot = s;
        *is_b = rest[5] == 'B';
        return 0;
    }
    return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                      "%s: tensor '%s' adapts a module Baichuan does not have (modules: self_attn.W_pack, "
                      "self_attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)",
                      file, name);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

static atomic_uint_fast64_t next_lora_id = 1;

/* The adapter's directory and its config's path, from a directory or the
 * config file itself. */
static int resolve_paths(const char *path, char **dir, char **config, bc__err *err) {
    if (bc__is_directory(path)) {
        *dir = bc__strdup(path);
    } else {
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        if (strcmp(base, "adapter_config.json") != 0)
            return bc__errorf(err, BC_STATUS_ERROR_IO,
                              "%s: not a LoRA adapter (give its directory or its adapter_config.json)", path);
        *dir = slash ? bc__strndup(path, (size_t)(slash - path)) : bc__strdup(".");
    }
    *config = *dir ? bc__path_join(*dir, "adapter_config.json") : NULL;
    if (*config == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    if (!bc__file_exists(*config))
        return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: no such file (a PEFT adapter directory holds one)", *config);
    return 0;
}

/* Reads the weights file of dir into t; *file is its path (owned). */
static int read_weights(const char *dir, bc__tensor_table *t, char **file, bc__err *err) {
    *file = bc__path_join(dir, "adapter_model.safetensors");
    if (*file == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    if (bc__file_exists(*file)) return bc__safetensors_read(t, *file, err);
    free(*file);
    *file = bc__path_join(dir, "adapter_model.bin");
    if (*file == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    if (bc__file_exists(*file)) return bc__torch_read(t, *file, err);
    return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: neither adapter_model.safetensors nor adapter_model.bin is there",
                      dir);
}

static float element(bc_dtype dtype, const void *p, size_t i) {
    switch (dtype) {
    case BC_DTYPE_F16: return bc__f16_to_f32(((const uint16_t *)p)[i]);
    case BC_DTYPE_BF16: return bc__bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

/* Copies the (rows, cols) matrix src (dtype from) to dst (dtype to: the
 * same type, or f32, exact): as it is, or (blocked) in lora.h's layout of B,
 * rows in blocks of BC__LORA_B_BLOCK, each block transposed (dst zeroed by
 * the caller, for the padding). */
static void copy_factor(void *dst, bc_dtype to, const void *src, bc_dtype from, size_t rows, size_t cols,
                        bool blocked) {
    const size_t esize = bc__dtype_traits_of(to)->block_bytes, R = BC__LORA_B_BLOCK;
    if (!blocked && to == from) {
        memcpy(dst, src, rows * cols * esize);
        return;
    }
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            const size_t at = blocked ? i / R * cols * R + j * R + i % R : i * cols + j;
            if (to == from)
                memcpy((char *)dst + at * esize, (const char *)src + (i * cols + j) * esize, esize);
            else
                ((float *)dst)[at] = element(from, src, i * cols + j);
        }
}

/* Elements B takes in the blocked layout. */
static size_t b_elems(int64_t out, int64_t r) {
    return (size_t)((out + BC__LORA_B_BLOCK - 1) / BC__LORA_B_BLOCK * BC__LORA_B_BLOCK * r);
}

/* The tensors of each (layer, slot): found[2 * (il * N_SLOTS + s) + is_b]. */
static int match_tensors(const bc_model *model, const char *file, const bc__tensor_table *t, const lora_config *c,
                         const bc__tensor **found, bc__err *err) {
    const bc__hparams *hp = &model->hp;
    if (t->n_tensors == 0) return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: holds no tensors", file);
    for (size_t i = 0; i < t->n_tensors; i++) {
        const bc__tensor *x = &t->tensors[i];
        int il = 0, s = 0;
        bool is_b = false;
        if (parse_name(file, x->name, hp->n_layer, &il, &s, &is_b, err) != 0) return -1;
        if (x->dtype != BC_DTYPE_F32 && x->dtype != BC_DTYPE_F16 && x->dtype != BC_DTYPE_BF16)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: tensor '%s' is %s; LoRA factors must be F32, F16 or BF16", file, x->name,
                              x->foreign_dtype ? x->foreign_dtype : bc_dtype_name(x->dtype));
        int64_t in, out;
        bc__lora_slot_dims(hp, (bc__lora_slot)s, &in, &out);
        const int64_t want0 = is_b ? out : c->rank, want1 = is_b ? c->rank : in;
        if (x->n_dims != 2 || x->shape[0] != want0 || x->shape[1] != want1) {
            char shape[96];
            size_t k = (size_t)snprintf(shape, sizeof shape, "[");
            for (int d = 0; d < x->n_dims && k < sizeof shape; d++)
                k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%lld", d ? ", " : "", (long long)x->shape[d]);
            if (k < sizeof shape) snprintf(shape + k, sizeof shape - k, "]");
            bool rank_wrong = x->n_dims == 2 && (is_b ? x->shape[0] == out : x->shape[1] == in);
            return bc__errorf(
                err, BC_STATUS_ERROR_MODEL,
                "%s: tensor '%s' has shape %s, expected [%lld, %lld] (%s r = %d from adapter_config.json, "
                "%s)",
                file, x->name, shape, (long long)want0, (long long)want1,
                rank_wrong ? "its rank differs from" : "the base model's size, with", c->rank,
                is_b ? "[out_features, r]" : "[r, in_features]");
        }
        found[2 * ((size_t)il * BC__LORA_N_SLOTS + (size_t)s) + (is_b ? 1 : 0)] = x;
    }
    for (int il = 0; il < hp->n_layer; il++)
        for (int s = 0; s < BC__LORA_N_SLOTS; s++) {
            const bc__tensor *a = found[2 * ((size_t)il * BC__LORA_N_SLOTS + (size_t)s)],
                             *b = found[2 * ((size_t)il * BC__LORA_N_SLOTS + (size_t)s) + 1];
            if ((a == NULL) != (b == NULL))
                return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                                  "%s: tensor '%s' has no %s (" KEY_PREFIX "%d.%s.lora_%s.weight is missing)", file,
                                  a ? a->name : b->name, a ? "lora_B" : "lora_A", il, module_path((bc__lora_slot)s),
                                  a ? "B" : "A");
        }
    return 0;
}

/* Builds the adapter from the matched tensors: one allocation for every factor. */
static int build(bc_lora *l, const bc__tensor **found, bc__err *err) {
    const bc__hparams *hp = &l->model->hp;
    const size_t n_mats = (size_t)hp->n_layer * BC__LORA_N_SLOTS;
    /* one element type for all: the files' own when they share it */
    bc_dtype dtype = BC_DTYPE_COUNT;
    for (size_t i = 0; i < 2 * n_mats; i++)
        if (found[i] != NULL)
            dtype = dtype == BC_DTYPE_COUNT || dtype == found[i]->dtype ? found[i]->dtype : BC_DTYPE_F32;
    l->dtype = dtype;
    const size_t esize = bc__dtype_traits_of(dtype)->block_bytes;
    uint64_t total = 0;
    for (size_t i = 0; i < 2 * n_mats; i++)
        if (found[i] != NULL) {
            /* A as it is; B in blocks of rows, the last one padded */
            uint64_t n = (i % 2 ? (uint64_t)b_elems(found[i]->shape[0], found[i]->shape[1])
                                : (uint64_t)found[i]->shape[0] * (uint64_t)found[i]->shape[1]) *
                         esize;
            total += (n + 63) / 64 * 64;
        }
    l->mats = calloc(n_mats, sizeof *l->mats);
    l->factors = total > 0 && total <= SIZE_MAX ? aligned_alloc(64, (size_t)total) : NULL;
    if (l->mats == NULL || l->factors == NULL)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory holding %.1f MiB of LoRA factors",
                          (double)total / (1 << 20));
    uint8_t *p = l->factors;
    for (size_t i = 0; i < n_mats; i++) {
        const bc__tensor *a = found[2 * i], *b = found[2 * i + 1];
        if (a == NULL) continue;
        bc__lora_mat *m = &l->mats[i];
        m->in = a->shape[1];
        m->out = b->shape[0];
        const size_t na = (size_t)(a->shape[0] * a->shape[1]), nb = b_elems(b->shape[0], b->shape[1]);
        copy_factor(p, dtype, a->data, a->dtype, (size_t)a->shape[0], (size_t)a->shape[1], false);
        m->a = p;
        p += (na * esize + 63) / 64 * 64;
        memset(p, 0, nb * esize);
        copy_factor(p, dtype, b->data, b->dtype, (size_t)b->shape[0], (size_t)b->shape[1], true);
        m->b = p;
        p += (nb * esize + 63) / 64 * 64;
        l->modules |= 1u << (i % BC__LORA_N_SLOTS);
        l->n_matrices++;
    }
    l->bytes = total + n_mats * sizeof *l->mats + sizeof *l + strlen(l->path) + 1;
    return 0;
}

static int load(bc_lora *l, const char *path, float user_scale, bc__err *err) {
    char *dir = NULL, *config = NULL, *file = NULL;
    bc__json_doc doc = {NULL, NULL};
    bc__tensor_table table;
    memset(&table, 0, sizeof table);
    const bc__tensor **found = NULL;
    lora_config c;
    int rc = -1;
    if (!isfinite(user_scale)) {
        bc__errorf(err, BC_STATUS_ERROR_ARGUMENT, "%s: the scale %g is not a finite number", path, (double)user_scale);
        goto done;
    }
    if (resolve_paths(path, &dir, &config, err) != 0 || bc__json_doc_load(&doc, config, err) != 0 ||
        read_config(&doc, &c, err) != 0 || read_weights(dir, &table, &file, err) != 0)
        goto done;
    found = calloc(2 * (size_t)l->model->hp.n_layer * BC__LORA_N_SLOTS, sizeof *found);
    if (found == NULL) {
        bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
        goto done;
    }
    l->rank = c.rank;
    l->alpha = c.alpha;
    l->rslora = c.rslora;
    l->scale = (float)((double)c.alpha / (c.rslora ? sqrt((double)c.rank) : (double)c.rank) * (double)user_scale);
    if (match_tensors(l->model, file, &table, &c, found, err) != 0 || build(l, found, err) != 0) goto done;
    rc = 0;
done:
    json_decref(doc.root);
    bc__table_free(&table);
    free(found);
    free(dir);
    free(config);
    free(file);
    return rc;
}

bc_status bc_lora_load(const bc_model *model, const char *path, float user_scale, bc_lora **out, char *err_buf,
                       size_t err_size) {
    bc__err err = {BC_STATUS_OK, ""};
    if (out == NULL || model == NULL || path == NULL) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT, "bc_lora_load: model, path and out must not be NULL");
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    *out = NULL;
    bc__f16_init();
    bc_lora *l = calloc(1, sizeof *l);
    if (l == NULL || (l->path = bc__strdup(path)) == NULL) {
        bc__errorf(&err, BC_STATUS_ERROR_MEMORY, "out of memory");
    } else {
        l->model = model;
        if (load(l, path, user_scale, &err) == 0) {
            l->id = atomic_fetch_add(&next_lora_id, 1);
            *out = l;
            return BC_STATUS_OK;
        }
    }
    bc_lora_free(l);
    bc__err_copy(&err, err_buf, err_size);
    return err.status;
}

void bc_lora_free(bc_lora *l) {
    if (l == NULL) return;
    free(l->factors);
    free(l->mats);
    free(l->path);
    free(l);
}

void bc_lora_get_info(const bc_lora *l, bc_lora_info *info) {
    memset(info, 0, sizeof *info);
    info->path = l->path;
    info->rank = l->rank;
    info->alpha = l->alpha;
    info->rslora = l->rslora;
    info->scale = l->scale;
    info->modules = l->modules;
    info->n_matrices = l->n_matrices;
    info->dtype = l->dtype;
    info->bytes = l->bytes;
    info->id = l->id;
}

/* ------------------------------------------------------------------------ */
/* Merge                                                                    */
/* ------------------------------------------------------------------------ */

void bc__lora_delta_row(const bc_lora *l, const bc__lora_mat *m, int64_t o, float *row) {
    const int r = l->rank;
    double bo[MAX_RANK];
    const size_t R = BC__LORA_B_BLOCK, block = (size_t)o / R * (size_t)r * R;
    for (int k = 0; k < r; k++) bo[k] = element(l->dtype, m->b, block + (size_t)k * R + (size_t)o % R);
    for (int64_t c = 0; c < m->in; c++) {
        double s = 0.0;
        for (int k = 0; k < r; k++) s += bo[k] * element(l->dtype, m->a, (size_t)k * (size_t)m->in + (size_t)c);
        row[c] = (float)((double)row[c] + (double)l->scale * s);
    }
}

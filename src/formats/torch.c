/*
 * torch.c - PyTorch checkpoints: a torch.save zip archive read into the
 * tensor table.
 *
 * The archive (torch_zip.c) holds `<prefix>/data.pkl`, run by the restricted
 * pickle machine (torch_pickle.c), and the storages it names. What the
 * machine leaves must be a state dict, name -> tensor; this file checks each
 * tensor (dtype, shape, contiguity, its bytes inside its storage) and reads
 * bitsandbytes 4-bit quant state lists, before anything is added to the
 * table.
 *
 *   state dict             from the unpickled dict to named, checked tensors
 *                          (and bitsandbytes 4-bit quant state lists)
 *   entry point            bc__torch_read: data.pkl, byte order, the table
 */
#include "formats/torch.h"

#include "formats/torch_pickle.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long ull;

/* Tensors in one file; the table checks names linearly. */
#define MAX_TENSORS (1u << 16)

/* The safetensors name of a storage kept as a foreign dtype (supported 2). */
static const char *foreign_name(const bc__pickle_global *g) { return g->elem_size == 1 ? "U8" : "I32"; }

/* ------------------------------------------------------------------------ */
/* State dict                                                               */
/* ------------------------------------------------------------------------ */

/* One tensor, checked and ready for the table. */
typedef struct tensor_rec {
    const char *name;            /* NUL-terminated copy in the arena. */
    bc_dtype dtype;              /* Element type, from the storage class. */
    int n_dims;                  /* Dimensions, at most BC__MAX_DIMS. */
    int64_t shape[BC__MAX_DIMS]; /* Outermost first. */
    uint64_t file_offset;        /* Absolute offset of the first byte. */
    uint64_t n_bytes;            /* Bytes of the tensor. */
    const char *foreign;         /* "U8" for ByteStorage (dtype unused), else NULL. */
} tensor_rec;

/* "[a, b, c]" for messages; truncated to fit. */
static void format_ints(char *buf, size_t n, const bc__pv *tuple) {
    size_t used = 0;
    int w = snprintf(buf, n, "[");
    for (size_t i = 0; w >= 0 && (size_t)w < n - used && i < tuple->u.seq.n; i++) {
        used += (size_t)w;
        w = snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)tuple->u.seq.items[i]->u.i);
    }
    if (w >= 0 && (size_t)w < n - used) {
        used += (size_t)w;
        snprintf(buf + used, n - used, "]");
    }
}

/* Checks one tensor of the state dict and fills rec. */
static int check_tensor(bc__pickle *m, const char *name, const bc__pv *t, tensor_rec *rec) {
    const char *path = m->path;
    const bc__pv *storage = t->u.tensor.storage;
    const bc__pickle_global *type = storage->u.storage.type;
    const bc__pv *size = t->u.tensor.size, *stride = t->u.tensor.stride;
    char size_text[160], stride_text[160];
    format_ints(size_text, sizeof size_text, size);
    format_ints(stride_text, sizeof stride_text, stride);

    if (!type->supported)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%.*s': unsupported dtype (storage torch.%s; only FloatStorage, "
                          "HalfStorage, BFloat16Storage, and the ByteStorage / IntStorage of 4-bit checkpoints "
                          "can be read)",
                          path, STR_ARG(name, strlen(name)), type->name);
    if (size->u.seq.n != stride->u.seq.n)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%.*s': size %s and stride %s differ in length",
                          path, STR_ARG(name, strlen(name)), size_text, stride_text);
    if (size->u.seq.n > BC__MAX_DIMS)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%.*s' has %zu dimensions %s (at most %d are supported)", path,
                          STR_ARG(name, strlen(name)), size->u.seq.n, size_text, BC__MAX_DIMS);

    int n_dims = (int)size->u.seq.n;
    uint64_t numel = 1;
    for (int i = 0; i < n_dims; i++) {
        int64_t d = size->u.seq.items[i]->u.i;
        if (d < 0 || bc__mul_u64(numel, (uint64_t)d, &numel) != 0)
            return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%.*s': size %s is negative or overflows",
                              path, STR_ARG(name, strlen(name)), size_text);
        rec->shape[i] = d;
    }

    /* Row-major: the last dimension has stride 1, each other the product of
     * the sizes after it. A dimension of size 1 is never stepped over, so
     * its stride does not matter; nor do any strides of an empty tensor. */
    if (numel > 0) {
        uint64_t expect = 1;
        for (int i = n_dims - 1; i >= 0; i--) {
            int64_t d = size->u.seq.items[i]->u.i, s = stride->u.seq.items[i]->u.i;
            if (d != 1 && (s < 0 || (uint64_t)s != expect))
                return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                                  "%s: tensor '%.*s' is not contiguous (size %s, stride %s); save it with "
                                  ".contiguous()",
                                  path, STR_ARG(name, strlen(name)), size_text, stride_text);
            expect *= (uint64_t)d; /* cannot overflow: the product of all sizes did not */
        }
    }

    int64_t first = t->u.tensor.offset->u.i;
    uint64_t end;
    if (first < 0 || bc__add_u64((uint64_t)first, numel, &end) != 0 || end > storage->u.storage.numel)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%.*s': its %llu elements from element %lld on lie outside its storage "
                          "'%.*s' of %llu elements",
                          path, STR_ARG(name, strlen(name)), (ull)numel, (long long)first,
                          STR_ARG(storage->u.storage.key, storage->u.storage.key_len), (ull)storage->u.storage.numel);

    /* end <= numel of the storage, whose byte count did not overflow. */
    rec->name = name;
    rec->dtype = type->dtype;
    rec->foreign = type->supported == 2 ? foreign_name(type) : NULL;
    rec->n_dims = n_dims;
    rec->file_offset = storage->u.storage.file_offset + (uint64_t)first * type->elem_size;
    rec->n_bytes = numel * type->elem_size;
    return 0;
}

/* A NUL-terminated copy of prefix + suffix in the arena. */
static char *arena_name(bc__pickle *m, const char *prefix, size_t len, const char *suffix) {
    size_t n = strlen(suffix);
    char *name = bc__pickle_alloc(m, len + n + 1);
    if (name == NULL) return NULL;
    memcpy(name, prefix, len);
    memcpy(name + len, suffix, n + 1);
    return name;
}

static int ends_with(const char *s, size_t len, const char *suffix) {
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

#define QS_SUFFIX ".quant_state"

/* The items of a list or tuple, or NULL. */
static bc__pv *const *seq_items(const bc__pv *v, size_t *n) {
    *n = 0;
    if (v->kind != BC__PV_LIST && v->kind != BC__PV_TUPLE) return NULL;
    *n = v->u.seq.n;
    return v->u.seq.items;
}

/* "<weight>.quant_state" holds a bitsandbytes 4-bit quant state, the list
 * bitsandbytes 0.40/0.41's quantize_4bit builds (functional.py) and
 * Baichuan2's quantizer.py hands to Params4bit:
 *   [absmax, shape, dtype, blocksize, compressed_stats, quant_type(, code)]
 *   compressed_stats: None, or [offset, state2] with state2 the nested
 *   8-bit state [absmax2, code2, blocksize2, ...] of quantize_blockwise.
 * Its tensors become records "<key>.absmax", ".offset", ".absmax2",
 * ".code2" and ".code"; its scalars fill *st. Shapes and sizes are the
 * converter's to check (bnb4.c); here only the structure. */
static int collect_bnb_state(bc__pickle *m, const char *key, size_t key_len, const bc__pv *list, tensor_rec *recs,
                             size_t *n_recs, bc__bnb_state *st) {
    const char *path = m->path;
    size_t n = 0, n2 = 0, n3 = 0;
    bc__pv *const *it = seq_items(list, &n), *const *cs = NULL, *const *s2 = NULL;
#define BAD(...) bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, __VA_ARGS__)
    if (n != 6 && n != 7)
        return BAD("%s: '%.*s' is a list of %zu items; a bitsandbytes 4-bit quant state has 6 or 7 (absmax, "
                   "shape, dtype, blocksize, compressed statistics, quant type, code)",
                   path, STR_ARG(key, key_len), n);
    static const char *const item_names[] = {"absmax",     "shape", "dtype", "blocksize", "compressed statistics",
                                             "quant type", "code"};
    static const bc__pv_kind item_kinds[] = {BC__PV_TENSOR, BC__PV_TUPLE, BC__PV_GLOBAL, BC__PV_INT,
                                             BC__PV_LIST,   BC__PV_STR,   BC__PV_TENSOR};
    for (size_t i = 0; i < n; i++) {
        bc__pv_kind k = it[i]->kind;
        bool ok =
            k == item_kinds[i] || (i == 1 && k == BC__PV_LIST) || (i == 4 && (k == BC__PV_NONE || k == BC__PV_TUPLE));
        if (i == 2) ok = ok && it[i]->u.global->kind == BC__GLOBAL_DTYPE;
        if (!ok)
            return BAD("%s: '%.*s' item %zu (%s) is %s, not %s", path, STR_ARG(key, key_len), i, item_names[i],
                       bc__pv_kind_name(k), i == 2 ? "a torch dtype" : bc__pv_kind_name(item_kinds[i]));
    }
    size_t n_shape = 0;
    bc__pv *const *shape = seq_items(it[1], &n_shape);
    if (n_shape == 0 || n_shape > BC__MAX_DIMS)
        return BAD("%s: '%.*s' shape has %zu dimensions", path, STR_ARG(key, key_len), n_shape);
    for (size_t i = 0; i < n_shape; i++) {
        if (shape[i]->kind != BC__PV_INT || shape[i]->u.i < 0)
            return BAD("%s: '%.*s' shape item %zu is not a non-negative int", path, STR_ARG(key, key_len), i);
        st->shape[i] = shape[i]->u.i;
    }
    st->n_dims = (int)n_shape;
    st->dtype = it[2]->u.global->name;
    st->blocksize = it[3]->u.i;
    if (it[5]->u.str.len >= sizeof st->quant_type || memchr(it[5]->u.str.s, '\0', it[5]->u.str.len) != NULL)
        return BAD("%s: '%.*s' quant type '%.*s' is neither nf4 nor fp4", path, STR_ARG(key, key_len),
                   STR_ARG(it[5]->u.str.s, it[5]->u.str.len));
    memcpy(st->quant_type, it[5]->u.str.s, it[5]->u.str.len);
    st->quant_type[it[5]->u.str.len] = '\0';
    st->nested = it[4]->kind != BC__PV_NONE;
    if (st->nested) {
        cs = seq_items(it[4], &n2);
        if (n2 != 2 || cs[0]->kind != BC__PV_TENSOR || (s2 = seq_items(cs[1], &n3)) == NULL || n3 < 3 ||
            s2[0]->kind != BC__PV_TENSOR || s2[1]->kind != BC__PV_TENSOR || s2[2]->kind != BC__PV_INT)
            return BAD("%s: '%.*s' compressed statistics must be [offset, [absmax2, code2, blocksize2, ...]]", path,
                       STR_ARG(key, key_len));
        st->blocksize2 = s2[2]->u.i;
    }
#undef BAD
    struct {
        const char *suffix;
        const bc__pv *tensor;
    } parts[] = {{".absmax", it[0]},
                 {".offset", st->nested ? cs[0] : NULL},
                 {".absmax2", st->nested ? s2[0] : NULL},
                 {".code2", st->nested ? s2[1] : NULL},
                 {".code", n == 7 ? it[6] : NULL}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i].tensor == NULL) continue;
        char *name = arena_name(m, key, key_len, parts[i].suffix);
        if (name == NULL || check_tensor(m, name, parts[i].tensor, &recs[(*n_recs)++]) != 0) return -1;
    }
    st->weight = arena_name(m, key, key_len - strlen(QS_SUFFIX), "");
    return st->weight == NULL ? -1 : 0;
}

/* Turns the unpickled state dict into checked tensor records (and quant
 * state records). */
static int collect_tensors(bc__pickle *m, const bc__pv *root, tensor_rec **out, size_t *n_out, bc__bnb_state **states,
                           size_t *n_states) {
    *out = NULL;
    *n_out = 0;
    *states = NULL;
    *n_states = 0;
    if (root->kind != BC__PV_DICT)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: the checkpoint holds %s, not a state dict (a dict of name -> tensor)", m->path,
                          bc__pv_kind_name(root->kind));
    size_t n = root->u.dict.n, n_lists = 0;
    if (n > MAX_TENSORS)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: the state dict has %zu entries (the limit is %u per file)", m->path, n, MAX_TENSORS);
    for (size_t i = 0; i < n; i++) n_lists += root->u.dict.kv[2 * i + 1]->kind == BC__PV_LIST;
    /* A quant state adds at most five tensors. */
    tensor_rec *recs = bc__pickle_alloc(m, (n + 4 * n_lists + 1) * sizeof *recs);
    bc__bnb_state *bnb = bc__pickle_alloc(m, (n_lists + 1) * sizeof *bnb);
    if (recs == NULL || bnb == NULL) return -1;

    size_t n_recs = 0;
    for (size_t i = 0; i < n; i++) {
        const bc__pv *key = root->u.dict.kv[2 * i], *value = root->u.dict.kv[2 * i + 1];
        if (key->kind != BC__PV_STR)
            return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: state dict key %zu is %s, not a str", m->path, i,
                              bc__pv_kind_name(key->kind));
        if (memchr(key->u.str.s, '\0', key->u.str.len) != NULL)
            return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: state dict key '%.*s' contains a NUL byte", m->path,
                              STR_ARG(key->u.str.s, key->u.str.len));
        if (value->kind == BC__PV_LIST && ends_with(key->u.str.s, key->u.str.len, QS_SUFFIX)) {
            bc__bnb_state *st = &bnb[(*n_states)++];
            memset(st, 0, sizeof *st);
            if (collect_bnb_state(m, key->u.str.s, key->u.str.len, value, recs, &n_recs, st) != 0) return -1;
            continue;
        }
        if (value->kind != BC__PV_TENSOR)
            return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: state dict entry '%.*s' is %s, not a tensor",
                              m->path, STR_ARG(key->u.str.s, key->u.str.len), bc__pv_kind_name(value->kind));
        char *name = arena_name(m, key->u.str.s, key->u.str.len, "");
        if (name == NULL) return -1;
        if (check_tensor(m, name, value, &recs[n_recs++]) != 0) return -1;
    }
    *out = recs;
    *n_out = n_recs;
    *states = bnb;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Entry point                                                              */
/* ------------------------------------------------------------------------ */

/* Finds the one entry named "<prefix>/data.pkl". */
static const bc__zip_entry *find_data_pkl(const bc__zip *zip, bc__err *err) {
    static const char suffix[] = "/data.pkl";
    const size_t suffix_len = sizeof suffix - 1;
    const bc__zip_entry *found = NULL;
    for (size_t i = 0; i < zip->n_entries; i++) {
        const bc__zip_entry *e = &zip->entries[i];
        if (e->name_len <= suffix_len || memcmp(e->name + e->name_len - suffix_len, suffix, suffix_len) != 0) continue;
        if (found != NULL) {
            bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                       "%s: the archive holds both '%.*s' and '%.*s'; a torch.save checkpoint has one data.pkl",
                       zip->file->path, STR_ARG(found->name, found->name_len), STR_ARG(e->name, e->name_len));
            return NULL;
        }
        found = e;
    }
    if (found == NULL)
        bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                   "%s: a zip archive without a '<name>/data.pkl' entry is not a torch.save checkpoint",
                   zip->file->path);
    return found;
}

/* torch >= 2.1 records the byte order of the storages in <prefix>/byteorder
 * ("little" or "big"); older versions wrote only little-endian files. */
static int check_byteorder(const bc__zip *zip, const char *prefix, size_t prefix_len, bc__err *err) {
    static const char suffix[] = "/byteorder";
    char name[BC__ZIP_MAX_NAME + sizeof suffix];
    if (prefix_len > BC__ZIP_MAX_NAME) return 0; /* no such entry can exist */
    memcpy(name, prefix, prefix_len);
    memcpy(name + prefix_len, suffix, sizeof suffix - 1);
    const bc__zip_entry *e = bc__zip_find(zip, name, prefix_len + sizeof suffix - 1);
    if (e == NULL) return 0;
    uint64_t offset = 0;
    if (bc__zip_entry_data(zip, e, &offset, err) != 0) return -1;
    const char *order = (const char *)zip->file->data + offset;
    if (e->size == 6 && memcmp(order, "little", 6) == 0) return 0;
    return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                      "%s: '%.*s' says the storages are '%.*s'-endian; only little-endian checkpoints can be read",
                      zip->file->path, STR_ARG(e->name, e->name_len), (int)(e->size < 16 ? e->size : 16), order);
}

/* Every check of the file itself runs before anything is added to the table.
 * Only bc__table_add can fail after that (a name another file already gave,
 * or out of memory); then the table keeps this file's mapping and the tensors
 * added before the failure, so callers free the table after any error. */
int bc__torch_read(bc__tensor_table *t, const char *path, bc__err *err) {
    bc__file *file = NULL, *owned;
    bc__zip zip;
    bc__pickle m;
    const bc__zip_entry *pkl;
    uint64_t pkl_offset = 0;
    bc__pv *root = NULL;
    tensor_rec *recs = NULL;
    size_t n_recs = 0, n_states = 0;
    bc__bnb_state *states = NULL;
    int rc = -1;
    memset(&zip, 0, sizeof zip);
    memset(&m, 0, sizeof m);

    if (bc__file_map(path, &file, err) != 0) return -1;
    if (bc__zip_open(&zip, file, err) != 0) goto cleanup;
    if ((pkl = find_data_pkl(&zip, err)) == NULL) goto cleanup;
    if (bc__zip_entry_data(&zip, pkl, &pkl_offset, err) != 0) goto cleanup;

    bc__pickle_init(&m, file->path, &zip, pkl, file->data + pkl_offset, err);
    if (check_byteorder(&zip, m.prefix, m.prefix_len, err) != 0) goto cleanup;
    if (bc__pickle_run(&m, &root) != 0) goto cleanup;
    if (collect_tensors(&m, root, &recs, &n_recs, &states, &n_states) != 0) goto cleanup;

    /* Every tensor checked: the table takes the mapping (and unmaps it if it cannot). */
    owned = file;
    file = NULL;
    if (bc__table_add_file(t, owned, err) != 0) goto cleanup;
    for (size_t i = 0; i < n_recs; i++) {
        const tensor_rec *r = &recs[i];
        if (r->foreign != NULL
                ? bc__table_add_foreign(t, r->name, r->foreign, r->n_dims, r->shape, owned, r->file_offset, r->n_bytes,
                                        err)
                : bc__table_add(t, r->name, r->dtype, r->n_dims, r->shape, owned, r->file_offset, r->n_bytes, err))
            goto cleanup;
    }
    for (size_t i = 0; i < n_states; i++) {
        states[i].file = owned;
        if (bc__table_add_bnb(t, &states[i], err) != 0) goto cleanup;
    }
    rc = 0;

cleanup:
    bc__pickle_free(&m);
    bc__zip_close(&zip);
    bc__file_unmap(file);
    return rc;
}

/*
 * test_torch.c - the PyTorch checkpoint reader (zip + restricted pickle).
 *
 * The unit tests are self-contained: they build zip archives and pickles byte
 * by byte with the tiny writers below, and check both the tensors read from
 * valid files and the messages for broken or hostile ones.
 *
 * Real torch.save output is checked by tests/python/torch_save_check.py, which
 * writes checkpoints with Debian's torch plus a manifest of what they hold,
 * then runs this program with `--manifest DIR` (or with BC_TORCH_FILES_DIR
 * set to DIR); without either, that one test is skipped. Registered in
 * tests/CMakeLists.txt as:
 *
 *   add_test(NAME torch_save_check
 *     COMMAND ${BC_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/python/torch_save_check.py
 *             --test-bin $<TARGET_FILE:test_torch>)
 *   set_tests_properties(torch_save_check PROPERTIES TIMEOUT 600)
 *
 *   byte buffers        buf_*
 *   zip writer          zip_write: stored entries, optional zip64, data descriptors, alignment
 *   pickle writer       pk_*: protocol 2 or 4 opcodes, torch-style tensors and state dicts
 *   harness             temporary files, read_file_bytes, expect_error
 *   valid files         tensors, shared storage, parameters, zip64, alignment
 *   invalid files       one test per kind of damage
 *   real torch files    the manifest written by torch_save_check.py
 */
#include "formats/torch.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ------------------------------------------------------------------------ */
/* Byte buffers                                                             */
/* ------------------------------------------------------------------------ */

typedef struct buf {
    uint8_t *p; /* The bytes; malloc'd. */
    size_t n;   /* Bytes in use. */
    size_t cap; /* Bytes allocated. */
} buf;

static void buf_put(buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n > 0) memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void buf_u8(buf *b, uint8_t v) { buf_put(b, &v, 1); }
static void buf_u16(buf *b, uint16_t v) { buf_put(b, &v, 2); } /* the host is little-endian */
static void buf_u32(buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(buf *b, const char *s) { buf_put(b, s, strlen(s)); }
static void buf_free(buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------ */
/* Zip writer                                                               */
/* ------------------------------------------------------------------------ */

typedef struct zentry {
    const char *name; /* Entry name. */
    const void *data; /* Its bytes. */
    size_t len;       /* Bytes of data. */
    uint16_t method;  /* 0 stored; anything else is declared but the bytes stay as given. */
} zentry;

typedef struct zopts {
    int zip64;      /* Saturate 32-bit sizes and offsets and write zip64 extra fields. */
    int descriptor; /* Set flag bit 3: zero local sizes and a data descriptor after the data. */
    int align;      /* Pad local extras so data starts at a multiple of 64, as torch does. */
    int zip64_end;  /* Write the zip64 end record and locator (torch always does). */
} zopts;

static void zip_write(buf *out, const zentry *e, size_t n, const zopts *o) {
    uint64_t *offsets = calloc(n ? n : 1, sizeof *offsets);
    assert_non_null(offsets);
    const uint16_t flags = o->descriptor ? 0x0808 : 0x0800;

    for (size_t i = 0; i < n; i++) {
        offsets[i] = out->n;
        uint16_t name_len = (uint16_t)strlen(e[i].name);
        buf extra = {0};
        if (o->zip64 && !o->descriptor) {
            buf_u16(&extra, 1);
            buf_u16(&extra, 16);
            buf_u64(&extra, e[i].len);
            buf_u64(&extra, e[i].len);
        }
        if (o->align) {
            size_t data_at = out->n + 30 + name_len + extra.n + 4;
            uint16_t pad = (uint16_t)((64 - data_at % 64) % 64);
            buf_u16(&extra, 0x4246); /* "FB" */
            buf_u16(&extra, pad);
            for (uint16_t k = 0; k < pad; k++) buf_u8(&extra, 'Z');
        }
        uint32_t size32 = o->descriptor ? 0 : o->zip64 ? 0xffffffffu : (uint32_t)e[i].len;
        buf_u32(out, 0x04034b50);
        buf_u16(out, o->zip64 ? 45 : 20);
        buf_u16(out, flags);
        buf_u16(out, e[i].method);
        buf_u16(out, 0);
        buf_u16(out, 0);
        buf_u32(out, 0); /* CRC: the reader does not check it */
        buf_u32(out, size32);
        buf_u32(out, size32);
        buf_u16(out, name_len);
        buf_u16(out, (uint16_t)extra.n);
        buf_str(out, e[i].name);
        buf_put(out, extra.p, extra.n);
        buf_put(out, e[i].data, e[i].len);
        if (o->descriptor) {
            buf_u32(out, 0x08074b50);
            buf_u32(out, 0);
            if (o->zip64) {
                buf_u64(out, e[i].len);
                buf_u64(out, e[i].len);
            } else {
                buf_u32(out, (uint32_t)e[i].len);
                buf_u32(out, (uint32_t)e[i].len);
            }
        }
        buf_free(&extra);
    }

    uint64_t cd_offset = out->n;
    for (size_t i = 0; i < n; i++) {
        uint16_t name_len = (uint16_t)strlen(e[i].name);
        buf_u32(out, 0x02014b50);
        buf_u16(out, 45);
        buf_u16(out, o->zip64 ? 45 : 20);
        buf_u16(out, flags);
        buf_u16(out, e[i].method);
        buf_u16(out, 0);
        buf_u16(out, 0);
        buf_u32(out, 0);
        buf_u32(out, o->zip64 ? 0xffffffffu : (uint32_t)e[i].len);
        buf_u32(out, o->zip64 ? 0xffffffffu : (uint32_t)e[i].len);
        buf_u16(out, name_len);
        buf_u16(out, o->zip64 ? 28 : 0);
        buf_u16(out, 0);
        buf_u16(out, 0);
        buf_u16(out, 0);
        buf_u32(out, 0);
        buf_u32(out, o->zip64 ? 0xffffffffu : (uint32_t)offsets[i]);
        buf_str(out, e[i].name);
        if (o->zip64) {
            buf_u16(out, 1);
            buf_u16(out, 24);
            buf_u64(out, e[i].len);
            buf_u64(out, e[i].len);
            buf_u64(out, offsets[i]);
        }
    }
    uint64_t cd_size = out->n - cd_offset;

    if (o->zip64 || o->zip64_end) {
        uint64_t z = out->n;
        buf_u32(out, 0x06064b50);
        buf_u64(out, 44);
        buf_u16(out, 45);
        buf_u16(out, 45);
        buf_u32(out, 0);
        buf_u32(out, 0);
        buf_u64(out, n);
        buf_u64(out, n);
        buf_u64(out, cd_size);
        buf_u64(out, cd_offset);
        buf_u32(out, 0x07064b50);
        buf_u32(out, 0);
        buf_u64(out, z);
        buf_u32(out, 1);
    }
    buf_u32(out, 0x06054b50);
    buf_u16(out, 0);
    buf_u16(out, 0);
    buf_u16(out, o->zip64 ? 0xffff : (uint16_t)n);
    buf_u16(out, o->zip64 ? 0xffff : (uint16_t)n);
    buf_u32(out, o->zip64 ? 0xffffffffu : (uint32_t)cd_size);
    buf_u32(out, o->zip64 ? 0xffffffffu : (uint32_t)cd_offset);
    buf_u16(out, 0);
    free(offsets);
}

/* ------------------------------------------------------------------------ */
/* Pickle writer                                                            */
/* ------------------------------------------------------------------------ */

typedef struct pk {
    buf b;         /* The pickle so far. */
    int proto4;    /* Protocol 4 style: FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE. */
    uint32_t memo; /* Next memo index. */
} pk;

static void pk_op(pk *p, uint8_t op) { buf_u8(&p->b, op); }

static void pk_memo(pk *p) {
    if (p->proto4) {
        pk_op(p, 0x94);
    } else if (p->memo < 256) {
        pk_op(p, 'q');
        buf_u8(&p->b, (uint8_t)p->memo);
    } else {
        pk_op(p, 'r');
        buf_u32(&p->b, p->memo);
    }
    p->memo++;
}

static void pk_str(pk *p, const char *s) {
    size_t n = strlen(s);
    if (p->proto4 && n < 256) {
        pk_op(p, 0x8c);
        buf_u8(&p->b, (uint8_t)n);
    } else {
        pk_op(p, 'X');
        buf_u32(&p->b, (uint32_t)n);
    }
    buf_str(&p->b, s);
    pk_memo(p);
}

static void pk_int(pk *p, int64_t v) {
    if (v >= 0 && v < 256) {
        pk_op(p, 'K');
        buf_u8(&p->b, (uint8_t)v);
    } else if (v >= 0 && v < 65536) {
        pk_op(p, 'M');
        buf_u16(&p->b, (uint16_t)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        pk_op(p, 'J');
        buf_u32(&p->b, (uint32_t)(int32_t)v);
    } else {
        pk_op(p, 0x8a);
        buf_u8(&p->b, 8);
        buf_u64(&p->b, (uint64_t)v);
    }
}

static void pk_global(pk *p, const char *module, const char *name) {
    if (p->proto4) {
        pk_str(p, module);
        pk_str(p, name);
        pk_op(p, 0x93);
    } else {
        pk_op(p, 'c');
        buf_str(&p->b, module);
        buf_u8(&p->b, '\n');
        buf_str(&p->b, name);
        buf_u8(&p->b, '\n');
    }
    pk_memo(p);
}

static void pk_ordered_dict(pk *p) {
    pk_global(p, "collections", "OrderedDict");
    pk_op(p, ')');
    pk_op(p, 'R');
    pk_memo(p);
}

static void pk_ints(pk *p, int n, const int64_t *v) {
    if (n == 0) {
        pk_op(p, ')');
        return;
    }
    pk_op(p, '(');
    for (int i = 0; i < n; i++) pk_int(p, v[i]);
    pk_op(p, 't');
    pk_memo(p);
}

/* A tensor as torch.save writes it. */
typedef struct tspec {
    const char *name;    /* State dict key. */
    const char *storage; /* Storage class in module torch, e.g. "FloatStorage". */
    const char *key;     /* Storage key: the entry <prefix>/data/<key>. */
    int64_t numel;       /* Elements the persistent id declares. */
    int64_t offset;      /* First element in the storage. */
    int n_dims;          /* Dimensions. */
    int64_t size[6];     /* Shape. */
    int64_t stride[6];   /* Strides; all zero means row-major. */
    int parameter;       /* Wrap in torch._utils._rebuild_parameter. */
} tspec;

static void pk_tensor(pk *p, const tspec *t) {
    int64_t stride[6];
    int all_zero = 1;
    for (int i = 0; i < t->n_dims; i++) all_zero &= t->stride[i] == 0;
    uint64_t s = 1;
    for (int i = t->n_dims - 1; i >= 0; i--) {
        stride[i] = all_zero ? (int64_t)s : t->stride[i];
        s *= (uint64_t)t->size[i];
    }
    if (t->parameter) pk_global(p, "torch._utils", "_rebuild_parameter");
    pk_global(p, "torch._utils", "_rebuild_tensor_v2");
    pk_op(p, '(');
    pk_op(p, '(');
    pk_str(p, "storage");
    pk_global(p, "torch", t->storage);
    pk_str(p, t->key);
    pk_str(p, "cpu");
    pk_int(p, t->numel);
    pk_op(p, 't');
    pk_memo(p);
    pk_op(p, 'Q');
    pk_int(p, t->offset);
    pk_ints(p, t->n_dims, t->size);
    pk_ints(p, t->n_dims, stride);
    pk_op(p, 0x89);
    pk_ordered_dict(p);
    pk_op(p, 't');
    pk_memo(p);
    pk_op(p, 'R');
    pk_memo(p);
    if (t->parameter) {
        pk_op(p, 0x88);
        pk_ordered_dict(p);
        pk_op(p, 0x87);
        pk_op(p, 'R');
        pk_memo(p);
    }
}

/* A whole state dict: an OrderedDict with _metadata (as nn.Module.state_dict()
 * pickles) or a plain dict. Returns the pickle in *out. */
static void pk_state_dict(buf *out, const tspec *t, size_t n, int ordered, int proto4) {
    pk p = {{0}, proto4, 0};
    pk_op(&p, 0x80);
    buf_u8(&p.b, proto4 ? 4 : 2);
    size_t frame_at = 0;
    if (proto4) {
        pk_op(&p, 0x95);
        frame_at = p.b.n;
        buf_u64(&p.b, 0);
    }
    if (ordered) {
        pk_ordered_dict(&p);
    } else {
        pk_op(&p, '}');
        pk_memo(&p);
    }
    pk_op(&p, '(');
    for (size_t i = 0; i < n; i++) {
        pk_str(&p, t[i].name);
        pk_tensor(&p, &t[i]);
    }
    pk_op(&p, 'u');
    if (ordered) {
        pk_op(&p, '}');
        pk_memo(&p);
        pk_str(&p, "_metadata");
        pk_ordered_dict(&p);
        pk_str(&p, "");
        pk_op(&p, '}');
        pk_memo(&p);
        pk_str(&p, "version");
        pk_int(&p, 1);
        pk_op(&p, 's');
        pk_op(&p, 's');
        pk_op(&p, 's');
        pk_op(&p, 'b');
    }
    pk_op(&p, '.');
    if (proto4) {
        uint64_t frame = p.b.n - frame_at - 8;
        memcpy(p.b.p + frame_at, &frame, 8);
    }
    *out = p.b;
}

/* ------------------------------------------------------------------------ */
/* Harness                                                                  */
/* ------------------------------------------------------------------------ */

static char tmp_dir[64];
static char tmp_path[128];
static const char *manifest_dir;

static int group_setup(void **state) {
    (void)state;
    /* Thousands of small files are written: memory-backed /dev/shm is much faster than a busy disk. */
    const char *base = getenv("TMPDIR");
    if (base == NULL || strlen(base) >= 30) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmp_dir, sizeof tmp_dir, "%s/bc_test_torch_XXXXXX", base);
    if (mkdtemp(tmp_dir) == NULL) return -1;
    snprintf(tmp_path, sizeof tmp_path, "%s/model.bin", tmp_dir);
    bc__f16_init();
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    unlink(tmp_path);
    rmdir(tmp_dir);
    return 0;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n > 0) assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Writes the bytes to the temporary checkpoint and reads it. */
static int read_file_bytes(const void *data, size_t n, bc__tensor_table *t, bc__err *err) {
    write_file(tmp_path, data, n);
    memset(t, 0, sizeof *t);
    memset(err, 0, sizeof *err);
    int rc = bc__torch_read(t, tmp_path, err);
    if (rc != 0) {
        assert_int_not_equal(err->status, BC_STATUS_OK);
        /* Every message starts with the file. */
        assert_memory_equal(err->msg, tmp_path, strlen(tmp_path));
    } else {
        assert_int_equal(err->status, BC_STATUS_OK);
    }
    return rc;
}

/* Reads the bytes and expects an error whose message holds every given piece. */
static void expect_error_impl(const void *data, size_t n, const char *const *pieces) {
    bc__tensor_table t;
    bc__err err;
    int rc = read_file_bytes(data, n, &t, &err);
    bc__table_free(&t);
    if (rc == 0) fail_msg("expected an error, the read succeeded");
    if (getenv("BC_TEST_VERBOSE") != NULL) printf("  %s\n", err.msg);
    for (size_t i = 0; pieces[i] != NULL; i++)
        if (strstr(err.msg, pieces[i]) == NULL) fail_msg("message \"%s\" lacks \"%s\"", err.msg, pieces[i]);
}
#define expect_error(data, n, ...) expect_error_impl((data), (n), (const char *const[]){__VA_ARGS__, NULL})

/* A zip of "archive/data.pkl" holding the pickle plus the given storages. */
static void make_archive(buf *out, const buf *pickle, const zentry *storages, size_t n_storages, const zopts *o) {
    zentry e[16];
    assert_true(n_storages < 15);
    e[0] = (zentry){"archive/data.pkl", pickle->p, pickle->n, 0};
    for (size_t i = 0; i < n_storages; i++) e[i + 1] = storages[i];
    e[n_storages + 1] = (zentry){"archive/version", "3\n", 2, 0};
    zip_write(out, e, n_storages + 2, o);
}

/* A zip holding only the given pickle as archive/data.pkl. */
static void make_pickle_only(buf *out, const void *pickle, size_t n) {
    buf p = {(uint8_t *)(uintptr_t)pickle, n, n};
    zopts o = {0, 1, 1, 1};
    make_archive(out, &p, NULL, 0, &o);
}

/* ------------------------------------------------------------------------ */
/* The standard test checkpoint                                             */
/* ------------------------------------------------------------------------ */

/* Storage "0": 12 f32 values k * 0.5; "1": 6 f16; "2": 8 bf16; "3": 1 f32; "4": empty. */
static float st0[12];
static uint16_t st1[6], st2[8];
static float st3[1] = {42.0f};

static void fill_storages(void) {
    for (int k = 0; k < 12; k++) st0[k] = (float)k * 0.5f;
    for (int k = 0; k < 6; k++) st1[k] = (uint16_t)(0x3c00 + k); /* 1.0 and just above */
    for (int k = 0; k < 8; k++) st2[k] = (uint16_t)(0x3f80 + k * 0x10);
}

#define N_STD_TENSORS 9
static const tspec std_tensors[N_STD_TENSORS] = {
    {"model.embed_tokens.weight", "FloatStorage", "0", 12, 0, 2, {3, 4}, {0}, 0},
    /* Q, K, V as views of one W_pack storage, like a split of a fused matrix. */
    {"q", "FloatStorage", "0", 12, 0, 2, {1, 4}, {999, 1}, 0},
    {"k", "FloatStorage", "0", 12, 4, 2, {1, 4}, {4, 1}, 0},
    {"v", "FloatStorage", "0", 12, 8, 1, {4}, {1}, 0},
    {"model.layers.0.mlp.up_proj.weight", "HalfStorage", "1", 6, 0, 2, {2, 3}, {0}, 0},
    {"lm_head.weight", "BFloat16Storage", "2", 8, 0, 3, {2, 2, 2}, {0}, 0},
    {"scalar", "FloatStorage", "3", 1, 0, 0, {0}, {0}, 0},
    {"empty", "FloatStorage", "4", 0, 0, 2, {0, 3}, {3, 1}, 0},
    {"param", "BFloat16Storage", "2", 8, 2, 2, {3, 2}, {0}, 1},
};

static void std_storages(zentry *s) {
    fill_storages();
    s[0] = (zentry){"archive/data/0", st0, sizeof st0, 0};
    s[1] = (zentry){"archive/data/1", st1, sizeof st1, 0};
    s[2] = (zentry){"archive/data/2", st2, sizeof st2, 0};
    s[3] = (zentry){"archive/data/3", st3, sizeof st3, 0};
    s[4] = (zentry){"archive/data/4", "", 0, 0};
}

/* The standard checkpoint in the given style. */
static void make_std(buf *out, int ordered, int proto4, const zopts *o) {
    buf pickle;
    zentry s[5];
    std_storages(s);
    pk_state_dict(&pickle, std_tensors, N_STD_TENSORS, ordered, proto4);
    make_archive(out, &pickle, s, 5, o);
    buf_free(&pickle);
}

static const zopts torch_like = {0, 1, 1, 1};

static void check_tensor(const bc__tensor_table *t, const char *name, bc_dtype dtype, int n_dims, const int64_t *shape,
                         const void *bytes, size_t n_bytes) {
    const bc__tensor *x = bc__table_find(t, name);
    if (x == NULL) fail_msg("tensor '%s' missing", name);
    assert_int_equal(x->dtype, dtype);
    assert_int_equal(x->n_dims, n_dims);
    for (int i = 0; i < n_dims; i++) assert_int_equal(x->shape[i], shape[i]);
    assert_int_equal(x->n_bytes, n_bytes);
    if (n_bytes > 0) assert_memory_equal(x->data, bytes, n_bytes);
    /* The offset names where the bytes lie in the file. */
    assert_true(x->file_offset + n_bytes <= x->file->size);
    if (n_bytes > 0) assert_memory_equal(x->file->data + x->file_offset, bytes, n_bytes);
}

static void check_std(const bc__tensor_table *t) {
    assert_int_equal(t->n_tensors, N_STD_TENSORS);
    for (size_t i = 0; i < N_STD_TENSORS; i++) assert_string_equal(t->tensors[i].name, std_tensors[i].name);
    check_tensor(t, "model.embed_tokens.weight", BC_DTYPE_F32, 2, (int64_t[]){3, 4}, st0, 48);
    check_tensor(t, "q", BC_DTYPE_F32, 2, (int64_t[]){1, 4}, st0, 16);
    check_tensor(t, "k", BC_DTYPE_F32, 2, (int64_t[]){1, 4}, st0 + 4, 16);
    check_tensor(t, "v", BC_DTYPE_F32, 1, (int64_t[]){4}, st0 + 8, 16);
    check_tensor(t, "model.layers.0.mlp.up_proj.weight", BC_DTYPE_F16, 2, (int64_t[]){2, 3}, st1, 12);
    check_tensor(t, "lm_head.weight", BC_DTYPE_BF16, 3, (int64_t[]){2, 2, 2}, st2, 16);
    check_tensor(t, "scalar", BC_DTYPE_F32, 0, NULL, st3, 4);
    check_tensor(t, "empty", BC_DTYPE_F32, 2, (int64_t[]){0, 3}, NULL, 0);
    check_tensor(t, "param", BC_DTYPE_BF16, 2, (int64_t[]){3, 2}, st2 + 2, 12);
}

static void read_std(int ordered, int proto4, const zopts *o) {
    buf file = {0};
    make_std(&file, ordered, proto4, o);
    bc__tensor_table t;
    bc__err err;
    if (read_file_bytes(file.p, file.n, &t, &err) != 0) fail_msg("%s", err.msg);
    check_std(&t);
    if (o->align) {
        for (size_t i = 0; i < t.n_tensors; i++) /* in place, not copied */
            assert_ptr_equal(t.tensors[i].data, t.tensors[i].file->data + t.tensors[i].file_offset);
        /* Shared storage: the views point into one entry. */
        assert_ptr_equal((const uint8_t *)bc__table_find(&t, "k")->data,
                         (const uint8_t *)bc__table_find(&t, "q")->data + 16);
    }
    bc__table_free(&t);
    buf_free(&file);
}

/* ------------------------------------------------------------------------ */
/* Valid files                                                              */
/* ------------------------------------------------------------------------ */

static void test_ordered_dict_protocol2(void **state) {
    (void)state;
    read_std(1, 0, &torch_like);
}

static void test_plain_dict_protocol2(void **state) {
    (void)state;
    read_std(0, 0, &torch_like);
}

static void test_protocol4(void **state) {
    (void)state;
    read_std(1, 1, &torch_like);
    read_std(0, 1, &torch_like);
}

static void test_zip64(void **state) {
    (void)state;
    zopts with_descriptor = {1, 1, 1, 1};
    zopts sizes_in_local_header = {1, 0, 1, 1};
    zopts unaligned = {1, 0, 0, 1};
    read_std(1, 0, &with_descriptor);
    read_std(1, 0, &sizes_in_local_header);
    read_std(1, 1, &unaligned);
}

static void test_plain_zip(void **state) {
    (void)state;
    zopts no_zip64_end = {0, 0, 0, 0}; /* e.g. an archive rewritten by another tool */
    read_std(1, 0, &no_zip64_end);
    zopts descriptor = {0, 1, 0, 0};
    read_std(0, 1, &descriptor);
}

static void test_long_memo(void **state) {
    (void)state;
    fill_storages();
    /* Protocol 2 with more than 256 memo entries: LONG_BINPUT and LONG_BINGET. */
    pk p = {{0}, 0, 0};
    pk_op(&p, 0x80);
    buf_u8(&p.b, 2);
    pk_op(&p, '}');
    pk_memo(&p);
    pk_op(&p, '(');
    char name[32];
    for (int i = 0; i < 100; i++) { /* 100 tensors of ~6 memo entries each */
        snprintf(name, sizeof name, "layer.%d.weight", i);
        tspec t = {name, "FloatStorage", "0", 12, i % 12, 1, {1}, {0}, 0};
        pk_str(&p, name);
        pk_tensor(&p, &t);
    }
    pk_op(&p, 'u');
    pk_op(&p, '.');
    assert_true(p.memo > 256);

    zentry s[5];
    std_storages(s);
    buf file = {0};
    make_archive(&file, &p.b, s, 1, &torch_like);
    bc__tensor_table t;
    bc__err err;
    if (read_file_bytes(file.p, file.n, &t, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(t.n_tensors, 100);
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "layer.%d.weight", i);
        check_tensor(&t, name, BC_DTYPE_F32, 1, (int64_t[]){1}, st0 + i % 12, 4);
    }
    bc__table_free(&t);
    buf_free(&file);
    buf_free(&p.b);
}

/* Constants of every kind may appear in a file's ignored parts: here in the
 * _metadata an OrderedDict's BUILD state holds. */
static void test_constants_in_metadata(void **state) {
    (void)state;
    fill_storages();
    /* clang-format off */
    static const uint8_t head[] = {
        0x80, 0x02, 'c', 'c', 'o', 'l', 'l', 'e', 'c', 't', 'i', 'o', 'n', 's', '\n',
        'O', 'r', 'd', 'e', 'r', 'e', 'd', 'D', 'i', 'c', 't', '\n',
        'r', 0x2c, 0x01, 0x00, 0x00,       /* LONG_BINPUT 300 */
        ')', 'R',                          /* OrderedDict() */
        '}',                               /* the state */
        'X', 1, 0, 0, 0, 'm',              /* key "m" */
        ']', '(',                          /* a list, MARK */
        'B', 3, 0, 0, 0, 'a', 'b', 'c',    /* BINBYTES */
        'C', 1, 'x',                       /* SHORT_BINBYTES */
        0x8e, 1, 0, 0, 0, 0, 0, 0, 0, 'y', /* BINBYTES8 */
        'G', 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, /* BINFLOAT 1.0 */
        0x8a, 2, 0x00, 0xff,               /* LONG1 -256 */
        0x8a, 0,                           /* LONG1 0 */
        0x8b, 1, 0, 0, 0, 0x05,            /* LONG4 5 */
        0x8d, 1, 0, 0, 0, 0, 0, 0, 0, 'z', /* BINUNICODE8 */
        'N', 0x88, 0x89,                   /* None True False */
        'J', 0xff, 0xff, 0xff, 0xff,       /* BININT -1 */
        'M', 0x34, 0x12,                   /* BININT2 */
        'j', 0x2c, 0x01, 0x00, 0x00,       /* LONG_BINGET 300: the OrderedDict global */
        'e',                               /* APPENDS */
        ')', 'a',                          /* APPEND () */
        's',                               /* state["m"] = list */
        'b',                               /* BUILD */
        '.',
    };
    /* clang-format on */
    buf file = {0};
    make_pickle_only(&file, head, sizeof head);
    bc__tensor_table t;
    bc__err err;
    if (read_file_bytes(file.p, file.n, &t, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(t.n_tensors, 0);
    bc__table_free(&t);
    buf_free(&file);
}

/* Tensors are added after table entries from other files, and a name that
 * another file already gave is an error. */
static void test_two_files_one_table(void **state) {
    (void)state;
    buf file = {0};
    make_std(&file, 1, 0, &torch_like);
    char second[160];
    snprintf(second, sizeof second, "%s/second.bin", tmp_dir);
    write_file(second, file.p, file.n);
    bc__tensor_table t;
    bc__err err;
    assert_int_equal(read_file_bytes(file.p, file.n, &t, &err), 0);
    assert_int_equal(bc__torch_read(&t, second, &err), -1);
    assert_non_null(strstr(err.msg, "appears twice"));
    bc__table_free(&t);
    unlink(second);
    buf_free(&file);
}

/* ------------------------------------------------------------------------ */
/* Invalid files                                                            */
/* ------------------------------------------------------------------------ */

static void test_forbidden_global(void **state) {
    (void)state;
    /* os.system("ls") as protocol 2 writes it on Linux. */
    static const uint8_t evil[] = {0x80, 0x02, 'c',  'p',  'o', 's',  'i', 'x',  '\n', 's',  'y',  's',
                                   't',  'e',  'm',  '\n', 'q', 0x00, 'X', 0x02, 0x00, 0x00, 0x00, 'l',
                                   's',  'q',  0x01, 0x85, 'q', 0x02, 'R', 'q',  0x03, '.'};
    buf file = {0};
    make_pickle_only(&file, evil, sizeof evil);
    expect_error(file.p, file.n, "forbidden global 'posix.system'", "archive/data.pkl at offset 2)");
    buf_free(&file);

    /* The same through STACK_GLOBAL (protocol 4). */
    static const uint8_t evil4[] = {0x80, 0x04, 0x8c, 8, 'b', 'u', 'i', 'l', 't',  'i',  'n',
                                    's',  0x94, 0x8c, 4, 'e', 'v', 'a', 'l', 0x94, 0x93, '.'};
    make_pickle_only(&file, evil4, sizeof evil4);
    expect_error(file.p, file.n, "forbidden global 'builtins.eval'", "at offset 20)");
    buf_free(&file);

    /* A near miss of an allowed name. */
    static const uint8_t near[] = "\x80\x02"
                                  "ctorch\nFloatStorageX\n.";
    make_pickle_only(&file, near, sizeof near - 1);
    expect_error(file.p, file.n, "forbidden global 'torch.FloatStorageX'");
    buf_free(&file);
}

static void test_unknown_opcode(void **state) {
    (void)state;
    static const uint8_t unknown[] = {0x80, 0x02, '}', 0xff, '.'};
    buf file = {0};
    make_pickle_only(&file, unknown, sizeof unknown);
    expect_error(file.p, file.n, "unknown pickle opcode 0xff", "at offset 3)");
    buf_free(&file);

    static const uint8_t newobj[] = {0x80, 0x02, ')', ')', 0x81, '.'};
    make_pickle_only(&file, newobj, sizeof newobj);
    expect_error(file.p, file.n, "unsupported pickle opcode 0x81 (NEWOBJ)", "at offset 4)");
    buf_free(&file);

    static const uint8_t proto6[] = {0x80, 0x06, '}', '.'};
    make_pickle_only(&file, proto6, sizeof proto6);
    expect_error(file.p, file.n, "unsupported pickle protocol 6", "at offset 0)");
    buf_free(&file);
}

static void test_compressed_entry(void **state) {
    (void)state;
    buf pickle, file = {0};
    zentry s[5];
    std_storages(s);
    pk_state_dict(&pickle, std_tensors, N_STD_TENSORS, 1, 0);

    s[1].method = 8;
    make_archive(&file, &pickle, s, 5, &torch_like);
    expect_error(file.p, file.n, "zip entry 'archive/data/1' is compressed (method 8)");
    buf_free(&file);

    s[1].method = 0;
    zentry e[6] = {{"archive/data.pkl", pickle.p, pickle.n, 8}, s[0], s[1], s[2], s[3], s[4]};
    zip_write(&file, e, 6, &torch_like);
    expect_error(file.p, file.n, "zip entry 'archive/data.pkl' is compressed");
    buf_free(&file);
    buf_free(&pickle);
}

static void test_truncated_file(void **state) {
    (void)state;
    buf file = {0};
    make_std(&file, 1, 0, &torch_like);
    bc__tensor_table t;
    bc__err err;
    for (size_t n = 0; n < file.n; n++) {
        if (read_file_bytes(file.p, n, &t, &err) == 0) fail_msg("a %zu-byte prefix of %zu was accepted", n, file.n);
        bc__table_free(&t);
    }
    buf_free(&file);

    /* The same for zip64 archives. */
    zopts z = {1, 0, 0, 1};
    make_std(&file, 0, 1, &z);
    for (size_t n = 0; n < file.n; n++) {
        if (read_file_bytes(file.p, n, &t, &err) == 0) fail_msg("a %zu-byte prefix of %zu was accepted", n, file.n);
        bc__table_free(&t);
    }
    buf_free(&file);
}

static void test_truncated_pickle(void **state) {
    (void)state;
    zentry s[5];
    std_storages(s);
    for (int proto4 = 0; proto4 <= 1; proto4++) {
        buf pickle;
        pk_state_dict(&pickle, std_tensors, N_STD_TENSORS, 1, proto4);
        for (size_t n = 0; n < pickle.n; n++) {
            buf cut = {pickle.p, n, n}, file = {0};
            make_archive(&file, &cut, s, 5, &torch_like);
            bc__tensor_table t;
            bc__err err;
            if (read_file_bytes(file.p, file.n, &t, &err) == 0)
                fail_msg("a %zu-byte prefix of a %zu-byte pickle was accepted", n, pickle.n);
            bc__table_free(&t);
            buf_free(&file);
        }
        buf_free(&pickle);
    }
}

/* Every byte of a valid file flipped in turn: read or refused, never a crash. */
static void test_flipped_bytes(void **state) {
    (void)state;
    for (int proto4 = 0; proto4 <= 1; proto4++) {
        buf file = {0};
        zopts z = {proto4, 0, 1, 1};
        make_std(&file, 1, proto4, &z);
        for (size_t i = 0; i < file.n; i++) {
            static const uint8_t masks[] = {0xff, 0x01, 0x80};
            for (size_t k = 0; k < sizeof masks; k++) {
                file.p[i] ^= masks[k];
                bc__tensor_table t;
                bc__err err;
                read_file_bytes(file.p, file.n, &t, &err);
                bc__table_free(&t);
                file.p[i] ^= masks[k];
            }
        }
        buf_free(&file);
    }
}

static void test_missing_storage(void **state) {
    (void)state;
    buf pickle, file = {0};
    zentry s[5];
    std_storages(s);
    pk_state_dict(&pickle, std_tensors, N_STD_TENSORS, 1, 0);
    s[2].name = "archive/data/22";
    make_archive(&file, &pickle, s, 5, &torch_like);
    expect_error(file.p, file.n, "storage '2' is missing", "no entry 'archive/data/2'", "archive/data.pkl at offset");
    buf_free(&file);
    buf_free(&pickle);
}

static void test_storage_too_short(void **state) {
    (void)state;
    buf pickle, file = {0};
    zentry s[5];
    std_storages(s);
    pk_state_dict(&pickle, std_tensors, N_STD_TENSORS, 1, 0);
    s[1].len = 10; /* 6 halfs need 12 bytes */
    make_archive(&file, &pickle, s, 5, &torch_like);
    expect_error(file.p, file.n, "storage '1' declares 6 elements of torch.HalfStorage (12 bytes)",
                 "'archive/data/1' holds only 10 bytes");
    buf_free(&file);
    buf_free(&pickle);
}

/* Builds the standard storages with one different tensor and expects an error. */
static void expect_tensor_error(const tspec *bad, const char *a, const char *b) {
    tspec t[2] = {std_tensors[0], *bad};
    buf pickle, file = {0};
    zentry s[5];
    std_storages(s);
    pk_state_dict(&pickle, t, 2, 1, 0);
    make_archive(&file, &pickle, s, 5, &torch_like);
    expect_error(file.p, file.n, a, b);
    buf_free(&file);
    buf_free(&pickle);
}

static void test_non_contiguous(void **state) {
    (void)state;
    tspec transposed = {"model.layers.0.mlp.up_proj.weight", "FloatStorage", "0", 12, 0, 2, {4, 3}, {1, 4}, 0};
    expect_tensor_error(&transposed, "tensor 'model.layers.0.mlp.up_proj.weight' is not contiguous",
                        "size [4, 3], stride [1, 4]");
    tspec strided = {"every_other", "FloatStorage", "0", 12, 0, 1, {6}, {2}, 0};
    expect_tensor_error(&strided, "tensor 'every_other' is not contiguous", "stride [2]");
}

static void test_tensor_outside_storage(void **state) {
    (void)state;
    tspec past_end = {"w", "FloatStorage", "0", 12, 9, 1, {4}, {0}, 0};
    expect_tensor_error(&past_end, "tensor 'w': its 4 elements from element 9 on lie outside its storage '0'",
                        "of 12 elements");
    tspec negative = {"w", "FloatStorage", "0", 12, -1, 1, {4}, {0}, 0};
    expect_tensor_error(&negative, "tensor 'w': its 4 elements from element -1 on", "");
    tspec huge = {"w", "FloatStorage", "0", 12, 0, 2, {INT64_MAX, 4}, {4, 1}, 0};
    expect_tensor_error(&huge, "tensor 'w': size [9223372036854775807, 4] is negative or overflows", "");
    tspec five_dims = {"w", "FloatStorage", "0", 12, 0, 5, {1, 1, 1, 1, 1}, {0}, 0};
    expect_tensor_error(&five_dims, "tensor 'w' has 5 dimensions", "at most 4");
}

static void test_unsupported_dtype(void **state) {
    (void)state;
    tspec dbl = {"rotary_emb.inv_freq", "DoubleStorage", "0", 6, 0, 1, {6}, {0}, 0};
    expect_tensor_error(&dbl, "tensor 'rotary_emb.inv_freq': unsupported dtype", "torch.DoubleStorage");
    tspec lng = {"ids", "LongStorage", "0", 6, 0, 1, {6}, {0}, 0};
    expect_tensor_error(&lng, "tensor 'ids': unsupported dtype", "torch.LongStorage");
}

static void test_memo_errors(void **state) {
    (void)state;
    buf file = {0};
    static const uint8_t get_unset[] = {0x80, 0x02, '}', 'q', 0x00, 'h', 0x05, '.'};
    make_pickle_only(&file, get_unset, sizeof get_unset);
    expect_error(file.p, file.n, "BINGET: memo index 5 was never stored", "at offset 5)");
    buf_free(&file);

    static const uint8_t long_get[] = {0x80, 0x02, '}', 'j', 0xff, 0xff, 0xff, 0xff, '.'};
    make_pickle_only(&file, long_get, sizeof long_get);
    expect_error(file.p, file.n, "LONG_BINGET: memo index 4294967295 was never stored");
    buf_free(&file);

    static const uint8_t long_put[] = {0x80, 0x02, '}', 'r', 0x00, 0x00, 0x10, 0x00, '.'};
    make_pickle_only(&file, long_put, sizeof long_put);
    expect_error(file.p, file.n, "LONG_BINPUT: memo index 1048576 exceeds the limit of 1048576 entries");
    buf_free(&file);

    static const uint8_t put_empty[] = {0x80, 0x02, 'q', 0x00, '.'};
    make_pickle_only(&file, put_empty, sizeof put_empty);
    expect_error(file.p, file.n, "stack underflow: BINPUT");
    buf_free(&file);
}

/* A protocol-2 pickle: head, then unit `times` times, then STOP, as the
 * only content of a checkpoint (the limit tests' long opcode runs). */
static void make_repeated_pickle(buf *file, const char *head, const char *unit, size_t times) {
    buf pkl = {0};
    buf_u8(&pkl, 0x80);
    buf_u8(&pkl, 2);
    for (const char *c = head; *c; c++) buf_u8(&pkl, (uint8_t)*c);
    for (size_t i = 0; i < times; i++)
        for (const char *c = unit; *c; c++) buf_u8(&pkl, (uint8_t)*c);
    buf_u8(&pkl, '.');
    make_pickle_only(file, pkl.p, pkl.n);
    buf_free(&pkl);
}

static void test_stack_errors(void **state) {
    (void)state;
    buf file = {0};
    static const uint8_t tuple1[] = {0x80, 0x02, 0x85, '.'};
    make_pickle_only(&file, tuple1, sizeof tuple1);
    expect_error(file.p, file.n, "stack underflow: TUPLE1", "at offset 2)");
    buf_free(&file);

    /* Values below a MARK are out of reach until it closes. */
    static const uint8_t below_mark[] = {0x80, 0x02, ']', 'N', '(', 'a', '.'};
    make_pickle_only(&file, below_mark, sizeof below_mark);
    expect_error(file.p, file.n, "stack underflow: APPEND needs a value above the last MARK", "at offset 5)");
    buf_free(&file);

    static const uint8_t no_mark[] = {0x80, 0x02, '}', 'u', '.'};
    make_pickle_only(&file, no_mark, sizeof no_mark);
    expect_error(file.p, file.n, "SETITEMS without a MARK");
    buf_free(&file);

    static const uint8_t odd[] = {0x80, 0x02, '}', '(', 'N', 'u', '.'};
    make_pickle_only(&file, odd, sizeof odd);
    expect_error(file.p, file.n, "SETITEMS: a key without a value");
    buf_free(&file);

    static const uint8_t two_left[] = {0x80, 0x02, '}', '}', '.'};
    make_pickle_only(&file, two_left, sizeof two_left);
    expect_error(file.p, file.n, "STOP with 2 values on the stack");
    buf_free(&file);

    static const uint8_t open_mark[] = {0x80, 0x02, '}', '(', '.'};
    make_pickle_only(&file, open_mark, sizeof open_mark);
    expect_error(file.p, file.n, "STOP with 1 MARKs still open");
    buf_free(&file);

    static const uint8_t no_stop[] = {0x80, 0x02, '}'};
    make_pickle_only(&file, no_stop, sizeof no_stop);
    expect_error(file.p, file.n, "ends without a STOP", "at offset 3)");
    buf_free(&file);

    /* Nesting: more open MARKs than the limit. */
    make_repeated_pickle(&file, "", "(", 300);
    expect_error(file.p, file.n, "MARKs nest deeper than the limit of 256", "at offset 258)");
    buf_free(&file);

    /* Depth: one more value on the stack than the limit (2^20). */
    make_repeated_pickle(&file, "", "N", (1 << 20) + 1);
    expect_error(file.p, file.n, "stack depth exceeds the limit of 1048576 values", "at offset 1048578)");
    buf_free(&file);

    /* Memory: 2^22 empty dicts in a list pass the 256 MiB the arena may hold
     * (at about 3.1 million, before the 2^22 count limit). */
    make_repeated_pickle(&file, "]", "}a", 1 << 22);
    expect_error(file.p, file.n, "the pickle needs more than the limit of 256 MiB of memory");
    buf_free(&file);
}

static void test_length_errors(void **state) {
    (void)state;
    buf file = {0};
    static const uint8_t big_str[] = {0x80, 0x02, 'X', 0xf0, 0xff, 0xff, 0xff, 'a', '.'};
    make_pickle_only(&file, big_str, sizeof big_str);
    expect_error(file.p, file.n, "BINUNICODE declares 4294967280 bytes, but only 2 remain", "at offset 2)");
    buf_free(&file);

    static const uint8_t big_str8[] = {0x80, 0x04, 0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '.'};
    make_pickle_only(&file, big_str8, sizeof big_str8);
    expect_error(file.p, file.n, "BINUNICODE8 declares 18446744073709551615 bytes, but only 1 remain");
    buf_free(&file);

    static const uint8_t big_frame[] = {0x80, 0x04, 0x95, 0x00, 0x01, 0, 0, 0, 0, 0, 0, '}', '.'};
    make_pickle_only(&file, big_frame, sizeof big_frame);
    expect_error(file.p, file.n, "FRAME of 256 bytes runs past the end");
    buf_free(&file);

    static const uint8_t big_long[] = {0x80, 0x02, 0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, '.'};
    make_pickle_only(&file, big_long, sizeof big_long);
    expect_error(file.p, file.n, "LONG1: a 9-byte integer does not fit in 64 bits");
    buf_free(&file);

    static const uint8_t no_newline[] = {0x80, 0x02, 'c', 't', 'o', 'r', 'c', 'h'};
    make_pickle_only(&file, no_newline, sizeof no_newline);
    expect_error(file.p, file.n, "GLOBAL: its name has no terminating newline");
    buf_free(&file);
}

static void test_structure_errors(void **state) {
    (void)state;
    buf file = {0};
    /* A state dict value that is not a tensor names its key. */
    static const uint8_t not_tensor[] = "\x80\x02}(X\x05\x00\x00\x00"
                                        "modelK\x01u.";
    make_pickle_only(&file, not_tensor, sizeof not_tensor - 1);
    expect_error(file.p, file.n, "state dict entry 'model' is an int, not a tensor");
    buf_free(&file);

    static const uint8_t not_dict[] = "\x80\x02].";
    make_pickle_only(&file, not_dict, sizeof not_dict - 1);
    expect_error(file.p, file.n, "holds a list, not a state dict");
    buf_free(&file);

    static const uint8_t int_key[] = "\x80\x02}(K\x01K\x02u.";
    make_pickle_only(&file, int_key, sizeof int_key - 1);
    expect_error(file.p, file.n, "state dict key 0 is an int, not a str");
    buf_free(&file);

    /* BUILD is accepted on an OrderedDict only. */
    static const uint8_t build_dict[] = "\x80\x02}}b.";
    make_pickle_only(&file, build_dict, sizeof build_dict - 1);
    expect_error(file.p, file.n, "BUILD on a dict (only an OrderedDict's", "at offset 4)");
    buf_free(&file);

    /* REDUCE only calls the interpreted globals, with the right arguments. */
    static const uint8_t call_storage[] = "\x80\x02"
                                          "ctorch\nFloatStorage\n)R.";
    make_pickle_only(&file, call_storage, sizeof call_storage - 1);
    expect_error(file.p, file.n, "REDUCE: calling torch.FloatStorage is not supported");
    buf_free(&file);

    static const uint8_t call_int[] = "\x80\x02K\x01)R.";
    make_pickle_only(&file, call_int, sizeof call_int - 1);
    expect_error(file.p, file.n, "REDUCE: cannot call an int");
    buf_free(&file);

    static const uint8_t od_args[] = "\x80\x02"
                                     "ccollections\nOrderedDict\n]\x85R.";
    make_pickle_only(&file, od_args, sizeof od_args - 1);
    expect_error(file.p, file.n, "collections.OrderedDict called with 1 arguments");
    buf_free(&file);

    static const uint8_t rebuild_args[] = "\x80\x02"
                                          "ctorch._utils\n_rebuild_tensor_v2\nNNN\x87R.";
    make_pickle_only(&file, rebuild_args, sizeof rebuild_args - 1);
    expect_error(file.p, file.n, "_rebuild_tensor_v2 takes 6 or 7 arguments, found 3");
    buf_free(&file);

    static const uint8_t bad_pid[] = "\x80\x02X\x03\x00\x00\x00"
                                     "abcQ.";
    make_pickle_only(&file, bad_pid, sizeof bad_pid - 1);
    expect_error(file.p, file.n, "BINPERSID: a persistent id must be ('storage', type, key, location, numel)");
    buf_free(&file);

    /* An APPEND to something that is not a list. */
    static const uint8_t append_dict[] = "\x80\x02}Na.";
    make_pickle_only(&file, append_dict, sizeof append_dict - 1);
    expect_error(file.p, file.n, "APPEND on a dict");
    buf_free(&file);

    /* Two tensors of one name. */
    tspec twice[2] = {std_tensors[0], std_tensors[0]};
    buf pickle;
    zentry s[5];
    std_storages(s);
    pk_state_dict(&pickle, twice, 2, 0, 0);
    make_archive(&file, &pickle, s, 5, &torch_like);
    expect_error(file.p, file.n, "tensor 'model.embed_tokens.weight' appears twice");
    buf_free(&file);
    buf_free(&pickle);
}

static void test_archive_errors(void **state) {
    (void)state;
    /* Not a zip: the legacy torch.save format starts with a pickle. */
    static const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8};
    expect_error(legacy, sizeof legacy, "legacy torch.save format");
    expect_error("hello, world", 12, "not a zip archive");

    /* A zip without data.pkl. */
    buf file = {0};
    zentry other = {"archive/version", "3\n", 2, 0};
    zip_write(&file, &other, 1, &torch_like);
    expect_error(file.p, file.n, "without a '<name>/data.pkl' entry");
    buf_free(&file);

    /* Two data.pkl entries. */
    zentry two[2] = {{"a/data.pkl", "}.", 2, 0}, {"b/data.pkl", "}.", 2, 0}};
    zip_write(&file, two, 2, &torch_like);
    expect_error(file.p, file.n, "holds both 'a/data.pkl' and 'b/data.pkl'");
    buf_free(&file);

    /* One name twice. */
    zentry dup[2] = {{"a/data.pkl", "}.", 2, 0}, {"a/data.pkl", "}.", 2, 0}};
    zip_write(&file, dup, 2, &torch_like);
    expect_error(file.p, file.n, "zip entry 'a/data.pkl' appears twice");
    buf_free(&file);

    /* An empty state dict in a minimal archive is fine. */
    zentry empty = {"x/data.pkl", "\x80\x02}.", 4, 0};
    zip_write(&file, &empty, 1, &torch_like);
    bc__tensor_table t;
    bc__err err;
    if (read_file_bytes(file.p, file.n, &t, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(t.n_tensors, 0);
    bc__table_free(&t);

    /* A central directory whose local header offset points nowhere. */
    size_t cd = file.n - 22 - 20 - 56 - 46 - 10; /* the one central header */
    assert_int_equal(file.p[cd], 'P');
    memcpy(file.p + cd + 42, "\x00\x01\x00\x00", 4);
    expect_error(file.p, file.n, "zip entry 'x/data.pkl': its local header offset 256 does not lie before");
    memcpy(file.p + cd + 42, "\x00\x00\x00\x00", 4);

    /* An entry declaring more entries than the directory can hold. */
    size_t end = file.n - 22;
    file.p[end + 8] = file.p[end + 10] = 2; /* the 16-bit counts, overridden by zip64... */
    size_t z64 = file.n - 22 - 20 - 56;
    file.p[z64 + 24] = file.p[z64 + 32] = 2; /* ...so set the zip64 ones too */
    expect_error(file.p, file.n, "declares 2 entries, but its central directory of 56 bytes has room for at most 1");
    file.p[z64 + 24] = 1;
    expect_error(file.p, file.n, "multi-disk zip archives are not supported");
    buf_free(&file);

    /* Multi-disk. */
    zip_write(&file, &empty, 1, &(zopts){0, 0, 0, 0});
    file.p[file.n - 22 + 4] = 1;
    expect_error(file.p, file.n, "multi-disk");
    buf_free(&file);

    /* Saturated 32-bit fields without a zip64 locator. */
    zip_write(&file, &empty, 1, &(zopts){0, 0, 0, 0});
    memset(file.p + file.n - 22 + 16, 0xff, 4);
    expect_error(file.p, file.n, "defers to zip64 values, but there is no zip64 locator");
    buf_free(&file);

    /* A central header asking for zip64 sizes without the extra field. */
    zip_write(&file, &empty, 1, &(zopts){0, 0, 0, 0});
    memset(file.p + file.n - 22 - 56 + 20, 0xff, 8);
    expect_error(file.p, file.n, "defers sizes or offsets to a zip64 extra field, but has none");
    buf_free(&file);

    /* A local header whose size disagrees with the central directory. */
    zip_write(&file, &empty, 1, &(zopts){0, 0, 0, 0});
    file.p[18] = 3;
    expect_error(file.p, file.n, "its local header says 3 bytes, the central directory 4");
    buf_free(&file);

    /* Encrypted. */
    zip_write(&file, &empty, 1, &(zopts){0, 0, 0, 0});
    file.p[file.n - 22 - 56 + 8] |= 1;
    expect_error(file.p, file.n, "zip entry 'x/data.pkl' is encrypted");
    buf_free(&file);

    /* Data running into the central directory. */
    zip_write(&file, &empty, 1, &(zopts){0, 1, 0, 0});
    memcpy(file.p + file.n - 22 - 56 + 20, "\x40\x00\x00\x00\x40\x00\x00\x00", 8);
    expect_error(file.p, file.n, "its 64 bytes at offset 40 run past the start of the central directory");
    buf_free(&file);

    /* A comment after the end record is allowed. */
    zip_write(&file, &empty, 1, &torch_like);
    file.p[file.n - 2] = 5;
    buf_put(&file, "hello", 5);
    if (read_file_bytes(file.p, file.n, &t, &err) != 0) fail_msg("%s", err.msg);
    bc__table_free(&t);
    buf_free(&file);
}

/* torch >= 2.1 writes <prefix>/byteorder. */
static void test_byteorder(void **state) {
    (void)state;
    buf file = {0};
    zentry little[2] = {{"archive/byteorder", "little", 6, 0}, {"archive/data.pkl", "\x80\x02}.", 4, 0}};
    zip_write(&file, little, 2, &torch_like);
    bc__tensor_table t;
    bc__err err;
    if (read_file_bytes(file.p, file.n, &t, &err) != 0) fail_msg("%s", err.msg);
    bc__table_free(&t);
    buf_free(&file);

    zentry big[2] = {{"archive/byteorder", "big", 3, 0}, {"archive/data.pkl", "\x80\x02}.", 4, 0}};
    zip_write(&file, big, 2, &torch_like);
    expect_error(file.p, file.n, "'archive/byteorder' says the storages are 'big'-endian");
    buf_free(&file);
}

/* ------------------------------------------------------------------------ */
/* Real torch files                                                         */
/* ------------------------------------------------------------------------ */

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    buf b = {0};
    uint8_t chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) buf_put(&b, chunk, got);
    fclose(f);
    *n = b.n;
    return b.p ? b.p : calloc(1, 1);
}

/* The manifest, written by tests/python/torch_save_check.py, has lines
 *   ok FILE N_TENSORS             FILE must read, giving N tensors in this order:
 *   t NAME DTYPE N_DIMS D0 .. RAW   one tensor; RAW holds its expected bytes ("-": unchecked)
 *   err FILE TEXT...              FILE must fail with TEXT in the message
 * with paths relative to the manifest's directory. */
static void test_real_torch_files(void **state) {
    (void)state;
    if (manifest_dir == NULL) skip();
    char path[4096], line[4096];
    snprintf(path, sizeof path, "%s/manifest.txt", manifest_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) fail_msg("cannot open %s", path);

    bc__tensor_table t = {0};
    bc__err err;
    int have_table = 0;
    size_t next = 0, expected_n = 0, n_files = 0, n_tensors = 0;
    char file_name[1024] = "";
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *save = NULL, *kind = strtok_r(line, " ", &save);
        if (kind == NULL || kind[0] == '#') continue;
        if (strcmp(kind, "ok") == 0 || strcmp(kind, "err") == 0) {
            if (have_table) {
                assert_int_equal(next, expected_n);
                bc__table_free(&t);
                have_table = 0;
            }
            char *name = strtok_r(NULL, " ", &save);
            assert_non_null(name);
            snprintf(file_name, sizeof file_name, "%s", name);
            snprintf(path, sizeof path, "%s/%s", manifest_dir, name);
            memset(&t, 0, sizeof t);
            memset(&err, 0, sizeof err);
            int rc = bc__torch_read(&t, path, &err);
            n_files++;
            if (strcmp(kind, "ok") == 0) {
                if (rc != 0) fail_msg("%s", err.msg);
                expected_n = strtoull(strtok_r(NULL, " ", &save), NULL, 10);
                assert_int_equal(t.n_tensors, expected_n);
                next = 0;
                have_table = 1;
            } else {
                const char *text = save;
                bc__table_free(&t);
                if (rc == 0) fail_msg("%s: expected an error with \"%s\", the read succeeded", path, text);
                if (strstr(err.msg, text) == NULL) fail_msg("message \"%s\" lacks \"%s\"", err.msg, text);
                assert_memory_equal(err.msg, path, strlen(path));
            }
        } else if (strcmp(kind, "t") == 0) {
            assert_true(have_table);
            const char *name = strtok_r(NULL, " ", &save);
            const char *dtype = strtok_r(NULL, " ", &save);
            int n_dims = atoi(strtok_r(NULL, " ", &save));
            assert_true(next < t.n_tensors);
            const bc__tensor *x = &t.tensors[next++];
            if (strcmp(x->name, name) != 0)
                fail_msg("%s: tensor %zu is '%s', expected '%s'", file_name, next - 1, x->name, name);
            assert_string_equal(bc_dtype_name(x->dtype), dtype);
            assert_int_equal(x->n_dims, n_dims);
            for (int i = 0; i < n_dims; i++)
                assert_int_equal(x->shape[i], strtoll(strtok_r(NULL, " ", &save), NULL, 10));
            const char *raw_name = strtok_r(NULL, " ", &save);
            assert_non_null(raw_name);
            n_tensors++;
            if (strcmp(raw_name, "-") == 0) continue; /* too large to keep a copy: shape and dtype only */
            snprintf(path, sizeof path, "%s/%s", manifest_dir, raw_name);
            size_t n = 0;
            uint8_t *raw = slurp(path, &n);
            if (raw == NULL) fail_msg("cannot read %s", path);
            assert_int_equal(x->n_bytes, n);
            if (n > 0 && memcmp(x->data, raw, n) != 0)
                fail_msg("%s: tensor '%s' differs from torch's bytes", file_name, name);
            free(raw);
        } else {
            fail_msg("bad manifest line starting with '%s'", kind);
        }
    }
    fclose(f);
    if (have_table) {
        assert_int_equal(next, expected_n);
        bc__table_free(&t);
    }
    assert_true(n_files > 0);
    printf("[          ] %zu torch files, %zu tensors checked\n", n_files, n_tensors);
}

int main(int argc, char **argv) {
    manifest_dir = getenv("BC_TORCH_FILES_DIR");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--manifest") == 0 && i + 1 < argc) {
            manifest_dir = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--manifest DIR]\n", argv[0]);
            return 2;
        }
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordered_dict_protocol2),
        cmocka_unit_test(test_plain_dict_protocol2),
        cmocka_unit_test(test_protocol4),
        cmocka_unit_test(test_zip64),
        cmocka_unit_test(test_plain_zip),
        cmocka_unit_test(test_long_memo),
        cmocka_unit_test(test_constants_in_metadata),
        cmocka_unit_test(test_two_files_one_table),
        cmocka_unit_test(test_forbidden_global),
        cmocka_unit_test(test_unknown_opcode),
        cmocka_unit_test(test_compressed_entry),
        cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_truncated_pickle),
        cmocka_unit_test(test_flipped_bytes),
        cmocka_unit_test(test_missing_storage),
        cmocka_unit_test(test_storage_too_short),
        cmocka_unit_test(test_non_contiguous),
        cmocka_unit_test(test_tensor_outside_storage),
        cmocka_unit_test(test_unsupported_dtype),
        cmocka_unit_test(test_memo_errors),
        cmocka_unit_test(test_stack_errors),
        cmocka_unit_test(test_length_errors),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_archive_errors),
        cmocka_unit_test(test_byteorder),
        cmocka_unit_test(test_real_torch_files),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

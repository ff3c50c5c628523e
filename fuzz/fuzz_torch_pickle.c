/*
 * fuzz_torch_pickle.c - libFuzzer target for the restricted pickle reader:
 * the input is data.pkl. The target stores it in a torch.save-shaped zip
 * beside a byteorder record and two storages ("0": 256 bytes, "1": 64), so
 * that persistent loads of those keys resolve and the tensors built from
 * them are checked against the file.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_torch_pickle CORPUS_DIR fuzz/seeds/fuzz_torch_pickle
 */
#include "fuzz_checks.h"
#include "fuzz_files.h"
#include "formats/torch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct zip_out {
    uint8_t *buf;
    size_t len, cap;
    uint8_t central[1024];
    size_t central_len;
    uint16_t n_entries;
} zip_out;

static void put(zip_out *z, const void *p, size_t n) {
    if (z->len + n > z->cap) abort(); /* sized by the caller */
    memcpy(z->buf + z->len, p, n);
    z->len += n;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* One stored entry: local header + data, and its central-directory record. */
static void add_entry(zip_out *z, const char *name, const void *data, size_t size) {
    size_t name_len = strlen(name);
    uint8_t h[30] = {0}, c[46] = {0};
    put_le(h, 0x04034b50, 4);
    put_le(h + 4, 20, 2);
    put_le(h + 18, size, 4);
    put_le(h + 22, size, 4);
    put_le(h + 26, name_len, 2);
    put_le(c, 0x02014b50, 4);
    put_le(c + 4, 20, 2);
    put_le(c + 6, 20, 2);
    put_le(c + 20, size, 4);
    put_le(c + 24, size, 4);
    put_le(c + 28, name_len, 2);
    put_le(c + 42, z->len, 4);
    put(z, h, sizeof h);
    put(z, name, name_len);
    put(z, data, size);
    if (z->central_len + sizeof c + name_len > sizeof z->central) abort();
    memcpy(z->central + z->central_len, c, sizeof c);
    memcpy(z->central + z->central_len + sizeof c, name, name_len);
    z->central_len += sizeof c + name_len;
    z->n_entries++;
}

static void finish(zip_out *z) {
    uint8_t e[22] = {0};
    size_t cd_offset = z->len;
    put(z, z->central, z->central_len);
    put_le(e, 0x06054b50, 4);
    put_le(e + 8, z->n_entries, 2);
    put_le(e + 10, z->n_entries, 2);
    put_le(e + 12, z->central_len, 4);
    put_le(e + 16, cd_offset, 4);
    put(z, e, sizeof e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    static uint8_t storage[256];
    for (size_t i = 0; i < sizeof storage; i++) storage[i] = (uint8_t)(i * 37);
    zip_out z = {0};
    z.cap = size + sizeof storage + 64 + 1024 + 2048;
    if ((z.buf = malloc(z.cap)) == NULL) return 0;
    add_entry(&z, "archive/data.pkl", data, size);
    add_entry(&z, "archive/byteorder", "little", 6);
    add_entry(&z, "archive/data/0", storage, sizeof storage);
    add_entry(&z, "archive/data/1", storage, 64);
    finish(&z);

    char path[128];
    fuzz_path(path, sizeof path, "pytorch_model.bin");
    if (fuzz_write(path, z.buf, z.len) == 0) {
        bc__tensor_table t = {0};
        bc__err err = {BC_STATUS_OK, ""};
        if (bc__torch_read(&t, path, &err) != 0 && err.msg[0] == '\0') abort();
        fuzz_check_table(&t);
        bc__table_free(&t);
        unlink(path);
    }
    free(z.buf);
    return 0;
}

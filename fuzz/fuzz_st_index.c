/*
 * fuzz_st_index.c - libFuzzer target for sharded checkpoints' index files.
 * The first byte selects the index the rest of the input becomes: even,
 * model.safetensors.index.json; odd, pytorch_model.bin.index.json. The
 * directory also holds two valid shards, so that an index naming them is
 * read to the end: model-00001-of-00001.safetensors (tensors "a" and "b")
 * and pytorch_model-00001-of-00001.bin (tensor "x", a copy of the
 * torch.save-written fuzz/seeds/fuzz_torch_zip/one.bin).
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_st_index CORPUS_DIR fuzz/seeds/fuzz_st_index
 */
#include "fuzz_checks.h"
#include "fuzz_files.h"
#include "formats/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char shard_path[128], torch_shard_path[128];

static void remove_shards(void) {
    unlink(shard_path);
    unlink(torch_shard_path);
}

static void write_torch_shard(void) {
    static uint8_t buf[4096];
    FILE *f = fopen(BC_SOURCE_DIR "/fuzz/seeds/fuzz_torch_zip/one.bin", "rb");
    if (f == NULL) abort();
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    fuzz_path(torch_shard_path, sizeof torch_shard_path, "pytorch_model-00001-of-00001.bin");
    if (n == 0 || n == sizeof buf || fuzz_write(torch_shard_path, buf, n) != 0) abort();
}

/* The shards, written once per process. */
static void write_shards(void) {
    static const char header[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                 "\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}";
    uint8_t file[8 + sizeof header - 1 + 16] = {0};
    uint64_t n = sizeof header - 1;
    memcpy(file, &n, 8);
    memcpy(file + 8, header, n);
    fuzz_path(shard_path, sizeof shard_path, "model-00001-of-00001.safetensors");
    if (fuzz_write(shard_path, file, sizeof file) != 0) abort();
    write_torch_shard();
    atexit(remove_shards);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (shard_path[0] == '\0') write_shards();
    char path[128];
    fuzz_path(path, sizeof path, data[0] % 2 ? "pytorch_model.bin.index.json" : "model.safetensors.index.json");
    if (fuzz_write(path, data + 1, size - 1) == 0) {
        bc__tensor_table t = {0};
        bc__err err = {BC_STATUS_OK, ""};
        bc_file_format format;
        int n_files = 0;
        if (bc__checkpoint_read(&t, fuzz_dir(), &format, &n_files, &err) != 0 && err.msg[0] == '\0') abort();
        fuzz_check_table(&t);
        bc__table_free(&t);
    }
    unlink(path);
    return 0;
}

/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader: the
 * input is the file (u64 header size, JSON header, tensor data). Whatever
 * it reads must lie inside the file; every refusal must explain itself.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_safetensors CORPUS_DIR fuzz/seeds/fuzz_safetensors
 */
#include "fuzz_checks.h"
#include "fuzz_files.h"
#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[128];
    fuzz_path(path, sizeof path, "model.safetensors");
    if (fuzz_write(path, data, size) != 0) return 0;
    bc__tensor_table t = {0};
    bc__err err = {BC_STATUS_OK, ""};
    if (bc__safetensors_read(&t, path, &err) != 0 && err.msg[0] == '\0') abort();
    fuzz_check_table(&t);
    bc__table_free(&t);
    unlink(path);
    return 0;
}

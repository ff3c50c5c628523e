/*
 * fuzz_torch_zip.c - libFuzzer target for the PyTorch checkpoint reader
 * through its zip layer: the input is the whole pytorch_model.bin (central
 * directory, local headers, data.pkl, storages). The archive is also listed
 * on its own, each entry's data located, and every tensor read must lie
 * inside the file.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_torch_zip CORPUS_DIR fuzz/seeds/fuzz_torch_zip
 */
#include "fuzz_checks.h"
#include "fuzz_files.h"
#include "formats/torch.h"
#include "formats/torch_zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[128];
    fuzz_path(path, sizeof path, "pytorch_model.bin");
    if (fuzz_write(path, data, size) != 0) return 0;

    /* The zip layer alone: every entry it lists either locates inside the file or is refused. */
    bc__file *file;
    bc__err err = {BC_STATUS_OK, ""};
    if (bc__file_map(path, &file, &err) == 0) {
        bc__zip zip;
        if (bc__zip_open(&zip, file, &err) == 0) {
            for (size_t i = 0; i < zip.n_entries; i++) {
                const bc__zip_entry *e = &zip.entries[i];
                if (bc__zip_find(&zip, e->name, e->name_len) != e) abort(); /* names are unique */
                bc__err entry_err = {BC_STATUS_OK, ""};
                uint64_t offset;
                if (bc__zip_entry_data(&zip, e, &offset, &entry_err) == 0) {
                    if (offset > file->size || e->size > file->size - offset) abort();
                } else if (entry_err.msg[0] == '\0') {
                    abort();
                }
            }
            bc__zip_close(&zip);
        } else if (err.msg[0] == '\0') {
            abort();
        }
        bc__file_unmap(file);
    }

    /* The whole reader: zip, data.pkl, tensors. */
    bc__tensor_table t = {0};
    bc__err read_err = {BC_STATUS_OK, ""};
    if (bc__torch_read(&t, path, &read_err) != 0 && read_err.msg[0] == '\0') abort();
    fuzz_check_table(&t);
    bc__table_free(&t);
    unlink(path);
    return 0;
}

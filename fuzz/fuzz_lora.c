/*
 * fuzz_lora.c - libFuzzer target for the LoRA adapter reader (model/lora.c):
 * byte 0 picks the weights file (bit 0: adapter_model.bin, else
 * adapter_model.safetensors), bytes 1-2 are the length L of
 * adapter_config.json (little-endian), the next L bytes are that file and
 * the rest the weights file. The adapter is loaded for tests/data/tiny.gguf
 * (n_embd 8, n_ff 16, one layer): a refusal must explain itself; an adapter
 * that loads must describe itself sanely and run through a decode of two
 * tokens, alone and beside the base.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_lora CORPUS_DIR fuzz/seeds/fuzz_lora
 */
#include "fuzz_files.h"
#include "baichuan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bc_model *tiny_model(void) {
    static bc_model *model;
    if (model == NULL) {
        char err[1024];
        if (bc_model_load(BC_SOURCE_DIR "/tests/data/tiny.gguf", bc_model_default_params(), &model, err, sizeof err) !=
            BC_STATUS_OK) {
            fprintf(stderr, "fuzz_lora: %s\n", err);
            abort();
        }
    }
    return model;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    const size_t n_config = (size_t)data[1] | (size_t)data[2] << 8;
    if (n_config > size - 3) return 0;
    const bool bin = data[0] & 1;
    char config[128], weights[128], other[128];
    fuzz_path(config, sizeof config, "adapter_config.json");
    fuzz_path(weights, sizeof weights, bin ? "adapter_model.bin" : "adapter_model.safetensors");
    fuzz_path(other, sizeof other, bin ? "adapter_model.safetensors" : "adapter_model.bin");
    unlink(other);
    if (fuzz_write(config, data + 3, n_config) != 0 || fuzz_write(weights, data + 3 + n_config, size - 3 - n_config))
        return 0;
    bc_model *model = tiny_model();
    bc_lora *lora = NULL;
    char err[1024] = "";
    bc_status st = bc_lora_load(model, fuzz_dir(), 1.0f, &lora, err, sizeof err);
    if (st != BC_STATUS_OK) {
        if (err[0] == '\0' || strchr(err, '\n') != NULL || lora != NULL) abort();
    } else {
        bc_lora_info info;
        bc_lora_get_info(lora, &info);
        if (info.rank < 1 || info.n_matrices < 1 || info.modules == 0 || info.modules >= 32 ||
            (info.dtype != BC_DTYPE_F32 && info.dtype != BC_DTYPE_F16 && info.dtype != BC_DTYPE_BF16) ||
            info.bytes == 0)
            abort();
        bc_context_params p = bc_context_default_params();
        p.n_ctx = 4;
        p.n_seq = 2;
        p.n_threads = 1;
        bc_context *ctx = NULL;
        if (bc_context_init(model, p, &ctx, err, sizeof err) != BC_STATUS_OK) abort();
        const bc_lora *set[1] = {lora};
        if (bc_context_seq_set_loras(ctx, 0, set, 1) != BC_STATUS_OK) abort();
        bc_batch_entry b[4] = {{0, 0, 1, false}, {1, 0, 1, false}, {0, 1, 2, true}, {1, 1, 2, true}};
        if (bc_context_decode(ctx, b, 4) != BC_STATUS_OK) abort();
        bc_context_free(ctx);
        bc_lora_free(lora);
    }
    unlink(config);
    unlink(weights);
    return 0;
}

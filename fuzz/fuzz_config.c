/*
 * fuzz_config.c - libFuzzer target for the model directory's JSON files.
 * The first byte selects the file the rest of the input becomes:
 *   0  config.json
 *   1  generation_config.json  (beside a valid config.json)
 *   2  tokenizer_config.json   (beside a valid config.json)
 * and both readers run: the model's (bc__config_read) and the tokenizer's
 * (bc__tok_dir_config_read). Every refusal must explain itself.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_config CORPUS_DIR fuzz/seeds/fuzz_config
 */
#include "fuzz_files.h"
#include "formats/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char valid_config[] =
    "{\"model_type\": \"baichuan\", \"hidden_act\": \"silu\", \"vocab_size\": 64, \"hidden_size\": 16,"
    " \"intermediate_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
    " \"max_position_embeddings\": 128, \"rms_norm_eps\": 1e-6}";

static const char *const names[3] = {"config.json", "generation_config.json", "tokenizer_config.json"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int which = data[0] % 3;
    char paths[3][128];
    for (int i = 0; i < 3; i++) fuzz_path(paths[i], sizeof paths[i], names[i]);
    int ok = which == 0 ? fuzz_write(paths[0], data + 1, size - 1) == 0
                        : fuzz_write(paths[0], valid_config, sizeof valid_config - 1) == 0 &&
                              fuzz_write(paths[which], data + 1, size - 1) == 0;
    if (ok) {
        bc__hparams hp;
        bc__gen_config gen;
        bc__tok_config tok;
        bc__err err = {BC_STATUS_OK, ""};
        if (bc__config_read(fuzz_dir(), bc_model_default_params(), &hp, &gen, &tok, &err) != 0 && err.msg[0] == '\0')
            abort();
        bc__err tok_err = {BC_STATUS_OK, ""};
        int n_ctx_train = 0;
        bc__gen_config_defaults(&gen);
        memset(&tok, 0, sizeof tok);
        if (bc__tok_dir_config_read(fuzz_dir(), 64, &tok, &gen, &n_ctx_train, &tok_err) != 0 && tok_err.msg[0] == '\0')
            abort();
    }
    for (int i = 0; i < 3; i++) unlink(paths[i]);
    return 0;
}

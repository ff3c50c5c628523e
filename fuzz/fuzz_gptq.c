/*
 * fuzz_gptq.c - libFuzzer target for the GPTQ converter (gptq.c): the input
 * is one byte choosing the quantize config (group size 32, 64, 128 or -1;
 * bit 2: desc_act) then a safetensors file holding "l.qweight", "l.qzeros",
 * "l.scales", "l.g_idx" (and maybe "l.bias"). The matrix "l.weight" is
 * bound at the shape qweight implies (at most 2^20 weights), or 8 x 32.
 * A refusal must explain itself; a conversion must give blocks and a column
 * order that every row can be read through.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_gptq CORPUS_DIR fuzz/seeds/fuzz_gptq
 */
#include "fuzz_checks.h"
#include "fuzz_files.h"
#include "formats/checkpoint.h"
#include "kernels/kernels.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int group_sizes[4] = {32, 64, 128, -1};
    bc__f16_init();
    char path[128];
    fuzz_path(path, sizeof path, "model.safetensors");
    if (fuzz_write(path, data + 1, size - 1) != 0) return 0;
    bc_model *m = calloc(1, sizeof *m);
    if (m == NULL) abort();
    m->path = path;
    m->hp.quant.method = BC__QUANT_GPTQ;
    m->hp.quant.source = "quantize_config.json";
    m->hp.quant.gptq_bits = 4;
    m->hp.quant.gptq_group_size = group_sizes[data[0] & 3];
    m->hp.quant.gptq_desc_act = (data[0] & 4) != 0;
    bc__err err = {BC_STATUS_OK, ""};
    if (bc__safetensors_read(&m->table, path, &err) == 0) {
        fuzz_check_table(&m->table);
        int64_t rows = 8, cols = 32;
        const bc__tensor *q = bc__table_find(&m->table, "l.qweight");
        if (q != NULL && q->n_dims == 2 && q->shape[0] > 0 && q->shape[1] > 0 && q->shape[0] <= 4096 &&
            q->shape[1] <= 4096 && q->shape[0] * 8 * q->shape[1] <= (1 << 20)) {
            rows = q->shape[1];
            cols = q->shape[0] * 8;
        }
        bool *used = calloc(m->table.n_tensors + 1, sizeof *used);
        if (used == NULL) abort();
        bc__weight w = {0};
        int rc = bc__gptq_bind(m, used, "l.weight", rows, cols, &w, &err);
        if (rc < 0 && err.msg[0] == '\0') abort();
        if (rc == 1) {
            if (w.data == NULL || w.owned != w.data || w.rows != rows || w.cols != cols) abort();
            float *row = malloc((size_t)cols * sizeof(float));
            if (row == NULL) abort();
            for (int64_t r = 0; r < rows; r++) bc__weight_row_f32(&w, r, row);
            free(row);
        }
        free(w.owned);
        free(w.perm);
        free(used);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    bc__table_free(&m->table);
    free(m);
    unlink(path);
    return 0;
}

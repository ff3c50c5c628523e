/*
 * fuzz_gptq.c - libFuzzer target for the GPTQ converter (gptq.c): the input
 * is one byte choosing the quantize config (group size 32, 64, 128 or -1;
 * bit 2: desc_act) then a safetensors file holding "l.qweight", "l.qzeros",
 * "l.scales", "l.g_idx" (and maybe "l.bias"). The matrix "l.weight" is
 * converted at the shape qweight implies (at most 2^20 weights), or 8 x 32.
 * A refusal must explain itself; a conversion must give blocks and a column
 * order that every row can be read through.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_gptq CORPUS_DIR fuzz/seeds/fuzz_gptq
 */
#include "fuzz_checks.h"
#include "fuzz_files.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "quant/gptq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int group_sizes[4] = {32, 64, 128, -1};
    bc__f16_init();
    char path[128];
    fuzz_path(path, sizeof path, "model.safetensors");
    if (fuzz_write(path, data + 1, size - 1) != 0) return 0;
    bc__tensor_table table;
    memset(&table, 0, sizeof table);
    bc__quant_config qc;
    memset(&qc, 0, sizeof qc);
    qc.method = BC__QUANT_GPTQ;
    qc.source = "quantize_config.json";
    qc.gptq_bits = 4;
    qc.gptq_group_size = group_sizes[data[0] & 3];
    qc.gptq_desc_act = (data[0] & 4) != 0;
    bc__err err = {BC_STATUS_OK, ""};
    if (bc__safetensors_read(&table, path, &err) == 0) {
        fuzz_check_table(&table);
        int64_t rows = 8, cols = 32;
        const bc__tensor *q = bc__table_find(&table, "l.qweight");
        if (q != NULL && q->n_dims == 2 && q->shape[0] > 0 && q->shape[1] > 0 && q->shape[0] <= 4096 &&
            q->shape[1] <= 4096 && q->shape[0] * 8 * q->shape[1] <= (1 << 20)) {
            rows = q->shape[1];
            cols = q->shape[0] * 8;
        }
        bc__converted c;
        int rc = bc__gptq_convert(&table, &qc, path, "l.weight", rows, cols, NULL, &c, &err);
        if (rc < 0 && err.msg[0] == '\0') abort();
        if (rc == 1) {
            if (c.blocks == NULL || c.dtype != BC_DTYPE_Q4_GPTQ || c.n_params != rows * cols || c.n_used < 3) abort();
            for (int i = 0; i < c.n_used; i++)
                if (c.used[i] < table.tensors || c.used[i] >= table.tensors + table.n_tensors) abort();
            bc__weight w = {0};
            w.data = c.blocks;
            w.dtype = c.dtype;
            w.rows = rows;
            w.cols = cols;
            w.perm = c.perm;
            float *row = malloc((size_t)cols * sizeof(float));
            if (row == NULL) abort();
            for (int64_t r = 0; r < rows; r++) bc__weight_row_f32(&w, r, row);
            free(row);
        }
        free(c.blocks);
        free(c.perm);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    bc__table_free(&table);
    unlink(path);
    return 0;
}

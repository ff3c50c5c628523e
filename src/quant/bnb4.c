/*
 * bnb4.c - bitsandbytes 4-bit checkpoints (Baichuan2-7B/13B-Chat-4bits),
 * converted at load into nf4 / fp4 blocks.
 *
 * The layout (Baichuan2's quantizer.py: init_model_weight_int4 and
 * Params4bitCuda; bitsandbytes 0.41 functional.py: quantize_4bit,
 * dequantize_4bit, quantize_blockwise, dequantize_blockwise). The linear
 * weights W_pack, o_proj, gate_proj, up_proj and down_proj of each layer are
 * stored as two state dict entries instead of "<name>":
 *
 *   "<name>.data"         uint8, numel / 2 bytes (shape [numel / 2, 1]): the
 *                         weight flattened row-major, two 4-bit codes per
 *                         byte, element 2i in the high nibble, 2i+1 in the low
 *   "<name>.quant_state"  [absmax, shape, dtype, blocksize, compressed_stats,
 *                         quant_type, code] (torch_pickle.c reads the list
 *                         into bc__bnb_state and "<name>.quant_state.*")
 *
 * Dequantization (dequantize_4bit and its CUDA kernel), for element e of the
 * flattened weight:
 *   a = absmax[e / blocksize]               without compressed statistics,
 *       float32
 *   a = code2[absmax[e / blocksize]] * absmax2[(e / blocksize) / blocksize2]
 *       + offset                            with them (double quantization):
 *       absmax is uint8, dequantize_blockwise gives the float32 product, then
 *       "absmax += offset", two float32 roundings
 *   w = code[q_e] * a                       one float32 rounding, code the
 *       16-value table of the quant type (quants.c, bc__nf4_code, bc__fp4_code)
 * The kernel then rounds w to the compute dtype (f16/bf16); we keep the f32
 * product, which is closer to the definition.
 *
 * Each of our nf4/fp4 blocks holds 64 weights of one row with their f32 a,
 * so a row's weights must be whole 64-blocks (true of every official model:
 * 4096, 5120, 11008 and 13696 columns) and blocksize a multiple of 64 (bnb
 * uses 64; larger ones give several of our blocks the same a).
 */
#include "quant/bnb4.h"

#include "base/threadpool.h"
#include "quant/blocks.h"
#include "quant/quants.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An f32 tensor's value i (the table may hold it unaligned in a copy-free
 * mapping only if aligned; bc__table_add copied it otherwise). */
static float f32_at(const bc__tensor *x, uint64_t i) { return ((const float *)x->data)[i]; }

static uint64_t numel(const bc__tensor *x) {
    uint64_t n = 1;
    for (int i = 0; i < x->n_dims; i++) n *= (uint64_t)x->shape[i];
    return n;
}

/* The state's tensor "<weight>.quant_state<suffix>": f32 (or the foreign u8
 * with want_u8) of n elements; NULL with err set otherwise. */
static const bc__tensor *state_tensor(const bc__tensor_table *t, const bc__bnb_state *st, const char *suffix,
                                      bool want_u8, uint64_t n, bc__err *err) {
    char name[512];
    snprintf(name, sizeof name, "%s.quant_state%s", st->weight, suffix);
    const bc__tensor *x = bc__table_find(t, name);
    if (x == NULL) {
        bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: '%s' has no %s", st->file->path, name, suffix + 1);
        return NULL;
    }
    const char *dtype = x->foreign_dtype ? x->foreign_dtype : bc_dtype_name(x->dtype);
    bool ok = want_u8 ? x->foreign_dtype != NULL && strcmp(x->foreign_dtype, "U8") == 0 : x->dtype == BC_DTYPE_F32;
    if (!ok) {
        bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: '%s' is %s, expected %s", st->file->path, name, dtype,
                   want_u8 ? "uint8" : "float32");
        return NULL;
    }
    if (numel(x) != n) {
        bc__errorf(err, BC_STATUS_ERROR_MODEL,
                   "%s: '%s' holds %llu values, but the weight's shape and block size need %llu", st->file->path, name,
                   (unsigned long long)numel(x), (unsigned long long)n);
        return NULL;
    }
    return x;
}

/* Adds x (if any) to the table entries out was made from. */
static void add_used(bc__converted *out, const bc__tensor *x) {
    if (x != NULL) out->used[out->n_used++] = x;
}

/* The blocks of one matrix, converted by one thread per CPU taking runs of
 * 4096 blocks. */
typedef struct convert_job {
    const uint8_t *src; /* the codes as stored */
    const float *a;     /* absmax per bitsandbytes block */
    bc__block_nf4 *blocks;
    uint64_t n_blocks, blocksize;
    atomic_uint_fast64_t next;
} convert_job;

/* Element 2i is the high nibble of stored byte i, 2i+1 the low one; our
 * block puts weight slot(p) in the low nibble of byte p, 32 + slot(p) in the
 * high one: byte p takes nibble k(p) of stored bytes i(p) and 16 + i(p). */
static void *convert_thread(void *p) {
    convert_job *job = p;
    uint8_t at[32], shift[32];
    for (int b = 0; b < 32; b++) {
        const int s = bc__nf4_slot(b);
        at[b] = (uint8_t)(s >> 1);
        shift[b] = (uint8_t)(s & 1 ? 0 : 4);
    }
    const uint64_t run = 4096;
    for (uint64_t b0; (b0 = atomic_fetch_add(&job->next, run)) < job->n_blocks;) {
        const uint64_t end = b0 + run < job->n_blocks ? b0 + run : job->n_blocks;
        for (uint64_t b = b0; b < end; b++) {
            const uint8_t *in = job->src + b * 32;
            bc__block_nf4 *out = &job->blocks[b];
            out->d = job->a[b * 64 / job->blocksize];
            for (int i = 0; i < 32; i++)
                out->qs[i] = (uint8_t)(((in[at[i]] >> shift[i]) & 0x0F) | ((in[16 + at[i]] >> shift[i]) & 0x0F) << 4);
        }
    }
    return NULL;
}

int bc__bnb4_convert(const bc__tensor_table *t, const bc__quant_config *qc, const char *name, int64_t rows,
                     int64_t cols, bc__convert_buf *buf, bc__converted *out, bc__err *err) {
    memset(out, 0, sizeof *out);
    const bc__bnb_state *st = bc__table_find_bnb(t, name);
    char data_name[512];
    snprintf(data_name, sizeof data_name, "%s.data", name);
    const bc__tensor *data = bc__table_find(t, data_name);
    if (st == NULL && data == NULL) return 0;
    const char *path = st ? st->file->path : data->file->path;
    if (st == NULL || data == NULL)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: '%s.%s' is there but '%s.%s' is missing", path, name,
                          st ? "quant_state" : "data", name, st ? "data" : "quant_state");

    /* The quant type, against config.json's. */
    bc_dtype dtype = strcmp(st->quant_type, "nf4") == 0   ? BC_DTYPE_NF4
                     : strcmp(st->quant_type, "fp4") == 0 ? BC_DTYPE_FP4
                                                          : BC_DTYPE_COUNT;
    if (dtype == BC_DTYPE_COUNT)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: '%s.quant_state' has quant type '%s', not nf4 or fp4", path,
                          name, st->quant_type);
    const char *cfg_type = qc->bnb_quant_type;
    if (cfg_type[0] != '\0' && strcmp(cfg_type, st->quant_type) != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: '%s.quant_state' has quant type %s, but config.json's quantization_config says %s", path,
                          name, st->quant_type, cfg_type);

    /* Shapes and sizes. */
    if (st->n_dims != 2 || st->shape[0] != rows || st->shape[1] != cols)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: '%s.quant_state' gives the weight %d dimensions [%lld, %lld], expected [%lld, %lld]",
                          path, name, st->n_dims, (long long)st->shape[0],
                          (long long)(st->n_dims > 1 ? st->shape[1] : 0), (long long)rows, (long long)cols);
    if (cols % 64 != 0)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: '%s' has rows of %lld weights, not whole blocks of 64 (every official model's are)",
                          path, name, (long long)cols);
    if (st->blocksize <= 0 || st->blocksize % 64 != 0 || st->blocksize > (1 << 20))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: '%s.quant_state' has block size %lld; a multiple of 64 (bitsandbytes uses 64) is "
                          "needed",
                          path, name, (long long)st->blocksize);
    const uint64_t n = (uint64_t)rows * (uint64_t)cols, n_abs = (n + (uint64_t)st->blocksize - 1) / st->blocksize;
    if (data->foreign_dtype == NULL || strcmp(data->foreign_dtype, "U8") != 0 || data->n_bytes != n / 2)
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s: '%s' must be uint8 with two 4-bit codes per byte: %llu bytes for [%lld, %lld], found "
                          "%llu bytes of %s",
                          path, data_name, (unsigned long long)(n / 2), (long long)rows, (long long)cols,
                          (unsigned long long)data->n_bytes,
                          data->foreign_dtype ? data->foreign_dtype : bc_dtype_name(data->dtype));
    const bc__tensor *absmax = state_tensor(t, st, ".absmax", st->nested, n_abs, err), *offset = NULL, *absmax2 = NULL,
                     *code2 = NULL;
    if (absmax == NULL) return -1;
    if (st->nested) {
        if (st->blocksize2 <= 0 || st->blocksize2 > (1 << 20))
            return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: '%s.quant_state' has nested block size %lld", path, name,
                              (long long)st->blocksize2);
        const uint64_t n_abs2 = (n_abs + (uint64_t)st->blocksize2 - 1) / (uint64_t)st->blocksize2;
        if ((offset = state_tensor(t, st, ".offset", false, 1, err)) == NULL ||
            (absmax2 = state_tensor(t, st, ".absmax2", false, n_abs2, err)) == NULL ||
            (code2 = state_tensor(t, st, ".code2", false, 256, err)) == NULL)
            return -1;
    }
    /* The code table, when the state carries one, must be the quant type's
     * (bitsandbytes' kernels use their own constants, not the tensor). */
    const float *table = bc__code4_table(dtype);
    char code_name[512];
    snprintf(code_name, sizeof code_name, "%s.quant_state.code", name);
    const bc__tensor *code = bc__table_find(t, code_name);
    if (code != NULL) {
        if (code->dtype != BC_DTYPE_F32 || numel(code) != 16)
            return bc__errorf(err, BC_STATUS_ERROR_MODEL, "%s: '%s' must be 16 float32 values, found %llu of %s", path,
                              code_name, (unsigned long long)numel(code),
                              code->foreign_dtype ? code->foreign_dtype : bc_dtype_name(code->dtype));
        for (int i = 0; i < 16; i++)
            if (!(fabsf(f32_at(code, (uint64_t)i) - table[i]) <= 1e-6f))
                return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                                  "%s: '%s' is not the %s table: entry %d is %.9g, expected %.9g", path, code_name,
                                  st->quant_type, i, (double)f32_at(code, (uint64_t)i), (double)table[i]);
    }

    /* The f32 absmax of each bitsandbytes block. */
    float *a = malloc((size_t)n_abs * sizeof *a);
    bc__block_nf4 *blocks = NULL;
    size_t bytes = (size_t)(n / 64) * sizeof *blocks;
    if (buf != NULL)
        blocks = bc__convert_buf_reserve(buf, bytes ? bytes : 64);
    else if (posix_memalign((void **)&blocks, 64, bytes ? bytes : 64) != 0)
        blocks = NULL;
    if (a == NULL || blocks == NULL) {
        free(a);
        if (buf == NULL) free(blocks);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: '%s': out of memory converting %llu weights", path, name,
                          (unsigned long long)n);
    }
    if (st->nested) {
        const uint8_t *q2 = absmax->data;
        const float off = f32_at(offset, 0);
        for (uint64_t i = 0; i < n_abs; i++) {
            float v = f32_at(code2, q2[i]) * f32_at(absmax2, i / (uint64_t)st->blocksize2);
            a[i] = v + off;
        }
    } else {
        for (uint64_t i = 0; i < n_abs; i++) a[i] = f32_at(absmax, i);
    }
    convert_job job = {data->data, a, blocks, n / 64, (uint64_t)st->blocksize, 0};
    bc__run_on_all_cpus(convert_thread, &job);
    free(a);

    out->blocks = blocks;
    out->dtype = dtype;
    out->name = data->name;
    add_used(out, data);
    add_used(out, absmax);
    add_used(out, offset);
    add_used(out, absmax2);
    add_used(out, code2);
    add_used(out, code);
    out->n_params = rows * cols;
    out->stored_bytes = data->n_bytes + absmax->n_bytes + (absmax2 ? absmax2->n_bytes + code2->n_bytes + 4 : 0);
    out->released_bytes = bc__tensor_release(data);
    out->converted_bytes = bytes;
    if (st->nested)
        snprintf(out->layout, sizeof out->layout,
                 "bitsandbytes %s, blocks of %lld, double quantization (8-bit absmax in blocks of %lld); "
                 "converted at load to %s blocks of 64",
                 st->quant_type, (long long)st->blocksize, (long long)st->blocksize2, bc_dtype_name(dtype));
    else
        snprintf(out->layout, sizeof out->layout,
                 "bitsandbytes %s, blocks of %lld, float32 absmax; converted at load to %s blocks of 64",
                 st->quant_type, (long long)st->blocksize, bc_dtype_name(dtype));
    return 1;
}

/*
 * gptq.h - GPTQ int4 checkpoints (AutoGPTQ layout): one linear layer's
 * qweight, qzeros, scales and g_idx converted into q4_gptq blocks (gptq.c
 * has the layout).
 */
#ifndef BC_GPTQ_H
#define BC_GPTQ_H

#include "formats/config.h"
#include "formats/tensor_table.h"
#include "quant/converted.h"

/* Converts matrix `name` ("<prefix>.weight", rows x cols) of table t, stored
 * as "<prefix>.qweight", ".qzeros", ".scales" and maybe ".g_idx" and an
 * all-zero ".bias", by qc's group size. Runs on all CPUs. Releases the
 * stored parts' pages once converted. path names the checkpoint in the
 * message for a missing part. The blocks go into buf when it is given
 * (out->blocks is then buf->p, the caller's), else into a new allocation
 * the caller owns; the caller owns out->perm. Returns 1 with *out filled, 0
 * when t holds none of qweight, qzeros and scales, -1 with err naming the
 * file and tensor. *out is zeroed first. */
BC__HIDDEN int bc__gptq_convert(const bc__tensor_table *t, const bc__quant_config *qc, const char *path,
                                const char *name, int64_t rows, int64_t cols, bc__convert_buf *buf, bc__converted *out,
                                bc__err *err);

#endif /* BC_GPTQ_H */

/*
 * bnb4.h - bitsandbytes 4-bit checkpoints (Baichuan2-*-Chat-4bits): one
 * matrix's "<name>.data" and "<name>.quant_state.*" converted into nf4 / fp4
 * blocks (bnb4.c has the layout).
 */
#ifndef BC_BNB4_H
#define BC_BNB4_H

#include "formats/config.h"
#include "formats/tensor_table.h"
#include "quant/converted.h"

/* Converts matrix `name` (rows, cols) of table t, stored as "<name>.data"
 * with its quant state, checking it against qc (bnb_quant_type) and the
 * shape. Runs on all CPUs. Releases the stored codes' pages once converted.
 * The blocks go into buf when it is given (out->blocks is then buf->p, the
 * caller's), else into a new allocation the caller owns. Returns 1 with
 * *out filled, 0 when t holds neither tensor of the matrix, -1 with err
 * naming the file and tensor. *out is zeroed first. */
BC__HIDDEN int bc__bnb4_convert(const bc__tensor_table *t, const bc__quant_config *qc, const char *name, int64_t rows,
                                int64_t cols, bc__convert_buf *buf, bc__converted *out, bc__err *err);

#endif /* BC_BNB4_H */

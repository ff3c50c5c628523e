/*
 * gguf_config.h - the configuration of a Baichuan GGUF file, from its
 * metadata.
 */
#ifndef BC_GGUF_CONFIG_H
#define BC_GGUF_CONFIG_H

#include "formats/config.h"
#include "formats/gguf.h"

/* Hyper-parameters and variant from a GGUF file's metadata:
 * baichuan.* keys, with our explicit baichuan.position_encoding and
 * baichuan.norm_head winning over llama.cpp's rules, and params over both. */
BC__HIDDEN int bc__gguf_config_read(const bc__gguf *g, const bc__tensor_table *t, bc_model_params params,
                                    bc__hparams *hp, bc__err *err);

#endif /* BC_GGUF_CONFIG_H */

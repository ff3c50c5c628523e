/*
 * hf_config.h - the configuration of a Hugging Face model directory:
 * config.json (hyper-parameters, variant, quantization_config), and the
 * optional generation_config.json, tokenizer_config.json and
 * quantize_config.json.
 */
#ifndef BC_HF_CONFIG_H
#define BC_HF_CONFIG_H

#include "formats/config.h"

/* Reads config.json, then the optional generation_config.json and
 * tokenizer_config.json, from dir. Applies the variant rules of DESIGN.md with
 * params' explicit settings winning. */
BC__HIDDEN int bc__config_read(const char *dir, bc_model_params params, bc__hparams *hp, bc__gen_config *gen,
                               bc__tok_config *tok, bc__err *err);

/* The defaults of an absent generation_config.json (the official Chat ones). */
BC__HIDDEN void bc__gen_config_defaults(bc__gen_config *gen);

/* Reads tokenizer_config.json, generation_config.json and config.json from
 * dir, each optional; ids are checked against n_vocab. */
BC__HIDDEN int bc__tok_dir_config_read(const char *dir, int n_vocab, bc__tok_config *tok, bc__gen_config *gen,
                                       int *n_ctx_train, bc__err *err);

#endif /* BC_HF_CONFIG_H */

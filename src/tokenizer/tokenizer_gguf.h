/*
 * tokenizer_gguf.h - a tokenizer's source in a GGUF file: the
 * tokenizer.ggml.* metadata (tokenizer_gguf.c).
 */
#ifndef BC_TOKENIZER_GGUF_H
#define BC_TOKENIZER_GGUF_H

#include "tokenizer/tokenizer.h"

/* Fills tok (zeroed by the caller) from the tokenizer.ggml.* metadata of the
 * GGUF file at path, bc__tokenizer_build()s it, then sets what a model
 * directory's JSON would (BOS/EOS, chat role ids, context) from the file's
 * keys. On failure the caller frees tok with bc_tokenizer_free. */
BC__HIDDEN int bc__tokenizer_from_gguf(bc_tokenizer *tok, const char *path, bc__err *err);

#endif /* BC_TOKENIZER_GGUF_H */

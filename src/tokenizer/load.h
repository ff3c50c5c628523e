/*
 * load.h - loading a tokenizer (load.c): bc_tokenizer_load (baichuan.h)
 * picks the source, and the tokenizer.model source is open to the fuzzer.
 */
#ifndef BC_TOKENIZER_LOAD_H
#define BC_TOKENIZER_LOAD_H

#include "tokenizer/tokenizer.h"

/* A tokenizer from the bytes of a tokenizer.model (copied); name is used
 * in messages. Directory settings take their defaults. For fuzzing. */
BC__HIDDEN int bc__tokenizer_from_bytes(const uint8_t *data, size_t size, const char *name, bc_tokenizer **out,
                                        bc__err *err);

#endif /* BC_TOKENIZER_LOAD_H */

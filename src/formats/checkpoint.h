/*
 * checkpoint.h - a Hugging Face checkpoint directory: which weight files it
 * holds (one file, or shards with their index), each read into a tensor
 * table by the reader of its container format (safetensors.h, torch.h).
 */
#ifndef BC_CHECKPOINT_H
#define BC_CHECKPOINT_H

#include "formats/tensor_table.h"

/* Reads the weights of the Hugging Face checkpoint in dir into t; sets the
 * container format and the number of weight files. */
BC__HIDDEN int bc__checkpoint_read(bc__tensor_table *t, const char *dir, bc_file_format *format, int *n_files,
                                   bc__err *err);

#endif /* BC_CHECKPOINT_H */

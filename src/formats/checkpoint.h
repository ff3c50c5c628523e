/*
 * checkpoint.h - the readers of Hugging Face checkpoints: a directory's
 * weight files (one file or shards with their index), each read into a
 * tensor table by the reader of its container format.
 */
#ifndef BC_CHECKPOINT_H
#define BC_CHECKPOINT_H

#include "formats/tensor_table.h"

/* Reads the weights of the Hugging Face checkpoint in dir into t; sets the
 * container format and the number of weight files. */
BC__HIDDEN int bc__checkpoint_read(bc__tensor_table *t, const char *dir, bc_file_format *format, int *n_files,
                                   bc__err *err);

/* safetensors: u64 header size, JSON header, raw little-endian data. */
BC__HIDDEN int bc__safetensors_read(bc__tensor_table *t, const char *path, bc__err *err);

/* PyTorch torch.save zip archive: data.pkl (a restricted pickle) + storages. */
BC__HIDDEN int bc__torch_read(bc__tensor_table *t, const char *path, bc__err *err);

#endif /* BC_CHECKPOINT_H */

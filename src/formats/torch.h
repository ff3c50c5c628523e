/*
 * torch.h - the reader of a PyTorch torch.save zip archive: data.pkl (a
 * restricted pickle, torch_pickle.h) and the storages it names.
 */
#ifndef BC_TORCH_H
#define BC_TORCH_H

#include "formats/tensor_table.h"

/* Maps the archive at path and adds the tensors of its state dict (and the
 * bitsandbytes 4-bit quant states) to t. Every check of the file runs before
 * anything is added; after a failure of the table itself the table keeps what
 * was added, so callers free the table after any error. */
BC__HIDDEN int bc__torch_read(bc__tensor_table *t, const char *path, bc__err *err);

#endif /* BC_TORCH_H */

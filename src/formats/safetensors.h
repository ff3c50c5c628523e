/*
 * safetensors.h - the reader of a safetensors file: u64 header size, JSON
 * header, raw little-endian data.
 */
#ifndef BC_SAFETENSORS_H
#define BC_SAFETENSORS_H

#include "formats/tensor_table.h"

/* Maps the file at path (the table owns the mapping from then on, also after
 * an error) and adds its tensors to t once the header has been checked: each
 * size against its shape and dtype, the byte ranges tiling the data. */
BC__HIDDEN int bc__safetensors_read(bc__tensor_table *t, const char *path, bc__err *err);

#endif /* BC_SAFETENSORS_H */

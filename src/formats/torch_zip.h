/*
 * torch_zip.h - the zip archive layer of the PyTorch checkpoint reader.
 *
 * torch.save (torch >= 1.6) writes a zip archive whose entries are stored,
 * never compressed, and aligned so that tensors can be used in place. This
 * reader lists the central directory of a mapped file and finds where each
 * entry's bytes lie; it never copies or inflates anything.
 *
 *   little-endian reads   bc__le16/32/64, shared with the pickle reader
 *   archive               bc__zip_open, bc__zip_close
 *   entries               bc__zip_find (by exact name), bc__zip_entry_data
 */
#ifndef BC_TORCH_ZIP_H
#define BC_TORCH_ZIP_H

#include "formats/tensor_table.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Little-endian reads from unaligned bytes                                 */
/* ------------------------------------------------------------------------ */

static inline uint16_t bc__le16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint32_t bc__le32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint64_t bc__le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Archive                                                                  */
/* ------------------------------------------------------------------------ */

/* Sanity bounds on what a central directory may declare. A checkpoint holds
 * one entry per storage plus a few records: a few hundred to a few thousand. */
#define BC__ZIP_MAX_ENTRIES (1u << 20)
#define BC__ZIP_MAX_NAME    4096u

typedef struct bc__zip_entry {
    const char *name;         /* Points into the mapping; not NUL-terminated. */
    uint32_t name_len;        /* Length of name in bytes, at most BC__ZIP_MAX_NAME. */
    uint16_t flags;           /* General-purpose bit flags from the central directory. */
    uint16_t method;          /* Compression method; only 0 (stored) can be read. */
    uint64_t compressed_size; /* Bytes the entry occupies in the archive (zip64-resolved). */
    uint64_t size;            /* Bytes of the entry once extracted (zip64-resolved). */
    uint64_t local_offset;    /* Absolute offset of the entry's local header. */
} bc__zip_entry;

typedef struct bc__zip {
    const bc__file *file;   /* The mapped archive; not owned. */
    bc__zip_entry *entries; /* Every central-directory entry, sorted by name; owned. */
    size_t n_entries;       /* Number of entries in the archive. */
    uint64_t cd_offset;     /* Offset of the central directory: all entry data lies before it. */
} bc__zip;

/* Reads the central directory of the archive mapped in `file` (which must
 * outlive `zip`). Handles zip64 end records and extra fields. Fails on a file
 * that is not a single-disk zip archive, or whose directory does not fit in
 * the file, or that names one entry twice. On failure `zip` holds nothing and
 * needs no bc__zip_close (calling it is harmless). */
BC__HIDDEN int bc__zip_open(bc__zip *zip, const bc__file *file, bc__err *err);
BC__HIDDEN void bc__zip_close(bc__zip *zip);

/* The entry called exactly name[0..name_len), or NULL. */
BC__HIDDEN const bc__zip_entry *bc__zip_find(const bc__zip *zip, const char *name, size_t name_len);

/* Finds the absolute file offset of an entry's first byte (its size is
 * entry->size), reading its local header. Fails if the entry is compressed
 * or encrypted, if its local header disagrees with the central directory, or
 * if its bytes do not lie inside the file before the central directory. */
BC__HIDDEN int bc__zip_entry_data(const bc__zip *zip, const bc__zip_entry *entry, uint64_t *offset, bc__err *err);

#endif /* BC_TORCH_ZIP_H */

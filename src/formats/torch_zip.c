/*
 * torch_zip.c - a zip central-directory reader over a mapped file.
 *
 * Only what torch.save writes is needed: one disk, stored entries, and zip64
 * records (torch always writes the zip64 end records; checkpoints over 4 GiB
 * also need zip64 extra fields for sizes and offsets). Every offset and size
 * read from the file is checked against the file before it is used.
 *
 * Layout of an archive, from the end (PKWARE APPNOTE 6.3, sections 4.3-4.5):
 *
 *   local header + name + extra, data        one per entry
 *   central directory                        one 46-byte header + name + extra + comment per entry
 *   zip64 end of central directory record    optional (56 bytes + extensible data)
 *   zip64 end of central directory locator   optional (20 bytes)
 *   end of central directory record          22 bytes + comment
 *
 *   locate the end records    find_end
 *   central directory         read_central_entry, read_zip64_extra
 *   lookup                    bc__zip_find
 *   entry data                bc__zip_entry_data
 */
#include "formats/torch_zip.h"

#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL         0x04034b50u
#define SIG_CENTRAL       0x02014b50u
#define SIG_END           0x06054b50u
#define SIG_ZIP64_END     0x06064b50u
#define SIG_ZIP64_LOCATOR 0x07064b50u

#define LOCAL_HEADER_SIZE   30u
#define CENTRAL_HEADER_SIZE 46u
#define END_SIZE            22u
#define ZIP64_END_SIZE      56u
#define ZIP64_LOCATOR_SIZE  20u
#define MAX_COMMENT         0xffffu

#define ZIP64_EXTRA_ID       0x0001u
#define FLAG_ENCRYPTED       0x0001u
#define FLAG_DATA_DESCRIPTOR 0x0008u

/* At most 200 bytes of an entry name go into a message. */
#define NAME_FMT    "%.*s"
#define NAME_ARG(e) (int)((e)->name_len < 200 ? (e)->name_len : 200), (e)->name

typedef unsigned long long ull;

/* ------------------------------------------------------------------------ */
/* Locating the end records                                                 */
/* ------------------------------------------------------------------------ */

/* What the end records say about the central directory. */
typedef struct zip_end {
    uint64_t n_entries; /* Entries in the central directory. */
    uint64_t cd_size;   /* Bytes of the central directory. */
    uint64_t cd_offset; /* Absolute offset of its first header. */
    uint64_t cd_limit;  /* The directory must end here: where the first end record starts. */
} zip_end;

/* True when the first bytes look like a pickle, as the pre-1.6 torch.save wrote. */
static int looks_like_legacy_torch(const bc__file *file) {
    return file->size >= 2 && file->data[0] == 0x80 && file->data[1] <= 5;
}

static int find_end(const bc__file *file, zip_end *end, bc__err *err) {
    memset(end, 0, sizeof *end);
    const uint8_t *d = file->data;
    const uint64_t size = file->size;
    const char *path = file->path;

    if (size < 2 || d[0] != 'P' || d[1] != 'K') {
        if (looks_like_legacy_torch(file))
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: not a zip archive: this looks like the legacy torch.save format of "
                              "torch < 1.6, which is not supported (load and save it again with a newer torch)",
                              path);
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: not a zip archive (a torch.save checkpoint starts with \"PK\")", path);
    }
    if (size < END_SIZE)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: not a zip archive: %llu bytes is too small for an end of central directory "
                          "record (truncated?)",
                          path, (ull)size);

    /* The end record is the last thing in the file but for a comment of at
     * most 65535 bytes; the comment length must reach the end exactly. */
    uint64_t lowest = size - END_SIZE > MAX_COMMENT ? size - END_SIZE - MAX_COMMENT : 0;
    uint64_t pos = size - END_SIZE;
    int found = 0;
    for (;;) {
        if (bc__le32(d + pos) == SIG_END && bc__le16(d + pos + 20) == size - pos - END_SIZE) {
            found = 1;
            break;
        }
        if (pos == lowest) break;
        pos--;
    }
    if (!found)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: not a complete zip archive: no end of central directory record in the last "
                          "%llu bytes (truncated?)",
                          path, (ull)(size - lowest));

    const uint8_t *e = d + pos;
    uint64_t disk = bc__le16(e + 4), cd_disk = bc__le16(e + 6);
    uint64_t n_disk = bc__le16(e + 8), n_total = bc__le16(e + 10);
    uint64_t cd_size = bc__le32(e + 12), cd_offset = bc__le32(e + 16);
    end->cd_limit = pos;

    if (pos >= ZIP64_LOCATOR_SIZE && bc__le32(d + pos - ZIP64_LOCATOR_SIZE) == SIG_ZIP64_LOCATOR) {
        uint64_t loc = pos - ZIP64_LOCATOR_SIZE;
        uint32_t z_disk = bc__le32(d + loc + 4);
        uint64_t z_offset = bc__le64(d + loc + 8);
        uint32_t n_disks = bc__le32(d + loc + 16);
        if (z_disk != 0 || n_disks > 1)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: multi-disk zip archives are not supported (zip64 locator at offset %llu "
                              "names disk %u of %u)",
                              path, (ull)loc, z_disk, n_disks);
        if (z_offset > loc || loc - z_offset < ZIP64_END_SIZE)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: the zip64 locator at offset %llu points to offset %llu, which leaves no room "
                              "for a zip64 end of central directory record before it",
                              path, (ull)loc, (ull)z_offset);
        const uint8_t *z = d + z_offset;
        if (bc__le32(z) != SIG_ZIP64_END)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: no zip64 end of central directory record at offset %llu, where the zip64 "
                              "locator points",
                              path, (ull)z_offset);
        /* The record size counts the bytes after its own 12-byte prefix. */
        uint64_t record_size = bc__le64(z + 4);
        if (record_size < ZIP64_END_SIZE - 12 || record_size > loc - z_offset - 12)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: the zip64 end of central directory record at offset %llu declares %llu "
                              "bytes (between %u and %llu expected)",
                              path, (ull)z_offset, (ull)record_size, ZIP64_END_SIZE - 12, (ull)(loc - z_offset - 12));
        disk = bc__le32(z + 16);
        cd_disk = bc__le32(z + 20);
        n_disk = bc__le64(z + 24);
        n_total = bc__le64(z + 32);
        cd_size = bc__le64(z + 40);
        cd_offset = bc__le64(z + 48);
        end->cd_limit = z_offset;
    } else if (n_disk == 0xffff || n_total == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: the end of central directory record at offset %llu defers to zip64 values, "
                          "but there is no zip64 locator before it",
                          path, (ull)pos);
    }

    if (disk != 0 || cd_disk != 0 || n_disk != n_total)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: multi-disk zip archives are not supported (disk %llu, directory on disk %llu, "
                          "%llu of %llu entries on this disk)",
                          path, (ull)disk, (ull)cd_disk, (ull)n_disk, (ull)n_total);
    if (cd_offset > end->cd_limit || cd_size > end->cd_limit - cd_offset)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: the central directory (%llu bytes at offset %llu) does not fit before its end "
                          "record at offset %llu (truncated or damaged file?)",
                          path, (ull)cd_size, (ull)cd_offset, (ull)end->cd_limit);
    if (n_total > BC__ZIP_MAX_ENTRIES)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: the zip archive declares %llu entries (the limit is %u)",
                          path, (ull)n_total, BC__ZIP_MAX_ENTRIES);
    if (n_total > cd_size / CENTRAL_HEADER_SIZE)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: the zip archive declares %llu entries, but its central directory of %llu bytes "
                          "has room for at most %llu",
                          path, (ull)n_total, (ull)cd_size, (ull)(cd_size / CENTRAL_HEADER_SIZE));
    end->n_entries = n_total;
    end->cd_size = cd_size;
    end->cd_offset = cd_offset;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Central directory                                                        */
/* ------------------------------------------------------------------------ */

/* The fields a zip64 extra field may replace, in the order it stores them.
 * A field is present only when its 32-bit (16-bit for the disk) value in the
 * header is saturated; `want` says which are. */
typedef struct zip64_fields {
    int want[4];       /* Whether each field is expected: size, compressed size, offset, disk. */
    uint64_t value[4]; /* The values read, for the wanted fields. */
} zip64_fields;

/* Reads the zip64 extra field out of an extra area, if any field is wanted.
 * `where` says which header this is, for messages. */
static int read_zip64_extra(const bc__file *file, const bc__zip_entry *e, const char *where, const uint8_t *extra,
                            uint32_t extra_len, zip64_fields *f, bc__err *err) {
    static const unsigned widths[4] = {8, 8, 8, 4};
    if (!f->want[0] && !f->want[1] && !f->want[2] && !f->want[3]) return 0;

    uint32_t pos = 0;
    /* Extra records are (id u16, size u16, data); fewer than 4 trailing bytes are padding. */
    while (extra_len - pos >= 4) {
        uint16_t id = bc__le16(extra + pos), len = bc__le16(extra + pos + 2);
        pos += 4;
        if (len > extra_len - pos)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: zip entry '" NAME_FMT "': an extra field in its %s runs past the extra area",
                              file->path, NAME_ARG(e), where);
        if (id == ZIP64_EXTRA_ID) {
            uint32_t at = 0;
            for (int i = 0; i < 4; i++) {
                if (!f->want[i]) continue;
                if (len - at < widths[i])
                    return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                                      "%s: zip entry '" NAME_FMT "': the zip64 extra field in its %s is too "
                                      "short (%u bytes)",
                                      file->path, NAME_ARG(e), where, len);
                f->value[i] = widths[i] == 8 ? bc__le64(extra + pos + at) : bc__le32(extra + pos + at);
                at += widths[i];
            }
            return 0;
        }
        pos += len;
    }
    return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                      "%s: zip entry '" NAME_FMT "': its %s defers sizes or offsets to a zip64 extra field, "
                      "but has none",
                      file->path, NAME_ARG(e), where);
}

/* Reads the central header at *pos (which must lie before `end`) into e and
 * advances *pos past it. */
static int read_central_entry(const bc__file *file, uint64_t *pos, uint64_t end, uint64_t index, bc__zip_entry *e,
                              bc__err *err) {
    const uint8_t *h = file->data + *pos;
    if (end - *pos < CENTRAL_HEADER_SIZE || bc__le32(h) != SIG_CENTRAL)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip central directory entry %llu at offset %llu is missing or truncated", file->path,
                          (ull)index, (ull)*pos);
    uint32_t name_len = bc__le16(h + 28), extra_len = bc__le16(h + 30), comment_len = bc__le16(h + 32);
    uint64_t var_len = (uint64_t)name_len + extra_len + comment_len;
    if (end - *pos - CENTRAL_HEADER_SIZE < var_len)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip central directory entry %llu at offset %llu runs past the end of the "
                          "directory",
                          file->path, (ull)index, (ull)*pos);
    if (name_len > BC__ZIP_MAX_NAME)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip central directory entry %llu at offset %llu has a %u-byte name (the limit "
                          "is %u)",
                          file->path, (ull)index, (ull)*pos, name_len, BC__ZIP_MAX_NAME);

    memset(e, 0, sizeof *e);
    e->name = (const char *)h + CENTRAL_HEADER_SIZE;
    e->name_len = name_len;
    e->flags = bc__le16(h + 8);
    e->method = bc__le16(h + 10);
    e->compressed_size = bc__le32(h + 20);
    e->size = bc__le32(h + 24);
    e->local_offset = bc__le32(h + 42);
    uint32_t disk = bc__le16(h + 34);

    zip64_fields f = {
        {e->size == 0xffffffffu, e->compressed_size == 0xffffffffu, e->local_offset == 0xffffffffu, disk == 0xffffu},
        {0, 0, 0, 0}};
    if (read_zip64_extra(file, e, "central directory header", h + CENTRAL_HEADER_SIZE + name_len, extra_len, &f, err) !=
        0)
        return -1;
    if (f.want[0]) e->size = f.value[0];
    if (f.want[1]) e->compressed_size = f.value[1];
    if (f.want[2]) e->local_offset = f.value[2];
    if (f.want[3]) disk = (uint32_t)f.value[3];
    if (disk != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip entry '" NAME_FMT "' starts on disk %u (multi-disk archives are not supported)",
                          file->path, NAME_ARG(e), disk);
    *pos += CENTRAL_HEADER_SIZE + var_len;
    return 0;
}

static int compare_names(const char *a, size_t a_len, const char *b, size_t b_len) {
    int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
    if (c != 0) return c;
    return a_len < b_len ? -1 : a_len > b_len ? 1 : 0;
}

static int compare_entries(const void *a, const void *b) {
    const bc__zip_entry *x = a, *y = b;
    return compare_names(x->name, x->name_len, y->name, y->name_len);
}

int bc__zip_open(bc__zip *zip, const bc__file *file, bc__err *err) {
    memset(zip, 0, sizeof *zip);
    zip_end end = {0, 0, 0, 0};
    if (find_end(file, &end, err) != 0) return -1;

    bc__zip_entry *entries = calloc(end.n_entries ? (size_t)end.n_entries : 1, sizeof *entries);
    if (entries == NULL)
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory for %llu zip entries", file->path,
                          (ull)end.n_entries);
    uint64_t pos = end.cd_offset, cd_end = end.cd_offset + end.cd_size;
    for (uint64_t i = 0; i < end.n_entries; i++)
        if (read_central_entry(file, &pos, cd_end, i, &entries[i], err) != 0) goto fail;

    qsort(entries, (size_t)end.n_entries, sizeof *entries, compare_entries);
    for (uint64_t i = 1; i < end.n_entries; i++) {
        if (compare_entries(&entries[i - 1], &entries[i]) == 0) {
            bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: zip entry '" NAME_FMT "' appears twice in the archive",
                       file->path, NAME_ARG(&entries[i]));
            goto fail;
        }
    }
    zip->file = file;
    zip->entries = entries;
    zip->n_entries = (size_t)end.n_entries;
    zip->cd_offset = end.cd_offset;
    return 0;

fail:
    free(entries);
    return -1;
}

void bc__zip_close(bc__zip *zip) {
    free(zip->entries);
    memset(zip, 0, sizeof *zip);
}

/* ------------------------------------------------------------------------ */
/* Lookup                                                                   */
/* ------------------------------------------------------------------------ */

const bc__zip_entry *bc__zip_find(const bc__zip *zip, const char *name, size_t name_len) {
    size_t lo = 0, hi = zip->n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const bc__zip_entry *e = &zip->entries[mid];
        int c = compare_names(name, name_len, e->name, e->name_len);
        if (c == 0) return e;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Entry data                                                               */
/* ------------------------------------------------------------------------ */

int bc__zip_entry_data(const bc__zip *zip, const bc__zip_entry *e, uint64_t *offset, bc__err *err) {
    const bc__file *file = zip->file;
    const char *path = file->path;
    *offset = 0;

    if (e->flags & FLAG_ENCRYPTED)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: zip entry '" NAME_FMT "' is encrypted", path, NAME_ARG(e));
    if (e->method != 0)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip entry '" NAME_FMT "' is compressed (method %u); only stored entries can be "
                          "read in place (torch.save never compresses: was the archive repacked?)",
                          path, NAME_ARG(e), e->method);
    if (e->compressed_size != e->size)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip entry '" NAME_FMT "' is stored but declares %llu bytes in the archive and "
                          "%llu extracted",
                          path, NAME_ARG(e), (ull)e->compressed_size, (ull)e->size);

    /* Entry data lies before the central directory, which lies inside the file. */
    const uint64_t limit = zip->cd_offset;
    const uint64_t lo = e->local_offset;
    if (lo > limit || limit - lo < LOCAL_HEADER_SIZE)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip entry '" NAME_FMT "': its local header offset %llu does not lie before the "
                          "central directory at offset %llu",
                          path, NAME_ARG(e), (ull)lo, (ull)limit);
    const uint8_t *h = file->data + lo;
    if (bc__le32(h) != SIG_LOCAL)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: zip entry '" NAME_FMT "': no local header at offset %llu",
                          path, NAME_ARG(e), (ull)lo);
    uint16_t flags = bc__le16(h + 6), method = bc__le16(h + 8);
    uint32_t name_len = bc__le16(h + 26), extra_len = bc__le16(h + 28);
    if (limit - lo - LOCAL_HEADER_SIZE < (uint64_t)name_len + extra_len)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip entry '" NAME_FMT "': its local header at offset %llu runs into the central "
                          "directory",
                          path, NAME_ARG(e), (ull)lo);
    if (name_len != e->name_len || memcmp(h + LOCAL_HEADER_SIZE, e->name, name_len) != 0 || method != e->method)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip entry '" NAME_FMT "': its local header at offset %llu disagrees with the "
                          "central directory on the name or method",
                          path, NAME_ARG(e), (ull)lo);

    /* Without a data descriptor the local header repeats the sizes; they must agree. */
    if (!(flags & FLAG_DATA_DESCRIPTOR)) {
        uint64_t compressed = bc__le32(h + 18), size = bc__le32(h + 22);
        zip64_fields f = {{size == 0xffffffffu, compressed == 0xffffffffu, 0, 0}, {0, 0, 0, 0}};
        if (read_zip64_extra(file, e, "local header", h + LOCAL_HEADER_SIZE + name_len, extra_len, &f, err) != 0)
            return -1;
        if (f.want[0]) size = f.value[0];
        if (f.want[1]) compressed = f.value[1];
        if (size != e->size || compressed != e->compressed_size)
            return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                              "%s: zip entry '" NAME_FMT "': its local header says %llu bytes, the central "
                              "directory %llu",
                              path, NAME_ARG(e), (ull)compressed, (ull)e->compressed_size);
    }

    uint64_t data = lo + LOCAL_HEADER_SIZE + name_len + extra_len;
    if (e->size > limit - data)
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                          "%s: zip entry '" NAME_FMT "': its %llu bytes at offset %llu run past the start of the "
                          "central directory at offset %llu (truncated or damaged file?)",
                          path, NAME_ARG(e), (ull)e->size, (ull)data, (ull)limit);
    *offset = data;
    return 0;
}

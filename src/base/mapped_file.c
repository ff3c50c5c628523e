/*
 * mapped_file.c - read-only mappings of whole files, and the big buffers
 * the kernels stream through (on huge pages).
 *
 * Weights are used where they lie in the page cache: mapping instead of
 * reading means a 15 GB checkpoint costs no private copy, and pages the
 * process no longer touches can be dropped by the kernel.
 */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int bc__file_map(const char *path, bc__file **out, bc__err *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return bc__errorf(err, BC_STATUS_ERROR_FORMAT, "%s: file is empty", path);
    }
    void *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (data == MAP_FAILED) return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: cannot map: %s", path, strerror(e));

    bc__file *f = calloc(1, sizeof *f);
    char *p = f ? bc__strdup(path) : NULL;
    if (p == NULL) {
        free(f);
        munmap(data, (size_t)st.st_size);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", path);
    }
    f->path = p;
    f->data = data;
    f->size = (uint64_t)st.st_size;
    *out = f;
    return 0;
}

void bc__file_unmap(bc__file *file) {
    if (file == NULL) return;
    munmap((void *)file->data, (size_t)file->size);
    free(file->path);
    free(file);
}

uint64_t bc__release_pages(const void *p, uint64_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t begin = ((uintptr_t)p + page - 1) / page * page, end = ((uintptr_t)p + (uintptr_t)n) / page * page;
    if (end <= begin || madvise((void *)begin, end - begin, MADV_DONTNEED) != 0) return 0;
    return (uint64_t)(end - begin);
}

void *bc__alloc_streamed(size_t n) {
    const size_t align = n >= BC__HUGE_PAGE ? BC__HUGE_PAGE : 64, bytes = bc__streamed_bytes(n);
    if (bytes < n) return NULL; /* overflow */
    void *p = aligned_alloc(align, bytes);
#ifdef MADV_HUGEPAGE
    if (p != NULL && align == BC__HUGE_PAGE) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

/*
 * repack.c - a matrix's repacked copy for this CPU's kernels (see repack.h;
 * the layouts are data, kernel_types.h): made at load, freed with the model.
 */
#include "kernels/repack.h"

#include "kernels/dispatch.h"
#include "kernels/isa.h"

#include "base/threadpool.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

bool bc__pack_supported(const bc__weight *w) {
    const bc__pack_layout *l = bc__pack_layout_for(w->dtype, bc__kernels_isa(), w->rows);
    const int64_t block = bc__dtype_traits_of(w->dtype)->block_elems;
    return l != NULL && w->cols > 0 && w->cols % block == 0;
}

static size_t repack_bytes_of(const bc__pack_layout *l, const bc__weight *w) {
    return (size_t)(w->rows / l->rows) * l->group_bytes(w->cols);
}

size_t bc__repack_bytes(const bc__weight *w) { return w->pack != NULL ? repack_bytes_of(w->pack, w) : 0; }

bool bc__weight_repack(bc__weight *w) {
    if (!bc__pack_supported(w)) return false;
    const bc__pack_layout *l = bc__pack_layout_for(w->dtype, bc__kernels_isa(), w->rows);
    const size_t bytes = repack_bytes_of(l, w), group_bytes = l->group_bytes(w->cols);
    const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
    const size_t row_bytes = (size_t)(w->cols / tr->block_elems) * (size_t)tr->block_bytes;
    /* On huge pages: a matrix streamed once per token costs a TLB miss per
     * 2 MiB, not per 4 KiB, and the load takes fewer page faults. */
    void *p = bc__alloc_streamed(bytes);
    if (p == NULL) return false;
    for (int64_t g = 0; g < w->rows / l->rows; g++)
        l->pack((const char *)w->data + (size_t)g * (size_t)l->rows * row_bytes, row_bytes, w->cols,
                (char *)p + (size_t)g * group_bytes);
    w->packed = p;
    w->pack = l;
    return true;
}

/* Groups of one matrix over all CPUs, each thread taking the next run. */
typedef struct group_job {
    const bc__weight *w;
    const bc__pack_layout *l;
    void *dst;
    size_t row_bytes, group_bytes;
    int64_t n_groups;
    atomic_llong next;
} group_job;

static void *group_thread(void *p) {
    group_job *j = p;
    const int64_t run = 16;
    for (int64_t g0; (g0 = atomic_fetch_add(&j->next, run)) < j->n_groups;)
        for (int64_t g = g0; g < g0 + run && g < j->n_groups; g++)
            j->l->pack((const char *)j->w->data + (size_t)g * (size_t)j->l->rows * j->row_bytes, j->row_bytes,
                       j->w->cols, (char *)j->dst + (size_t)g * j->group_bytes);
    return NULL;
}

bool bc__weight_repack_all_cpus(bc__weight *w) {
    if (!bc__pack_supported(w)) return false;
    const bc__pack_layout *l = bc__pack_layout_for(w->dtype, bc__kernels_isa(), w->rows);
    const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
    group_job j = {w,
                   l,
                   NULL,
                   (size_t)(w->cols / tr->block_elems) * (size_t)tr->block_bytes,
                   l->group_bytes(w->cols),
                   w->rows / l->rows,
                   0};
    j.dst = bc__alloc_streamed((size_t)j.n_groups * j.group_bytes);
    if (j.dst == NULL) return false;
    atomic_init(&j.next, 0);
    bc__run_on_all_cpus(group_thread, &j);
    w->packed = j.dst;
    w->pack = l;
    return true;
}

void bc__weight_repack_free(bc__weight *w) {
    free(w->packed);
    w->packed = NULL;
    w->pack = NULL;
}

/*
 * repack.c - repacked copies of the model's matrices for this CPU's kernels
 * (see repack.h), made at load by one thread per CPU. The matmul reads the
 * copy instead of the row-major original, so the mapped pages of those
 * tensors go cold after the load.
 */
#include "model/repack.h"

#include "base/threadpool.h"
#include "kernels/kernels.h"
#include "model/matrices.h"

#include <stdatomic.h>
#include <stdlib.h>

/* Repacked copies of the matrices that have a layout for this CPU's kernels.
 * Optional: a matrix left without one (no kernel, odd shape, no memory) is
 * read row-major as before. The copies are made by one thread per CPU, each
 * taking the next matrix, so that a 7B model's 4 GB repack takes seconds. */
typedef struct repack_job {
    bc__weight **ws;
    int n;
    atomic_int next;
    _Atomic uint64_t released;        /* bytes of stored pages released */
    _Atomic uint64_t freed;           /* bytes of heap copies (quantized at load) freed */
    _Atomic uint64_t freed_converted; /* bytes of converted 4-bit blocks freed */
} repack_job;

/* A matrix quantized at load (or converted from a 4-bit checkpoint) lives on
 * the heap, whose pages cannot be dropped and read back like a file's: once
 * repacked, its row-major copy is freed (data NULL), and the matmul reads the
 * repacked copy at any kernel level (kernels/kernels.c). */
static void *repack_thread(void *p) {
    repack_job *job = p;
    for (int i; (i = atomic_fetch_add(&job->next, 1)) < job->n;) {
        bc__weight *w = job->ws[i];
        if (w->data == NULL || !bc__weight_repack(w)) continue;
        if (w->owned == NULL) {
            atomic_fetch_add(&job->released, bc__model_release_stored_pages(w));
            continue;
        }
        const bc__dtype_traits *tr = bc__dtype_traits_of(w->dtype);
        const uint64_t bytes = (uint64_t)(w->rows * (w->cols / tr->block_elems)) * tr->block_bytes;
        /* Heap copies are either blocks a 4-bit checkpoint was converted to
         * (their own dtypes) or matrices quantized at load. */
        bool converted = w->dtype == BC_DTYPE_NF4 || w->dtype == BC_DTYPE_FP4 || w->dtype == BC_DTYPE_Q4_GPTQ;
        atomic_fetch_add(converted ? &job->freed_converted : &job->freed, bytes);
        free(w->owned);
        w->owned = NULL;
        w->data = NULL;
    }
    return NULL;
}

void bc__model_repack(bc_model *m, bc_switch repack) {
    if (repack == BC_SWITCH_OFF) return;
    repack_job job;
    job.ws = bc__model_matrices(m, &job.n);
    if (job.ws == NULL) return;
    atomic_init(&job.next, 0);
    atomic_init(&job.released, 0);
    atomic_init(&job.freed, 0);
    atomic_init(&job.freed_converted, 0);
    bc__run_on_all_cpus(repack_thread, &job);
    for (int i = 0; i < job.n; i++) m->repacked_bytes += bc__repack_bytes(job.ws[i]);
    m->released_bytes += atomic_load(&job.released);
    m->quantized_bytes -= atomic_load(&job.freed);
    m->converted_bytes -= atomic_load(&job.freed_converted);
    free(job.ws);
}

/*
 * threadpool.h - a fixed set of worker threads that run one task at a time.
 *
 * A task is n_chunks independent pieces of work. bc__pool_run(pool, fn, arg,
 * n_chunks) calls fn(arg, chunk, ith) exactly once for every chunk in
 * [0, n_chunks), on whichever threads claim them (the caller is thread 0,
 * workers 1 .. n_threads-1; ith selects per-thread scratch), and returns when
 * every chunk is done.
 *
 * Chunks are claimed from a shared counter rather than split in fixed shares,
 * and the caller never waits for a worker that has not started: when a worker
 * is descheduled (more runnable threads than cores, a busy server), the
 * threads that are running take over its chunks, and the task ends as soon as
 * the chunks are done. A forward pass issues hundreds of small tasks per
 * token, so workers spin briefly between tasks before they sleep.
 */
#ifndef BC_THREADPOOL_H
#define BC_THREADPOOL_H

#include "base/base.h"

typedef struct bc__pool bc__pool;
typedef void (*bc__chunk_fn)(void *arg, int64_t chunk, int ith);

/* n_threads >= 1 counts the calling thread. Returns NULL on failure. */
BC__HIDDEN bc__pool *bc__pool_create(int n_threads);
BC__HIDDEN void bc__pool_free(bc__pool *pool);
BC__HIDDEN int bc__pool_size(const bc__pool *pool);
/* Runs fn over chunks [0, n_chunks). Not reentrant: one task at a time, from
 * one calling thread. */
BC__HIDDEN void bc__pool_run(bc__pool *pool, bc__chunk_fn fn, void *arg, int64_t n_chunks);

/* Runs fn(arg) on one thread per CPU (at most 64), the caller's among them;
 * fn takes its work from arg until none is left. Fewer threads if some
 * cannot be started. For the load-time conversions. */
BC__HIDDEN void bc__run_on_all_cpus(void *(*fn)(void *), void *arg);

#endif /* BC_THREADPOOL_H */

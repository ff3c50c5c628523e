/*
 * threadpool.h - a fixed set of worker threads that run one task at a time.
 *
 * bc__pool_run(pool, fn, arg) calls fn(arg, ith, nth) once on each of the nth
 * threads (the caller is thread 0) and returns when all calls have returned.
 * Work is split by the task itself from ith/nth. Workers spin briefly between
 * tasks (a forward pass issues hundreds of small ones) and then sleep.
 */
#ifndef BC_THREADPOOL_H
#define BC_THREADPOOL_H

#include "internal.h"

typedef struct bc__pool bc__pool;
typedef void (*bc__task_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 counts the calling thread. Returns NULL on failure. */
BC__HIDDEN bc__pool *bc__pool_create(int n_threads);
BC__HIDDEN void bc__pool_free(bc__pool *pool);
BC__HIDDEN int bc__pool_size(const bc__pool *pool);
BC__HIDDEN void bc__pool_run(bc__pool *pool, bc__task_fn fn, void *arg);

/* The [begin, end) share of n items for thread ith of nth. */
static inline void bc__split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
    int64_t per = (n + nth - 1) / nth;
    *begin = per * ith < n ? per * ith : n;
    *end = *begin + per < n ? *begin + per : n;
}

#endif /* BC_THREADPOOL_H */

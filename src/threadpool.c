/*
 * threadpool.c - see threadpool.h.
 *
 * A task is published by bumping `generation`; each worker runs it and
 * increments `n_done`. Workers spin on the generation for a while before
 * waiting on a condition variable, so back-to-back tasks cost no syscalls.
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ITERATIONS 20000

struct bc__pool {
    int n_threads;      /* including the caller */
    pthread_t *threads; /* (n_threads - 1) workers */
    pthread_mutex_t mutex;
    pthread_cond_t wake;    /* signalled when generation changes */
    atomic_uint generation; /* bumped once per task */
    atomic_int n_done;      /* workers finished with the current task */
    atomic_bool stop;
    bc__task_fn fn; /* the current task */
    void *arg;
};

typedef struct worker_start {
    bc__pool *pool;
    int ith;
} worker_start;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p) {
    worker_start *ws = p;
    bc__pool *pool = ws->pool;
    int ith = ws->ith;
    free(ws);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
               !atomic_load(&pool->stop) && spins < SPIN_ITERATIONS) {
            cpu_relax();
            spins++;
        }
        if (g == seen && !atomic_load(&pool->stop)) {
            pthread_mutex_lock(&pool->mutex);
            while ((g = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = g;
        pool->fn(pool->arg, ith, pool->n_threads);
        atomic_fetch_add_explicit(&pool->n_done, 1, memory_order_release);
    }
}

bc__pool *bc__pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    bc__pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL) return NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->n_done, 0);
    atomic_init(&pool->stop, false);
    pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
    if (pool->threads == NULL) {
        free(pool);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_start *ws = malloc(sizeof *ws);
        if (ws == NULL ||
            (ws->pool = pool, ws->ith = i, pthread_create(&pool->threads[i - 1], NULL, worker_main, ws) != 0)) {
            free(ws);
            pool->n_threads = i; /* only the threads started so far */
            bc__pool_free(pool);
            return NULL;
        }
    }
    return pool;
}

void bc__pool_free(bc__pool *pool) {
    if (pool == NULL) return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i - 1], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    free(pool->threads);
    free(pool);
}

int bc__pool_size(const bc__pool *pool) { return pool->n_threads; }

void bc__pool_run(bc__pool *pool, bc__task_fn fn, void *arg) {
    if (pool->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->n_done, 0, memory_order_relaxed);
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    fn(arg, 0, pool->n_threads);
    for (int spins = 0; atomic_load_explicit(&pool->n_done, memory_order_acquire) != pool->n_threads - 1; spins++) {
        if (spins < SPIN_ITERATIONS)
            cpu_relax();
        else
            sched_yield(); /* a worker was descheduled: give it the core */
    }
}

/*
 * threadpool.c - see threadpool.h.
 *
 * The pool's state is one atomic word: a generation (high 32 bits) and the
 * number of workers inside the current task (low 32 bits). An even
 * generation is a task that workers may join, an odd one means "no task".
 *
 *   caller                                  worker
 *   fn, arg, n_chunks, next = 0             wait until the generation is even
 *   state = (g even, 0)        --release--> and not the last one it ran
 *   claim chunks until none are left        CAS (g, k) -> (g, k + 1): joined
 *   wait for state == (g, 0), then          claim chunks until none are left
 *   CAS (g, 0) -> (g + 1, 0): closed        state -= 1
 *
 * A worker can only join while the generation is the one it read, and the
 * caller closes a task only when no worker is inside, so a late worker never
 * runs a finished task's function or sees a half-published one. The caller
 * waits only for workers that joined, each of which finishes at most the one
 * chunk it is running once the chunks run out.
 */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* Pause instructions a worker spins for a new task before sleeping: about
 * 0.1-1 ms, longer than the gap between the tasks of one forward pass. */
#define SPIN_ITERATIONS 20000

struct bc__pool {
    int n_threads;      /* including the caller */
    pthread_t *threads; /* (n_threads - 1) workers */
    pthread_mutex_t mutex;
    pthread_cond_t wake; /* signalled when a task is published */
    int n_sleeping;      /* workers waiting on `wake` (under mutex) */

    /* The current task, written by the caller before it publishes. */
    bc__chunk_fn fn;
    void *arg;
    int64_t n_chunks;
    _Alignas(64) _Atomic int64_t next_chunk; /* the next unclaimed chunk */
    _Alignas(64) _Atomic uint64_t state;     /* generation << 32 | workers inside */
    atomic_bool stop;
};

#define GEN(s)    ((s) >> 32)
#define INSIDE(s) ((s)&0xFFFFFFFFu)

typedef struct worker_start {
    bc__pool *pool;
    int ith;
} worker_start;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_chunks(bc__pool *pool, int ith) {
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&pool->next_chunk, 1, memory_order_relaxed);
        if (c >= pool->n_chunks) return;
        pool->fn(pool->arg, c, ith);
    }
}

/* Whether state s holds a task this worker has not run yet. */
static inline bool joinable(uint64_t s, uint64_t last_gen) { return GEN(s) % 2 == 0 && GEN(s) != last_gen; }

static void *worker_main(void *p) {
    worker_start *ws = p;
    bc__pool *pool = ws->pool;
    int ith = ws->ith;
    free(ws);
    uint64_t last_gen = 1; /* odd: matches no task */
    for (;;) {
        uint64_t s = atomic_load_explicit(&pool->state, memory_order_acquire);
        for (int spins = 0; !joinable(s, last_gen) && spins < SPIN_ITERATIONS; spins++) {
            if (atomic_load_explicit(&pool->stop, memory_order_relaxed)) return NULL;
            cpu_relax();
            s = atomic_load_explicit(&pool->state, memory_order_acquire);
        }
        if (!joinable(s, last_gen)) {
            pthread_mutex_lock(&pool->mutex);
            pool->n_sleeping++;
            while (!joinable(s = atomic_load(&pool->state), last_gen) && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            pool->n_sleeping--;
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop)) return NULL;
        /* Join the task of generation GEN(s), unless it has closed meanwhile. */
        while (joinable(s, last_gen) && !atomic_compare_exchange_weak_explicit(
                                            &pool->state, &s, s + 1, memory_order_acquire, memory_order_acquire)) {
        }
        if (!joinable(s, last_gen)) continue; /* closed before we got in */
        last_gen = GEN(s);
        run_chunks(pool, ith);
        atomic_fetch_sub_explicit(&pool->state, 1, memory_order_release);
    }
}

bc__pool *bc__pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    bc__pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL) return NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->next_chunk, 0);
    atomic_init(&pool->state, (uint64_t)1 << 32); /* generation 1: no task */
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

void bc__pool_run(bc__pool *pool, bc__chunk_fn fn, void *arg, int64_t n_chunks) {
    if (n_chunks <= 0) return;
    if (pool->n_threads == 1 || n_chunks == 1) {
        for (int64_t c = 0; c < n_chunks; c++) fn(arg, c, 0);
        return;
    }
    /* No worker is inside (the last task closed with none), so the task
     * fields are ours until the generation is published. */
    pool->fn = fn;
    pool->arg = arg;
    pool->n_chunks = n_chunks;
    atomic_store_explicit(&pool->next_chunk, 0, memory_order_relaxed);
    uint64_t gen = GEN(atomic_load_explicit(&pool->state, memory_order_relaxed)) + 1; /* even */
    atomic_store_explicit(&pool->state, gen << 32, memory_order_release);
    pthread_mutex_lock(&pool->mutex);
    if (pool->n_sleeping > 0) pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);

    run_chunks(pool, 0);

    /* Close the task once the workers inside have left. */
    uint64_t expect = gen << 32;
    for (int spins = 0; !atomic_compare_exchange_weak_explicit(&pool->state, &expect, (gen + 1) << 32,
                                                               memory_order_acq_rel, memory_order_acquire);
         spins++) {
        expect = gen << 32;
        if (spins < SPIN_ITERATIONS)
            cpu_relax();
        else
            sched_yield(); /* a worker inside was descheduled: give it the core */
    }
}

void bc__run_on_all_cpus(void *(*fn)(void *), void *arg) {
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = n_cpu < 1 ? 1 : n_cpu > 64 ? 64 : (int)n_cpu;
    pthread_t threads[64];
    int started = 0;
    while (started < n_threads - 1 && pthread_create(&threads[started], NULL, fn, arg) == 0) started++;
    fn(arg);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
}

/*
 * workers.c - a fixed pool of threads taking jobs from a bounded ring
 * (workers.h). The ring is allocated once, at start: a submit never
 * allocates, so shedding load costs nothing.
 */
#include "workers.h"

#include "util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct job {
    void (*fn)(void *arg);
    void (*expired)(void *arg);
    void *arg;
    double deadline; /* srv_now() past which it expires */
} job;

struct srv_workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_cond_t janitor_cv; /* wakes the janitor to stop */
    job *ring;                 /* (max_jobs) */
    int cap, head, len;
    bool stopping;
    bool joined; /* srv_workers_stop has joined the threads */
    int n_threads;
    pthread_t *threads; /* (n_threads) */
    double max_wait;
    pthread_t janitor;
    bool janitor_started;
};

/* Takes off the queue the jobs past their deadline, oldest first (every job
 * waits the same max_wait, so they are the head of the ring), and calls
 * their expired callbacks outside the lock. */
static void *janitor_main(void *arg) {
    srv_workers *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        double now = srv_now();
        while (w->len > 0 && w->ring[w->head].deadline < now) {
            job j = w->ring[w->head];
            w->head = (w->head + 1) % w->cap;
            w->len--;
            pthread_mutex_unlock(&w->mu);
            j.expired(j.arg);
            pthread_mutex_lock(&w->mu);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 50 * 1000 * 1000; /* the expiry is late by 50 ms at most */
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->janitor_cv, &w->mu, &until);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void *worker_main(void *arg) {
    srv_workers *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->len == 0 && !w->stopping) pthread_cond_wait(&w->cv, &w->mu);
        if (w->len == 0) break; /* stopping, and nothing left to run */
        job j = w->ring[w->head];
        w->head = (w->head + 1) % w->cap;
        w->len--;
        pthread_mutex_unlock(&w->mu);
        j.fn(j.arg);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int srv_workers_start(srv_workers **out, int n_threads, int max_jobs, double max_wait, char *err, size_t err_size) {
    *out = NULL;
    srv_workers *w = calloc(1, sizeof *w);
    if (w == NULL || n_threads < 1 || max_jobs < 1 || (w->ring = calloc((size_t)max_jobs, sizeof *w->ring)) == NULL ||
        (w->threads = calloc((size_t)n_threads, sizeof *w->threads)) == NULL) {
        snprintf(err, err_size,
                 n_threads < 1 || max_jobs < 1 ? "a worker pool needs threads and room for jobs" : "out of memory");
        if (w != NULL) free(w->ring);
        free(w);
        return -1;
    }
    w->cap = max_jobs;
    w->max_wait = max_wait;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->janitor_cv, NULL);
    if (pthread_create(&w->janitor, NULL, janitor_main, w) != 0) {
        snprintf(err, err_size, "cannot start the workers' janitor thread");
        srv_workers_free(w);
        return -1;
    }
    w->janitor_started = true;
    for (; w->n_threads < n_threads; w->n_threads++)
        if (pthread_create(&w->threads[w->n_threads], NULL, worker_main, w) != 0) {
            snprintf(err, err_size, "cannot start worker thread %d of %d", w->n_threads + 1, n_threads);
            srv_workers_free(w);
            return -1;
        }
    *out = w;
    return 0;
}

int srv_workers_submit(srv_workers *w, void (*fn)(void *arg), void (*expired)(void *arg), void *arg) {
    pthread_mutex_lock(&w->mu);
    if (w->len == w->cap || w->stopping) {
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    w->ring[(w->head + w->len++) % w->cap] =
        (job){.fn = fn, .expired = expired, .arg = arg, .deadline = srv_now() + w->max_wait};
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int srv_workers_waiting(srv_workers *w) {
    pthread_mutex_lock(&w->mu);
    int n = w->len;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void srv_workers_stop(srv_workers *w) {
    if (w == NULL || w->joined) return; /* joined: only the stopping thread writes it */
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->cv);
    pthread_cond_signal(&w->janitor_cv);
    pthread_mutex_unlock(&w->mu);
    if (w->janitor_started) pthread_join(w->janitor, NULL);
    for (int i = 0; i < w->n_threads; i++) pthread_join(w->threads[i], NULL);
    w->joined = true;
}

void srv_workers_free(srv_workers *w) {
    if (w == NULL) return;
    srv_workers_stop(w);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->janitor_cv);
    free(w->threads);
    free(w->ring);
    free(w);
}

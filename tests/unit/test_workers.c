/*
 * test_workers.c - the server's worker pool (server/workers.c): a full
 * queue refuses a job at once, a job that waits past max_wait gets its
 * expired callback instead of running (exactly one of the two, once),
 * stopping runs what is queued and refuses what comes after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "workers.h"

/* A job's record: how often it ran and expired; a gate it may wait at. */
typedef struct probe {
    atomic_int ran, expired;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    bool *open; /* NULL: the job does not wait */
} probe;

static void run(void *arg) {
    probe *p = arg;
    if (p->open != NULL) {
        pthread_mutex_lock(p->mu);
        while (!*p->open) pthread_cond_wait(p->cv, p->mu);
        pthread_mutex_unlock(p->mu);
    }
    atomic_fetch_add(&p->ran, 1);
}

static void expire(void *arg) { atomic_fetch_add(&((probe *)arg)->expired, 1); }

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;

static void open_gate(bool *open) {
    pthread_mutex_lock(&gate_mu);
    *open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* Waits until the single worker has taken the blocking job off the queue. */
static void wait_taken(srv_workers *w) {
    for (int i = 0; i < 2000 && srv_workers_waiting(w) > 0; i++) usleep(1000);
}

static void test_full_queue_refuses(void **state) {
    (void)state;
    srv_workers *w;
    char err[128];
    assert_int_equal(srv_workers_start(&w, 1, 2, 60.0, err, sizeof err), 0);
    bool open = false;
    probe blocker = {.mu = &gate_mu, .cv = &gate_cv, .open = &open}, a = {0}, b = {0}, c = {0};
    assert_int_equal(srv_workers_submit(w, run, expire, &blocker), 0);
    wait_taken(w);
    assert_int_equal(srv_workers_submit(w, run, expire, &a), 0);
    assert_int_equal(srv_workers_submit(w, run, expire, &b), 0);
    assert_int_equal(srv_workers_waiting(w), 2);
    assert_int_equal(srv_workers_submit(w, run, expire, &c), -1); /* 2 wait already */
    open_gate(&open);
    srv_workers_free(w);
    assert_int_equal(atomic_load(&blocker.ran), 1);
    assert_int_equal(atomic_load(&a.ran), 1);
    assert_int_equal(atomic_load(&b.ran), 1);
    assert_int_equal(atomic_load(&c.ran) + atomic_load(&c.expired), 0);
}

static void test_expiry(void **state) {
    (void)state;
    srv_workers *w;
    char err[128];
    assert_int_equal(srv_workers_start(&w, 1, 4, 0.2, err, sizeof err), 0);
    bool open = false;
    probe blocker = {.mu = &gate_mu, .cv = &gate_cv, .open = &open}, a = {0}, b = {0};
    assert_int_equal(srv_workers_submit(w, run, expire, &blocker), 0);
    wait_taken(w);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(srv_workers_submit(w, run, expire, &a), 0);
    assert_int_equal(srv_workers_submit(w, run, expire, &b), 0);
    /* The worker is stuck: both expire, 0.2 s (+ the janitor's 50 ms) later. */
    while (atomic_load(&b.expired) == 0) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_true(t1.tv_sec - t0.tv_sec < 5);
        usleep(1000);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    assert_true(waited >= 0.2 && waited < 1.0);
    assert_int_equal(atomic_load(&a.expired), 1);
    assert_int_equal(srv_workers_waiting(w), 0);
    open_gate(&open);
    srv_workers_free(w);
    assert_int_equal(atomic_load(&blocker.ran), 1);
    assert_int_equal(atomic_load(&blocker.expired), 0);
    assert_int_equal(atomic_load(&a.ran) + atomic_load(&b.ran), 0);
    assert_int_equal(atomic_load(&a.expired) + atomic_load(&b.expired), 2);
}

static void test_stop_runs_queued_then_refuses(void **state) {
    (void)state;
    srv_workers *w;
    char err[128];
    assert_int_equal(srv_workers_start(&w, 2, 16, 60.0, err, sizeof err), 0);
    probe p[10] = {0};
    for (int i = 0; i < 10; i++) assert_int_equal(srv_workers_submit(w, run, expire, &p[i]), 0);
    srv_workers_stop(w);
    for (int i = 0; i < 10; i++) assert_int_equal(atomic_load(&p[i].ran) * 10 + atomic_load(&p[i].expired), 10);
    probe late = {0};
    assert_int_equal(srv_workers_submit(w, run, expire, &late), -1);
    srv_workers_free(w);
    assert_int_equal(atomic_load(&late.ran) + atomic_load(&late.expired), 0);
}

static void test_bad_sizes(void **state) {
    (void)state;
    srv_workers *w = (srv_workers *)1;
    char err[128] = "";
    assert_int_equal(srv_workers_start(&w, 0, 4, 1.0, err, sizeof err), -1);
    assert_null(w);
    assert_true(err[0] != '\0');
    assert_int_equal(srv_workers_start(&w, 2, 0, 1.0, err, sizeof err), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_queue_refuses),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_stop_runs_queued_then_refuses),
        cmocka_unit_test(test_bad_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * workers.h - a fixed pool of threads with a bounded FIFO of jobs
 * (workers.c): where the HTTP side runs what may wait (a store's round
 * trip, a ledger query) or take long (tokenizing a prompt, compiling a
 * grammar), so that libmicrohttpd's own thread only moves bytes.
 *
 * Bounded: at most max_jobs wait for a thread; a submit past that is
 * refused at once (the caller sheds the request), so neither memory nor
 * the wait grows with the load. A job also waits max_wait seconds at most:
 * past that (every thread stuck on a frozen store) a janitor thread takes
 * it off the queue and calls its expired callback instead.
 */
#ifndef BC_WORKERS_H
#define BC_WORKERS_H

#include <stddef.h>

typedef struct srv_workers srv_workers;

/* Starts n_threads threads; at most max_jobs jobs wait, each max_wait
 * seconds at most. 0, or -1 with err. */
int srv_workers_start(srv_workers **out, int n_threads, int max_jobs, double max_wait, char *err, size_t err_size);
/* Queues fn(arg) for a thread: 0, or -1 when max_jobs already wait or the
 * pool is stopping (fn is then not called). A job still waiting after
 * max_wait gets expired(arg) instead, on the janitor thread (exactly one of
 * the two is called). Any thread. */
int srv_workers_submit(srv_workers *w, void (*fn)(void *arg), void (*expired)(void *arg), void *arg);
/* Jobs waiting for a thread (not those running). */
int srv_workers_waiting(srv_workers *w);
/* Refuses new jobs, runs every queued one and joins the threads; the pool
 * stays valid (a later submit is refused). Again: nothing. NULL is ignored. */
void srv_workers_stop(srv_workers *w);
/* Stops the pool (srv_workers_stop) and frees it. NULL is ignored. */
void srv_workers_free(srv_workers *w);

#endif /* BC_WORKERS_H */

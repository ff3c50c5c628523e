/*
 * health.c - the readiness probes' threads (health.h): one per store, so
 * that a store that hangs does not hide the state of another. What /readyz
 * reads is the state below, under a lock never held across a ping.
 */
#include "health.h"

#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct probe_state {
    struct srv_health *h;
    pthread_t thread;
    bool started_thread;
    srv_probe probe;
    bool ok;          /* the latest ping answered */
    double started;   /* srv_now() when the ping under way began; 0 when none */
    char reason[256]; /* why the latest ping failed */
} probe_state;

struct srv_health {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    int n;
    probe_state *probes; /* (n) */
};

static void *probe_main(void *arg) {
    probe_state *p = arg;
    srv_health *h = p->h;
    pthread_mutex_lock(&h->mu);
    while (!h->stopping) {
        p->started = srv_now();
        pthread_mutex_unlock(&h->mu);
        char err[256] = "";
        int rc = p->probe.ping(p->probe.ctx, err, sizeof err);
        pthread_mutex_lock(&h->mu);
        p->started = 0;
        p->ok = rc == 0;
        snprintf(p->reason, sizeof p->reason, "%s", rc == 0 ? "" : err[0] ? err : "no answer");
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(SRV_HEALTH_INTERVAL * 1e9);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (!h->stopping) pthread_cond_timedwait(&h->cv, &h->mu, &until);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int srv_health_start(srv_health **out, const srv_probe *probes, int n, char *err, size_t err_size) {
    *out = NULL;
    srv_health *h = calloc(1, sizeof *h);
    if (h == NULL || (n > 0 && (h->probes = calloc((size_t)n, sizeof *h->probes)) == NULL)) {
        free(h);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    h->n = n;
    for (int i = 0; i < n; i++) {
        h->probes[i].probe = probes[i];
        /* Not ready until the first ping answers. */
        snprintf(h->probes[i].reason, sizeof h->probes[i].reason, "not checked yet");
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    for (int i = 0; i < n; i++) {
        h->probes[i].h = h;
        if (pthread_create(&h->probes[i].thread, NULL, probe_main, &h->probes[i]) != 0) {
            snprintf(err, err_size, "cannot start the readiness thread of the %s", probes[i].name);
            srv_health_stop(h);
            return -1;
        }
        h->probes[i].started_thread = true;
    }
    *out = h;
    return 0;
}

bool srv_health_ready(srv_health *h, json_t *not_ready) {
    bool ready = true;
    double now = srv_now();
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->n; i++) {
        probe_state *p = &h->probes[i];
        char why[320];
        if (p->started > 0 && now - p->started > SRV_HEALTH_BOUND)
            snprintf(why, sizeof why, "no answer for %.1f s (bound %.1f s)", now - p->started, SRV_HEALTH_BOUND);
        else if (!p->ok)
            snprintf(why, sizeof why, "%s", p->reason);
        else
            continue;
        ready = false;
        json_object_set_new(not_ready, p->probe.name, json_string(why));
    }
    pthread_mutex_unlock(&h->mu);
    return ready;
}

void srv_health_stop(srv_health *h) {
    if (h == NULL) return;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    for (int i = 0; i < h->n; i++)
        if (h->probes[i].started_thread) pthread_join(h->probes[i].thread, NULL);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->probes);
    free(h);
}

/*
 * request.c - generation requests: their making and freeing (reference
 * counted), and the output buffer the engine and the ledger fill for the
 * HTTP thread (request.h).
 */
#include "request.h"

#include <microhttpd.h>

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

const char *srv_endpoint_path(srv_endpoint e) {
    return e == SRV_ENDPOINT_CHAT ? "/v1/chat/completions" : "/v1/completions";
}

srv_request *srv_request_new(void) {
    srv_request *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancelled, false);
    r->fd = -1;
    return r;
}

void srv_request_ref(srv_request *r) { atomic_fetch_add(&r->refs, 1); }

void srv_request_unref(srv_request *r) {
    if (r == NULL || atomic_fetch_sub(&r->refs, 1) != 1) return;
    for (int i = 0; r->choices != NULL && i < r->n_choices; i++) {
        srv_choice *c = &r->choices[i];
        free(c->ids);
        bc_generator_free(c->gen); /* before the grammar its matcher follows */
        srv_buf_free(&c->text);
        json_decref(c->lp_content);
        srv_tool_scan_free(&c->tools);
    }
    free(r->choices);
    srv_grammar_release(r->grammar);
    srv_adapter_release(r->adapter); /* after the choices: no sequence runs under it any more */
    free(r->prompt);
    srv_buf_free(&r->out);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void srv_request_publish(srv_request *r, const char *p, size_t n, bool final) {
    pthread_mutex_lock(&r->mu);
    if (n > 0 && srv_buf_append(&r->out, p, n) != 0) atomic_store(&r->cancelled, true);
    if (final) r->done = true;
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
    pthread_mutex_unlock(&r->mu);
}

bool srv_request_check_gone(srv_request *r) {
    bool gone = false;
    pthread_mutex_lock(&r->mu);
    if (r->suspended && r->fd >= 0) {
        char c;
        ssize_t k = recv(r->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            gone = true;
            atomic_store(&r->cancelled, true);
            r->suspended = false;
            MHD_resume_connection(r->conn);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return gone;
}

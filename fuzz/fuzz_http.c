/*
 * fuzz_http.c - libFuzzer target for the server's HTTP request handling:
 * the real server (libmicrohttpd, server/http.c's routing, authentication,
 * limits and endpoints, the OpenAI parser, the scheduler and the engine
 * thread) runs in this process on a loopback port, and each input is the
 * raw bytes one client sends on one connection: request line, headers,
 * body, possibly several pipelined requests. The client then closes its
 * sending side and reads until the server closes the connection.
 *
 * The server holds the model tests/data/tiny.gguf with tokenizer
 * tests/data/tiny_bpe.model, two slots of 64 positions, a 4 KiB body limit
 * and two tenants: "open" (key sk-fuzz-open, no limits) and "tight" (key
 * sk-fuzz-tight, 1 request per minute and 8 tokens per day, so the 429
 * paths run too). The seeds in fuzz/seeds/fuzz_http/ carry those keys.
 *
 * Findings: a crash or sanitizer report anywhere in the server; a reply
 * that does not start with an HTTP status line; a connection the server
 * keeps open for 10 s after the client's last byte (a hang).
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_http CORPUS_DIR fuzz/seeds/fuzz_http
 */
#include "fuzz_files.h"
#include "server.h"
#include "tenants.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#ifndef BC_SOURCE_DIR
#define BC_SOURCE_DIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HANG_MS 10000

static struct {
    bc_model *model;
    bc_tokenizer *tok;
    bc_context *ctx;
    srv_tenant_store *tenants;
    srv_server *server;
    char tenants_path[128];
    int port;
} S;

/* Where fail() writes: a copy of stderr taken before libFuzzer's
 * -close_fd_mask closes it (LLVMFuzzerInitialize runs first), so the
 * reason for an abort always reaches the log. */
static int msg_fd = 2;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    int fd = dup(2);
    if (fd >= 0) msg_fd = fd;
    return 0;
}

static void fail(const char *what, const char *err) {
    dprintf(msg_fd, "fuzz_http: %s: %s\n", what, err);
    abort();
}

static void stop_server(void) {
    srv_server_cancel_all(S.server);
    srv_server_stop(S.server);
    S.tenants->ops->close(S.tenants);
    bc_context_free(S.ctx);
    bc_tokenizer_free(S.tok);
    bc_model_free(S.model);
    unlink(S.tenants_path);
}

static void start_server(void) {
    static const char tenants[] =
        "{\"tenants\": [{\"name\": \"open\", \"keys\": [\"sk-fuzz-open\"]},"
        " {\"name\": \"tight\", \"keys\": [\"sk-fuzz-tight\"], \"requests_per_minute\": 1, \"tokens_per_day\": 8}]}";
    char err[1024];
    signal(SIGPIPE, SIG_IGN);
    fuzz_path(S.tenants_path, sizeof S.tenants_path, "tenants.json");
    if (fuzz_write(S.tenants_path, tenants, sizeof tenants - 1) != 0) fail(S.tenants_path, "cannot write");
    if (srv_tenant_store_json_open(&S.tenants, S.tenants_path, true, err, sizeof err) != 0) fail("tenants", err);
    if (bc_model_load(BC_SOURCE_DIR "/tests/data/tiny.gguf", bc_model_default_params(), &S.model, err, sizeof err) !=
            BC_STATUS_OK ||
        bc_tokenizer_load(BC_SOURCE_DIR "/tests/data/tiny_bpe.model", &S.tok, err, sizeof err) != BC_STATUS_OK)
        fail("model", err);
    const srv_config cfg = {.host = "127.0.0.1",
                            .port = 0,
                            .n_parallel = 2,
                            .n_ctx = 64,
                            .n_batch = 32,
                            .n_threads = 1,
                            .max_queue = 4,
                            .max_body = 4096,
                            .max_messages = 16,
                            .shutdown_wait = 1,
                            .model_name = "tiny"};
    bc_context_params cp = bc_context_default_params();
    cp.n_ctx = cfg.n_ctx;
    cp.n_seq = cfg.n_parallel;
    cp.n_kv = 96; /* less than 2 x 64: the preemption paths run too */
    cp.n_batch = cfg.n_batch;
    cp.n_threads = cfg.n_threads;
    if (bc_context_init(S.model, cp, &S.ctx, err, sizeof err) != BC_STATUS_OK) fail("context", err);
    if (srv_server_start(&S.server, &cfg, S.model, S.tok, S.ctx, S.tenants, err, sizeof err) != 0) fail("server", err);
    S.port = srv_server_port(S.server);
    atexit(stop_server);
}

/* Sends what it can (the server may answer and close before reading all). */
static void send_all(int fd, const uint8_t *data, size_t size) {
    while (size > 0) {
        ssize_t k = send(fd, data, size, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return;
        data += k;
        size -= (size_t)k;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (S.server == NULL) start_server();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("socket", strerror(errno));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        /* libFuzzer's timer signal can interrupt a blocking connect, which
         * then goes on in the background: wait for it and take its result. */
        if (errno != EINTR) fail("connect", strerror(errno));
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int k;
        while ((k = poll(&p, 1, HANG_MS)) < 0 && errno == EINTR) {
        }
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (k == 0) fail("connect", "no connection after 10 s");
        if (k < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0 || so_error != 0)
            fail("connect", strerror(k < 0 ? errno : so_error));
    }
    send_all(fd, data, size);
    shutdown(fd, SHUT_WR);

    /* Read until the server closes; the first bytes must be a status line. */
    char head[8];
    size_t n_head = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int k = poll(&p, 1, HANG_MS);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) fail("hang", "the server kept the connection open 10 s after the client's last byte");
        if (k < 0) fail("poll", strerror(errno));
        char buf[4096];
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break; /* closed (or reset: the server may drop a bad client) */
        for (ssize_t i = 0; i < got && n_head < sizeof head; i++) head[n_head++] = buf[i];
    }
    close(fd);
    if (n_head > 0 && (n_head < 7 || memcmp(head, "HTTP/1.", 7) != 0)) {
        char msg[96];
        snprintf(msg, sizeof msg, "the reply's first %zu bytes are not an HTTP status line", n_head);
        fail("reply", msg);
    }
    return 0;
}

/*
 * util.h - byte buffers, clocks and JSON helpers shared by the server's
 * files (util.c). Nothing here knows a request, a tenant or a thread.
 */
#ifndef BC_SERVER_UTIL_H
#define BC_SERVER_UTIL_H

#include <jansson.h>
#include <stddef.h>

/* A growable byte buffer, always NUL-terminated when data != NULL. */
typedef struct srv_buf {
    char *data;
    size_t len, cap;
} srv_buf;

int srv_buf_append(srv_buf *b, const void *p, size_t n); /* 0, or -1 out of memory */
int srv_buf_puts(srv_buf *b, const char *s);
int srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_buf_free(srv_buf *b);

/* Monotonic seconds, and wall-clock seconds since the epoch. */
double srv_now(void);
double srv_wall(void);
/* t (wall-clock seconds) as ISO 8601 UTC with milliseconds: 2024-05-01T12:00:00.000Z */
void srv_iso_time(double t, char *out, size_t cap);

/* The compact UTF-8 JSON text of v (malloc'd; NULL out of memory). */
char *srv_json_dump(const json_t *v);

/* {"error": {"message", "type", "param", "code"}} (param and code may be NULL). */
json_t *srv_error_json(const char *message, const char *type, const char *param, const char *code);

#endif /* BC_SERVER_UTIL_H */

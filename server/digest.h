/*
 * digest.h - SHA-256 of keys (digest.c, OpenSSL's EVP): the tenant stores
 * keep and compare only digests.
 */
#ifndef BC_SERVER_DIGEST_H
#define BC_SERVER_DIGEST_H

#include <stddef.h>

/* The lowercase hex SHA-256 of key (len bytes), in out[65]. 0, or -1. */
int srv_sha256_hex(const char *key, size_t len, char out[65]);

#endif /* BC_SERVER_DIGEST_H */

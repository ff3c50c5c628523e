/*
 * digest.c - SHA-256 of keys, through OpenSSL's EVP interface (libcrypto).
 */
#include "digest.h"

#include <openssl/evp.h>
#include <stdio.h>

int srv_sha256_hex(const char *key, size_t len, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (EVP_Digest(key, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32) return -1;
    for (unsigned int i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/*
 * tenants.h - the tenant store in a JSON file (tenants.c): its tenants as
 * the server reads them, key lookup by digest, and the limits counted in
 * this process.
 */
#ifndef BC_TENANTS_H
#define BC_TENANTS_H

#include "store.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* The tenants of a JSON file, as the server reads it. */
typedef struct srv_tenants {
    srv_tenant *tenants;
    size_t n;
    pthread_mutex_t mu;
} srv_tenants;

/* Reads a tenants file; on failure writes "FILE: field: problem" to err. */
int srv_tenants_load(srv_tenants *t, const char *path, char *err, size_t err_size);
void srv_tenants_free(srv_tenants *t);
/* The digest (64 hex) of a tenants file's key entry: the key itself, or
 * "sha256:" and its digest. 0, or -1 when entry is neither. */
int srv_tenants_key_digest(const char *entry, size_t len, char out[65]);
/* The tenant that owns key (its digest compared in constant time), or NULL. */
srv_tenant *srv_tenants_find(srv_tenants *t, const char *key);
/* Admits one request of tenant now: 0, or the seconds to wait (> 0) and the
 * limit that refused it in *which ("requests_per_minute"/"tokens_per_day"). */
long srv_tenants_admit(srv_tenants *t, srv_tenant *tenant, const char **which);
/* Counts tokens against tenant's daily quota. */
void srv_tenants_charge(srv_tenants *t, srv_tenant *tenant, long long tokens);

/* Opens the JSON file at path as a tenant store (see srv_tenant_store_open). */
int srv_tenant_store_json_open(srv_tenant_store **out, const char *path, bool for_server, char *err, size_t err_size);

#endif /* BC_TENANTS_H */

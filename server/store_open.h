/*
 * store_open.h - opening the back-end a STORE argument names (store_open.c):
 * one that starts with postgresql:// or postgres:// names a PostgreSQL
 * database (a libpq URL); anything else is a file path (SQLite for the
 * ledger, JSON for the tenants).
 */
#ifndef BC_STORE_OPEN_H
#define BC_STORE_OPEN_H

#include "store.h"

#include <stdbool.h>
#include <stddef.h>

/* True when store names a PostgreSQL database. */
bool srv_store_is_pg(const char *store);

/* Opens the ledger at store; with create, makes the file and its table if
 * needed (without, a reader such as `baichuan usage` changes nothing). */
int srv_ledger_backend_open(srv_ledger_backend **out, const char *store, bool create, char *err, size_t err_size);

/* Opens the tenant store at store. for_server: load what the server needs
 * (the JSON file must then be valid and hold a tenant); otherwise an
 * absent JSON file is an empty store the administrator may write. */
int srv_tenant_store_open(srv_tenant_store **out, const char *store, bool for_server, char *err, size_t err_size);

#endif /* BC_STORE_OPEN_H */

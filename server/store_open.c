/*
 * store_open.c - which back-end a STORE argument names (store_open.h).
 */
#include "store_open.h"

#include "ledger_pg.h"
#include "ledger_sqlite.h"
#include "tenants.h"
#include "tenants_pg.h"

#include <string.h>

bool srv_store_is_pg(const char *store) {
    return strncmp(store, "postgresql://", 13) == 0 || strncmp(store, "postgres://", 11) == 0;
}

int srv_ledger_backend_open(srv_ledger_backend **out, const char *store, bool create, char *err, size_t err_size) {
    if (srv_store_is_pg(store)) return srv_ledger_pg_open(out, store, create, err, err_size);
    return srv_ledger_sqlite_open(out, store, create, err, err_size);
}

int srv_tenant_store_open(srv_tenant_store **out, const char *store, bool for_server, char *err, size_t err_size) {
    if (srv_store_is_pg(store)) return srv_tenant_store_pg_open(out, store, for_server, err, err_size);
    return srv_tenant_store_json_open(out, store, for_server, err, err_size);
}

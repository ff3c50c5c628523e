/*
 * tenants_pg.h - the tenant store in a PostgreSQL database (tenants_pg.c).
 */
#ifndef BC_TENANTS_PG_H
#define BC_TENANTS_PG_H

#include "store.h"

/* Opens the PostgreSQL tenant store at url (see srv_tenant_store_open);
 * for_server also starts its quota thread. */
int srv_tenant_store_pg_open(srv_tenant_store **out, const char *url, bool for_server, char *err, size_t err_size);

#endif /* BC_TENANTS_PG_H */

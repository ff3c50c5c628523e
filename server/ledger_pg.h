/*
 * ledger_pg.h - the ledger back-end in a PostgreSQL database (ledger_pg.c).
 */
#ifndef BC_LEDGER_PG_H
#define BC_LEDGER_PG_H

#include "store.h"

/* Opens the PostgreSQL ledger at url (see srv_ledger_backend_open). */
int srv_ledger_pg_open(srv_ledger_backend **out, const char *url, bool create, char *err, size_t err_size);

#endif /* BC_LEDGER_PG_H */

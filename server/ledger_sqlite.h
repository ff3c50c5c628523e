/*
 * ledger_sqlite.h - the ledger back-end in a SQLite file (ledger_sqlite.c).
 */
#ifndef BC_LEDGER_SQLITE_H
#define BC_LEDGER_SQLITE_H

#include "store.h"

/* Opens the SQLite ledger at path (see srv_ledger_backend_open). */
int srv_ledger_sqlite_open(srv_ledger_backend **out, const char *path, bool create, char *err, size_t err_size);

#endif /* BC_LEDGER_SQLITE_H */

/*
 * usage.c - `baichuan usage`: totals per tenant from a server's ledger.
 */
#include "../cli/cli.h"
#include "server.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "usage: baichuan usage --ledger FILE [--since DATE] [--json]\n"
                           "\n"
                           "Prints, per tenant, the generation requests recorded in a `baichuan serve`\n"
                           "ledger and their prompt and completion tokens.\n"
                           "\n"
                           "options:\n"
                           "      --ledger FILE   the SQLite ledger written by serve --ledger\n"
                           "      --since DATE    only requests that ended at or after DATE (UTC), as\n"
                           "                      YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS\n"
                           "      --json          one JSON object instead of a table\n";

/* YYYY-MM-DD[THH:MM[:SS]]: the digits and separators in their places. */
static bool valid_date(const char *s) {
    const char *shape = "dddd-dd-ddTdd:dd:dd";
    size_t n = strlen(s);
    if (n != 10 && n != 16 && n != 19) return false;
    for (size_t i = 0; i < n; i++) {
        char want = shape[i];
        if (want == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != want) return false;
    }
    return true;
}

int cmd_usage(int argc, char **argv) {
    const char *path = NULL, *since = NULL;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(help, stdout);
            return 0;
        } else if (strcmp(a, "--ledger") == 0) {
            if ((path = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--since") == 0) {
            if ((since = cli_value(argc, argv, &i)) == NULL) return 1;
            if (!valid_date(since))
                return cli_error("--since: '%s' is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)", since);
        } else if (strcmp(a, "--json") == 0) {
            as_json = true;
        } else {
            return cli_error("usage: unknown option '%s' (see 'baichuan usage --help')", a);
        }
    }
    if (path == NULL) return cli_error("usage: --ledger FILE is required");

    int rc = 1;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    json_t *out = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        cli_error("%s: cannot open the ledger: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        goto cleanup;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db,
                           "SELECT COALESCE(tenant, ''), COUNT(*), SUM(status = 200), SUM(prompt_tokens),"
                           " SUM(completion_tokens) FROM requests WHERE time >= ? GROUP BY 1 ORDER BY 1",
                           -1, &st, NULL) != SQLITE_OK) {
        cli_error("%s: not a ledger (table 'requests'): %s", path, sqlite3_errmsg(db));
        goto cleanup;
    }
    sqlite3_bind_text(st, 1, since ? since : "", -1, SQLITE_STATIC);
    out = json_array();
    if (!as_json)
        printf("%-24s %10s %10s %14s %14s %14s\n", "tenant", "requests", "ok", "prompt_tok", "completion_tok",
               "total_tok");
    long long tot[5] = {0};
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *tenant = (const char *)sqlite3_column_text(st, 0);
        long long v[4];
        for (int k = 0; k < 4; k++) v[k] = sqlite3_column_int64(st, k + 1);
        for (int k = 0; k < 4; k++) tot[k] += v[k];
        if (as_json)
            json_array_append_new(out, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "tenant", tenant, "requests",
                                                 (json_int_t)v[0], "succeeded", (json_int_t)v[1], "prompt_tokens",
                                                 (json_int_t)v[2], "completion_tokens", (json_int_t)v[3],
                                                 "total_tokens", (json_int_t)(v[2] + v[3])));
        else
            printf("%-24s %10lld %10lld %14lld %14lld %14lld\n", tenant[0] ? tenant : "(none)", v[0], v[1], v[2], v[3],
                   v[2] + v[3]);
    }
    if (step != SQLITE_DONE) {
        cli_error("%s: reading the ledger failed: %s", path, sqlite3_errmsg(db));
        goto cleanup;
    }
    if (as_json) {
        json_t *doc = json_pack("{s:s?, s:o}", "since", since, "tenants", out);
        out = NULL;
        char *s = json_dumps(doc, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(doc);
    } else {
        printf("%-24s %10lld %10lld %14lld %14lld %14lld\n", "total", tot[0], tot[1], tot[2], tot[3], tot[2] + tot[3]);
    }
    rc = 0;
cleanup:
    json_decref(out);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

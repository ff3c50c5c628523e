/*
 * cmd_usage.c - `baichuan usage`: totals per tenant from a server's ledger,
 * read through the ledger back-end interface (server/store.h).
 */
#include "cli.h"

#include "../server/store.h"
#include "../server/store_open.h"

#include <jansson.h>
#include <stdbool.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "usage: baichuan usage --ledger STORE [--since DATE] [--by-adapter] [--adapter NAME]\n"
                           "                      [--json]\n"
                           "\n"
                           "Prints, per tenant, the generation requests recorded in a `baichuan serve`\n"
                           "ledger and their prompt and completion tokens.\n"
                           "\n"
                           "options:\n"
                           "      --ledger STORE  the ledger written by serve --ledger: a SQLite file\n"
                           "                      or a postgresql:// URL\n"
                           "      --since DATE    only requests that ended at or after DATE (UTC), as\n"
                           "                      YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS\n"
                           "      --by-adapter    one line per tenant and LoRA adapter ('-' the base model)\n"
                           "      --adapter NAME  only requests under adapter NAME ('' the base model's)\n"
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
    const char *path = NULL, *since = NULL, *adapter = NULL;
    bool as_json = false, by_adapter = false;
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
        } else if (strcmp(a, "--adapter") == 0) {
            if ((adapter = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--by-adapter") == 0) {
            by_adapter = true;
        } else if (strcmp(a, "--json") == 0) {
            as_json = true;
        } else {
            return cli_error("usage: unknown option '%s' (see 'baichuan usage --help')", a);
        }
    }
    if (path == NULL) return cli_error("usage: --ledger STORE is required");

    int rc = 1;
    char err[1024];
    srv_ledger_backend *ledger = NULL;
    json_t *rows = NULL;
    if (srv_ledger_backend_open(&ledger, path, false, err, sizeof err) != 0 ||
        ledger->ops->totals(ledger, since ? since : "", &rows, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto cleanup;
    }
    if (!as_json)
        printf("%-24s %s%10s %10s %14s %14s %14s\n", "tenant", by_adapter ? "adapter                          " : "",
               "requests", "ok", "prompt_tok", "completion_tok", "total_tok");
    long long tot[4] = {0};
    json_t *out = json_array();
    /* The ledger's rows are per tenant and adapter, in tenant order: without
     * --by-adapter one tenant's rows add up into one line. */
    size_t n_rows = json_array_size(rows);
    for (size_t i = 0; i < n_rows;) {
        const char *tenant = json_string_value(json_object_get(json_array_get(rows, i), "tenant"));
        const char *row_adapter = json_string_value(json_object_get(json_array_get(rows, i), "adapter"));
        static const char *const fields[4] = {"requests", "succeeded", "prompt_tokens", "completion_tokens"};
        long long v[4] = {0};
        bool any = false;
        for (; i < n_rows; i++) {
            json_t *row = json_array_get(rows, i);
            const char *t = json_string_value(json_object_get(row, "tenant"));
            const char *ad = json_string_value(json_object_get(row, "adapter"));
            if (strcmp(t, tenant) != 0 || (by_adapter && strcmp(ad, row_adapter) != 0)) break;
            if (adapter != NULL && strcmp(ad, adapter) != 0) continue;
            any = true;
            for (int k = 0; k < 4; k++) {
                long long x = json_integer_value(json_object_get(row, fields[k]));
                v[k] += x;
                tot[k] += x;
            }
        }
        if (!any) continue;
        if (as_json) {
            json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "tenant", tenant, "requests", (json_int_t)v[0],
                                  "succeeded", (json_int_t)v[1], "prompt_tokens", (json_int_t)v[2], "completion_tokens",
                                  (json_int_t)v[3], "total_tokens", (json_int_t)(v[2] + v[3]));
            if (by_adapter) json_object_set_new(o, "adapter", json_string(row_adapter));
            json_array_append_new(out, o);
        } else if (by_adapter) {
            printf("%-24s %-32s %10lld %10lld %14lld %14lld %14lld\n", tenant[0] ? tenant : "(none)",
                   row_adapter[0] ? row_adapter : "-", v[0], v[1], v[2], v[3], v[2] + v[3]);
        } else {
            printf("%-24s %10lld %10lld %14lld %14lld %14lld\n", tenant[0] ? tenant : "(none)", v[0], v[1], v[2], v[3],
                   v[2] + v[3]);
        }
    }
    if (as_json) {
        json_t *doc = json_pack("{s:s?, s:s?, s:o}", "since", since, "adapter", adapter, "tenants", out);
        char *s = json_dumps(doc, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(doc);
    } else {
        json_decref(out);
        printf("%-24s %s%10lld %10lld %14lld %14lld %14lld\n", "total",
               by_adapter ? "                                 " : "", tot[0], tot[1], tot[2], tot[3], tot[2] + tot[3]);
    }
    rc = 0;
cleanup:
    json_decref(rows);
    if (ledger != NULL) ledger->ops->close(ledger);
    return rc;
}

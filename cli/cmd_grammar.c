/*
 * cmd_grammar.c - baichuan grammar: a JSON Schema's GBNF, and whether a text
 * on stdin matches a grammar (no model needed).
 */
#include "cli.h"

#include "../server/tools.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: baichuan grammar (--json-schema FILE | --grammar-file FILE | --json | --tools FILE [--tool-choice C])\n"
    "                        [--print] [--match]\n"
    "\n"
    "Compiles a grammar: a JSON Schema (converted to GBNF), a GBNF file, or any\n"
    "JSON object (--json, what response_format json_object asks for).\n"
    "\n"
    "options:\n"
    "      --json-schema FILE   a JSON Schema (the subset baichuan.h lists)\n"
    "      --grammar-file FILE  a grammar in GBNF (llama.cpp's notation, start rule root)\n"
    "      --json               any JSON object\n"
    "      --tools FILE         a JSON array of tools: the grammar of a reply under tool_choice C\n"
    "                           (auto, the default: calls or text; required: calls), as the server\n"
    "                           makes it\n"
    "      --print              write the grammar's GBNF to stdout\n"
    "      --match              read a text from stdin and print whether the grammar matches it:\n"
    "                           'complete' (a whole match, exit 0), 'prefix' (the start of one,\n"
    "                           exit 0) or 'no' (exit 1)\n"
    "\n"
    "--print alone only converts; --match (or neither option) also compiles the\n"
    "grammar. Errors go to stderr naming the file; the exit status is then 1.\n";

int cmd_grammar(int argc, char **argv) {
    const char *schema_path = NULL, *gbnf_path = NULL, *tools_path = NULL, *tool_choice = "auto";
    int any_object = 0, print = 0, match = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(help, stdout);
            return 0;
        } else if (strcmp(a, "--json-schema") == 0) {
            if ((schema_path = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--grammar-file") == 0) {
            if ((gbnf_path = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--tools") == 0) {
            if ((tools_path = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--tool-choice") == 0) {
            if ((tool_choice = cli_value(argc, argv, &i)) == NULL) return 1;
            if (strcmp(tool_choice, "auto") != 0 && strcmp(tool_choice, "required") != 0)
                return cli_error("grammar: --tool-choice takes auto or required, not '%s'", tool_choice);
        } else if (strcmp(a, "--json") == 0) {
            any_object = 1;
        } else if (strcmp(a, "--print") == 0) {
            print = 1;
        } else if (strcmp(a, "--match") == 0) {
            match = 1;
        } else
            return cli_error("grammar: unknown option '%s' (see 'baichuan grammar --help')", a);
    }
    if ((schema_path != NULL) + (gbnf_path != NULL) + (tools_path != NULL) + any_object != 1)
        return cli_error("grammar: give one of --json-schema FILE, --grammar-file FILE, --tools FILE or --json");

    char err[1024] = "";
    char *gbnf = NULL;
    size_t gbnf_len = 0;
    const char *source = schema_path ? schema_path : gbnf_path ? gbnf_path : tools_path ? tools_path : "--json";
    if (tools_path != NULL) {
        json_error_t je;
        json_t *arr = json_load_file(tools_path, 0, &je);
        if (arr == NULL) return cli_error("%s: line %d column %d: %s", tools_path, je.line, je.column, je.text);
        srv_tools tools;
        int rc = srv_tools_from_array(arr, &tools, err, sizeof err);
        json_decref(arr);
        if (rc == 0 && strcmp(tool_choice, "required") == 0) tools.choice = SRV_TOOL_CHOICE_REQUIRED;
        if (rc == 0) gbnf = srv_tools_gbnf(&tools, err, sizeof err);
        srv_tools_free(&tools);
        if (gbnf == NULL) return cli_error("%s: %s", tools_path, err);
        gbnf_len = strlen(gbnf);
    } else if (gbnf_path != NULL) {
        if ((gbnf = cli_read_file(gbnf_path, &gbnf_len)) == NULL) return 1;
    } else {
        size_t len = 0;
        char *schema = NULL;
        if (schema_path != NULL && (schema = cli_read_file(schema_path, &len)) == NULL) return 1;
        /* An empty file is not "no schema": only --json is any object. */
        bc_status st = bc_json_schema_to_gbnf(schema ? schema : "", schema ? len : 0, &gbnf, err, sizeof err);
        if (schema != NULL && len == 0 && st == BC_STATUS_OK) {
            free(gbnf);
            gbnf = NULL;
            snprintf(err, sizeof err, "the file is empty");
            st = BC_STATUS_ERROR_ARGUMENT;
        }
        free(schema);
        if (st != BC_STATUS_OK) return cli_error("%s: %s", source, err);
        gbnf_len = strlen(gbnf);
    }
    if (print) fwrite(gbnf, 1, gbnf_len, stdout);
    if (print && !match) {
        free(gbnf);
        return 0;
    }

    bc_grammar *g = NULL;
    bc_status st = bc_grammar_init_gbnf(NULL, gbnf, gbnf_len, &g, err, sizeof err);
    free(gbnf);
    if (st != BC_STATUS_OK) return cli_error("%s: %s", source, err);
    int rc = 0;
    if (match) {
        size_t len = 0;
        char *text = cli_read_stream(stdin, "stdin", &len);
        if (text == NULL) {
            bc_grammar_free(g);
            return 1;
        }
        bool prefix = false, complete = false;
        bc_grammar_match(g, text, len, &prefix, &complete);
        free(text);
        puts(complete ? "complete" : prefix ? "prefix" : "no");
        rc = complete || prefix ? 0 : 1;
    }
    bc_grammar_free(g);
    return rc;
}

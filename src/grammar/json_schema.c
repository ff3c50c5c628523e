/* json_schema.c - placeholder while the JSON Schema converter is written. */
#include "baichuan.h"

#include <stdio.h>

bc_status bc_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, char *err, size_t err_size) {
    (void)schema, (void)len;
    *gbnf = NULL;
    snprintf(err, err_size, "grammars are not implemented yet");
    return BC_STATUS_ERROR_ARGUMENT;
}

/*
 * json_schema_regex.h - a string keyword's pattern (an ECMA 262 subset) as
 * GBNF (json_schema_regex.c).
 */
#ifndef BC_JSON_SCHEMA_REGEX_H
#define BC_JSON_SCHEMA_REGEX_H

#include "grammar/json_schema_gbnf.h"

/* Appends the rule of the JSON strings whose text pattern[0, len) finds (a
 * search: unanchored ends allow any characters beyond them). */
BC__HIDDEN void bc__js_pattern(js_conv *c, const char *pattern, size_t len, js_buf *out);

#endif /* BC_JSON_SCHEMA_REGEX_H */

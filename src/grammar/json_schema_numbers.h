/*
 * json_schema_numbers.h - integers and numbers between bounds, as GBNF
 * (json_schema_numbers.c).
 */
#ifndef BC_JSON_SCHEMA_NUMBERS_H
#define BC_JSON_SCHEMA_NUMBERS_H

#include "grammar/json_schema_gbnf.h"

/* Appends the rule of the integers (integer != 0) or numbers that schema s
 * allows: minimum, maximum, exclusiveMinimum, exclusiveMaximum. */
BC__HIDDEN void bc__js_number(js_conv *c, const json_t *s, int integer, js_buf *out);

#endif /* BC_JSON_SCHEMA_NUMBERS_H */

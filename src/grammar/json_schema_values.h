/*
 * json_schema_values.h - JSON values in the converter (json_schema_values.c):
 * the type keyword as a set of types, and enum/const as the texts of their
 * values.
 */
#ifndef BC_JSON_SCHEMA_VALUES_H
#define BC_JSON_SCHEMA_VALUES_H

#include "grammar/json_schema_gbnf.h"

/* The JSON types, as bits of a set in the order the converter writes their
 * alternatives. */
enum { T_NULL = 1, T_BOOLEAN = 2, T_OBJECT = 4, T_ARRAY = 8, T_NUMBER = 16, T_INTEGER = 32, T_STRING = 64 };

/* The type keyword of s as a set of T_ bits (all of them when absent; an
 * integer is a number); 0 with an error for an unknown type. */
BC__HIDDEN int bc__js_type_mask(js_conv *c, const json_t *s);

/* Appends the rule of the values that s's enum (or const) lists, kept to
 * those of its type when s has one. */
BC__HIDDEN void bc__js_enum(js_conv *c, const json_t *s, js_buf *out);

#endif /* BC_JSON_SCHEMA_VALUES_H */

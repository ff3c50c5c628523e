/*
 * gbnf.h - the GBNF parser and compiler (gbnf.c): text to the compiled form
 * of grammar.h.
 */
#ifndef BC_GBNF_H
#define BC_GBNF_H

#include "grammar/grammar.h"

/* Parses and compiles GBNF into g (zeroed by the caller): elems, rules,
 * bytesets, root. err names the line, column and rule. */
BC__HIDDEN int bc__gbnf_compile(bc_grammar *g, const char *text, size_t len, bc__err *err);

/* Frees what bc__gbnf_compile filled in. */
BC__HIDDEN void bc__gbnf_free(bc_grammar *g);

#endif /* BC_GBNF_H */

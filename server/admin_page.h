/*
 * admin_page.h - the operator's usage page, web/admin.html, served at GET
 * /admin: embedded as web_page.h's page is, into admin_page.c in the build
 * tree.
 */
#ifndef BC_ADMIN_PAGE_H
#define BC_ADMIN_PAGE_H

#include <stddef.h>

extern const char srv_admin_page[];
extern const size_t srv_admin_page_len;

#endif /* BC_ADMIN_PAGE_H */

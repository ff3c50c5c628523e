/*
 * web_page.h - the web chat page, web/index.html, served at GET /: its
 * bytes are a C array in web_page.c, which the build writes into the build
 * tree (server/embed.cmake), so the binary serves the page without reading
 * a file.
 */
#ifndef BC_WEB_PAGE_H
#define BC_WEB_PAGE_H

#include <stddef.h>

extern const char srv_web_page[];
extern const size_t srv_web_page_len;

#endif /* BC_WEB_PAGE_H */

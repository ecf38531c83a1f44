/*
 * dashboard.h: the live dashboard served at "/", one HTML page with its CSS
 * and JavaScript inline, built into the binary from src/http/dashboard.html
 * (cmake/embed.cmake). It reads the JSON API: nothing comes from elsewhere.
 */
#ifndef OCRPOOL_HTTP_DASHBOARD_H
#define OCRPOOL_HTTP_DASHBOARD_H

#include <stddef.h>

extern const unsigned char op_dashboard_html[];
extern const size_t op_dashboard_html_len;

#endif

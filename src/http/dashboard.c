/*
 * dashboard.c: GET /, the live dashboard: one page built into the binary
 * (dashboard.h), served as it is; the browser reads the JSON API from there.
 */
#include "http/dashboard.h"
#include "http/http_internal.h"

enum MHD_Result op__dashboard_get(op__req_t *q) {
  return op__send_body(q, 200, "text/html; charset=utf-8", (const char *)op_dashboard_html, op_dashboard_html_len,
                       "Cache-Control", "no-cache");
}

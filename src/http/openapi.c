/*
 * openapi.c: the OpenAPI 3 document of the HTTP API, built from the route
 * table (routes.c) that dispatch reads too, so it lists exactly the routes the
 * server answers (tests/test_server.sh checks the list).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "http/http_internal.h"

static const char *const params[] = {"format", "lang", "psm", "dpi", "pages", "priority", "rotate_pages"};

json_t *op_http_openapi(void) {
  json_t *paths = json_object();
  for (size_t i = 0; i < op__routes_len; i++) {
    const op__route_t *r = &op__routes[i];
    json_t *item = json_object_get(paths, r->path);
    if (item == NULL) {
      item = json_object();
      json_object_set_new(paths, r->path, item);
    }
    json_t *responses = json_object();
    char codes[64];
    snprintf(codes, sizeof codes, "%s", r->codes);
    for (char *save = NULL, *code = strtok_r(codes, " ", &save); code; code = strtok_r(NULL, " ", &save))
      json_object_set_new(responses, code, json_pack("{s:s}", "description", code[0] == '2' ? "success" : "problem"));
    json_t *op = json_pack("{s:s, s:o}", "summary", r->summary, "responses", responses);
    json_t *parameters = json_array();
    const char *var = strstr(r->path, "{id}") ? "id" : strstr(r->path, "{name}") ? "name" : NULL;
    if (var != NULL)
      json_array_append_new(parameters, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", var, "in", "path", "required", 1,
                                                  "schema", "type", "string"));
    if (r->flags & OP__ROUTE_UPLOAD) {
      for (size_t k = 0; k < sizeof params / sizeof params[0]; k++)
        json_array_append_new(
            parameters, json_pack("{s:s, s:s, s:{s:s}}", "name", params[k], "in", "query", "schema", "type", "string"));
      json_object_set_new(op, "requestBody",
                          json_pack("{s:b, s:{s:{}, s:{}}}", "required", 1, "content", "application/octet-stream",
                                    "multipart/form-data"));
    }
    json_object_set_new(op, "parameters", parameters);
    char method[16]; /* OpenAPI names operations in lower case */
    size_t k = 0;
    for (; r->method[k] != '\0' && k + 1 < sizeof method; k++)
      method[k] = (char)tolower((unsigned char)r->method[k]);
    method[k] = '\0';
    json_object_set_new(item, method, op);
  }
  return json_pack("{s:s, s:{s:s, s:s}, s:o}", "openapi", "3.0.3", "info", "title", "ocrpool", "version",
                   OCRPOOL_VERSION, "paths", paths);
}

enum MHD_Result op__openapi_get(op__req_t *q) {
  return op__send_json(q, 200, op_http_openapi(), NULL, NULL);
}

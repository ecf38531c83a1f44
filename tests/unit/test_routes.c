/* test_routes.c: matching methods and paths against the HTTP route table. */
#include <string.h>

#include "check.h"
#include "http/http_internal.h"

static op__req_t q;

static const char *route_path(const char *method, const char *url) {
  op__route_match(&q, method, url);
  return q.route ? q.route->path : NULL;
}

int main(void) {
  CHECK_STR_EQ(route_path("GET", "/v1/tasks/abc123"), "/v1/tasks/{id}");
  CHECK_STR_EQ(q.capture, "abc123");
  CHECK(q.route->handler == op__task_get);
  CHECK(route_path("DELETE", "/v1/tasks/abc123") != NULL && q.route->handler == op__task_cancel);
  CHECK_STR_EQ(route_path("GET", "/v1/tasks/abc/result"), "/v1/tasks/{id}/result");
  CHECK_STR_EQ(q.capture, "abc");
  /* A literal segment beats a capture. */
  CHECK_STR_EQ(route_path("GET", "/v1/tasks/metrics"), "/v1/tasks/metrics");
  CHECK(route_path("DELETE", "/v1/tasks/metrics") == NULL && strcmp(q.path, "/v1/tasks/metrics") == 0);
  CHECK_STR_EQ(route_path("POST", "/v1/models/fast/unload"), "/v1/models/{name}/unload");
  CHECK_STR_EQ(q.capture, "fast");
  CHECK(route_path("POST", "/v1/tasks") != NULL && (q.route->flags & OP__ROUTE_UPLOAD));
  CHECK(route_path("GET", "/v1/tasks") != NULL && !(q.route->flags & OP__ROUTE_UPLOAD));
  /* The health listener answers exactly these three, and no upload. */
  unsigned health = 0;
  for (size_t i = 0; i < op__routes_len; i++)
    if (op__routes[i].flags & OP__ROUTE_HEALTH) {
      health++;
      CHECK(strcmp(op__routes[i].method, "GET") == 0 && !(op__routes[i].flags & OP__ROUTE_UPLOAD));
    }
  CHECK(health == 3);
  CHECK(route_path("GET", "/readyz") != NULL && (q.route->flags & OP__ROUTE_HEALTH));
  CHECK(route_path("GET", "/v1/memory") != NULL && !(q.route->flags & OP__ROUTE_HEALTH));
  /* HEAD is answered by the GET route. */
  CHECK_STR_EQ(route_path("HEAD", "/healthz"), "/healthz");
  CHECK_STR_EQ(route_path("GET", "/"), "/");
  /* A known path with another method: a path and no route (405). */
  CHECK(route_path("PUT", "/v1/tasks/abc") == NULL && q.path != NULL && strcmp(q.path, "/v1/tasks/{id}") == 0);
  CHECK(route_path("GET", "/v1/ocr") == NULL && q.path != NULL);
  /* Unknown paths: neither (404). */
  CHECK(route_path("GET", "/v2/nothing") == NULL && q.path == NULL);
  CHECK(route_path("GET", "/v1/tasks/") == NULL && q.path == NULL);
  CHECK(route_path("GET", "/v1/tasks/abc/other") == NULL && q.path == NULL);
  CHECK(route_path("GET", "/v1/tasks/abc/result/x") == NULL && q.path == NULL);
  CHECK(route_path("GET", "/v1/models/fast") == NULL && q.path == NULL);
  CHECK(route_path("GET", "/healthz/") == NULL && q.path == NULL);
  CHECK(route_path("GET", "") == NULL && q.path == NULL);
  char longid[200];
  memset(longid, 'a', sizeof longid);
  memcpy(longid, "/v1/tasks/", 10);
  longid[sizeof longid - 1] = '\0';
  CHECK(route_path("GET", longid) == NULL && q.path == NULL);

  char buf[64];
  op__route_methods("/v1/tasks", ", ", 1, buf, sizeof buf);
  CHECK_STR_EQ(buf, "GET, HEAD, POST");
  op__route_methods("/v1/tasks", " or ", 0, buf, sizeof buf);
  CHECK_STR_EQ(buf, "GET or POST");
  op__route_methods("/v1/tasks/{id}", ", ", 1, buf, sizeof buf);
  CHECK_STR_EQ(buf, "GET, HEAD, DELETE");
  op__route_methods("/v1/ocr", ", ", 1, buf, sizeof buf);
  CHECK_STR_EQ(buf, "POST");

  /* Every template is unique per method, and every row is complete. */
  for (size_t i = 0; i < op__routes_len; i++) {
    CHECK(op__routes[i].handler != NULL && op__routes[i].summary != NULL && op__routes[i].codes != NULL);
    for (size_t k = i + 1; k < op__routes_len; k++)
      CHECK(strcmp(op__routes[i].path, op__routes[k].path) != 0 ||
            strcmp(op__routes[i].method, op__routes[k].method) != 0);
  }
  return CHECK_DONE();
}

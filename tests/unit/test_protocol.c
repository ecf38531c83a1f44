/* test_protocol.c: the worker protocol's framing, over a real socketpair. */
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "worker/protocol.h"

static void test_roundtrip_blocking(void) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  json_t *msg = json_pack("{s:s, s:i, s:s}", "op", "page", "index", 7, "text", "h\xc3\xa9llo \"q\"");
  CHECK(op_proto_send(sv[0], msg) == 0);
  json_t *got = NULL;
  op_error_t e;
  CHECK(op_proto_recv(sv[1], &got, &e) == 0);
  CHECK(got != NULL && json_equal(msg, got));
  json_decref(got);
  close(sv[0]);
  CHECK(op_proto_recv(sv[1], &got, &e) == OP_EEOF);
  close(sv[1]);
  json_decref(msg);
}

static void test_incremental_reader(void) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  op_proto_reader_t r;
  op_proto_reader_init(&r);
  json_t *msg = NULL;
  /* Nothing yet: no message, no error. */
  CHECK(op_proto_reader_fill(&r, sv[1]) == 0);
  CHECK(op_proto_reader_next(&r, &msg) == 0);
  /* A frame delivered in two pieces, then two frames at once. */
  const char *body = "{\"op\":\"pong\"}";
  unsigned char head[4] = {0, 0, 0, (unsigned char)strlen(body)};
  CHECK(write(sv[0], head, 4) == 4);
  CHECK(write(sv[0], body, 5) == 5);
  CHECK(op_proto_reader_fill(&r, sv[1]) == 0);
  CHECK(op_proto_reader_next(&r, &msg) == 0);
  CHECK(write(sv[0], body + 5, strlen(body) - 5) == (ssize_t)(strlen(body) - 5));
  json_t *a = json_pack("{s:s}", "op", "done"), *b = json_pack("{s:s}", "op", "failed");
  CHECK(op_proto_send(sv[0], a) == 0 && op_proto_send(sv[0], b) == 0);
  CHECK(op_proto_reader_fill(&r, sv[1]) == 0);
  CHECK(op_proto_reader_next(&r, &msg) == 1);
  CHECK_STR_EQ(json_string_value(json_object_get(msg, "op")), "pong");
  json_decref(msg);
  CHECK(op_proto_reader_next(&r, &msg) == 1 && json_equal(msg, a));
  json_decref(msg);
  CHECK(op_proto_reader_next(&r, &msg) == 1 && json_equal(msg, b));
  json_decref(msg);
  CHECK(op_proto_reader_next(&r, &msg) == 0);
  /* Not an object, and an oversized frame: protocol errors. */
  const char *arr = "[1,2]";
  unsigned char h2[4] = {0, 0, 0, 5};
  CHECK(write(sv[0], h2, 4) == 4 && write(sv[0], arr, 5) == 5);
  CHECK(op_proto_reader_fill(&r, sv[1]) == 0);
  CHECK(op_proto_reader_next(&r, &msg) == OP_EPROTO);
  unsigned char big[4] = {0x7f, 0, 0, 0};
  CHECK(write(sv[0], big, 4) == 4);
  CHECK(op_proto_reader_fill(&r, sv[1]) == 0);
  CHECK(op_proto_reader_next(&r, &msg) == OP_EPROTO);
  close(sv[0]);
  CHECK(op_proto_reader_fill(&r, sv[1]) == OP_EEOF);
  op_proto_reader_dispose(&r);
  close(sv[1]);
  json_decref(a);
  json_decref(b);
}

int main(void) {
  test_roundtrip_blocking();
  test_incremental_reader();
  return CHECK_DONE();
}

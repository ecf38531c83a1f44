/*
 * fuzz_protocol.c: the worker protocol's framing (docs/worker-protocol.md)
 * as the supervisor reads it from a worker, which may be an external engine
 * or a worker a hostile page has taken over: 4-byte lengths and JSON
 * objects, arriving in pieces. The input is fed through a pipe in pieces
 * whose sizes the input's first bytes choose; every frame is taken, refused
 * (OP_EPROTO) or waits for more, and the reader never reads past its buffer.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "worker/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 60000) /* within a pipe's buffer: the writer never blocks */
    return 0;
  size_t piece = 1 + data[0] % 64;
  data++, size--;
  int fds[2];
  if (pipe2(fds, O_NONBLOCK) < 0)
    abort();
  op_proto_reader_t reader;
  op_proto_reader_init(&reader);
  int rc = 0;
  size_t off = 0;
  while (rc >= 0) {
    size_t n = off < size ? (size - off < piece ? size - off : piece) : 0;
    if (n > 0 && write(fds[1], data + off, n) != (ssize_t)n)
      abort();
    off += n;
    if (off >= size && fds[1] >= 0) {
      close(fds[1]);
      fds[1] = -1;
    }
    rc = op_proto_reader_fill(&reader, fds[0]);
    json_t *msg = NULL;
    int got;
    while ((got = op_proto_reader_next(&reader, &msg)) == 1) {
      if (!json_is_object(msg))
        abort();
      json_decref(msg);
    }
    if (got < 0)
      break; /* a bad frame: the supervisor ends that worker */
  }
  op_proto_reader_dispose(&reader);
  close(fds[0]);
  if (fds[1] >= 0)
    close(fds[1]);
  return 0;
}

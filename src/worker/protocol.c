/*
 * protocol.c: length-prefixed JSON frames over a socket.
 *
 * Blocking helpers serve the worker, which handles one message at a time; the
 * incremental reader serves the supervisor, which polls many workers.
 */
#include "worker/protocol.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int write_all(int fd, const void *data, size_t len) {
  const unsigned char *p = data;
  while (len > 0) {
    /* MSG_NOSIGNAL: a dead peer is an error to report, not a SIGPIPE. */
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK)
      n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return OP_EIO;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int read_all(int fd, void *data, size_t len, int at_frame_start) {
  unsigned char *p = data;
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, p + got, len - got);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return OP_EIO;
    }
    if (n == 0)
      return (got == 0 && at_frame_start) ? OP_EEOF : OP_EPROTO;
    got += (size_t)n;
  }
  return 0;
}

int op_proto_send(int fd, const json_t *msg) {
  char *text = json_dumps(msg, JSON_COMPACT);
  if (text == NULL)
    return OP_ENOMEM;
  size_t len = strlen(text);
  int rc = OP_EPROTO;
  if (len <= OP_PROTO_MAX_FRAME) {
    unsigned char head[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8),
                             (unsigned char)len};
    rc = write_all(fd, head, 4);
    if (rc == 0)
      rc = write_all(fd, text, len);
  }
  free(text);
  return rc;
}

static uint32_t frame_length(const unsigned char *head) {
  return (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
}

static int parse_object(const char *text, size_t len, json_t **msg) {
  json_error_t jerr;
  json_t *v = json_loadb(text, len, 0, &jerr);
  if (v == NULL || !json_is_object(v)) {
    json_decref(v);
    return OP_EPROTO;
  }
  *msg = v;
  return 0;
}

int op_proto_recv(int fd, json_t **msg, op_error_t *err) {
  unsigned char head[4];
  *msg = NULL;
  int rc = read_all(fd, head, 4, 1);
  if (rc == OP_EEOF)
    return rc;
  if (rc < 0)
    return op_error_set(err, rc, "internal", "reading a message header failed: %s", op_strerror(rc));
  uint32_t len = frame_length(head);
  if (len > OP_PROTO_MAX_FRAME)
    return op_error_set(err, OP_EPROTO, "internal", "message of %u bytes is over the %u-byte frame limit", len,
                        OP_PROTO_MAX_FRAME);
  char *text = malloc(len ? len : 1);
  if (text == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory reading a %u-byte message", len);
  rc = read_all(fd, text, len, 0);
  if (rc == 0 && parse_object(text, len, msg) < 0)
    rc = op_error_set(err, OP_EPROTO, "internal", "message is not a JSON object");
  else if (rc < 0)
    op_error_set(err, rc, "internal", "reading a message failed: %s", op_strerror(rc));
  free(text);
  return rc;
}

void op_proto_reader_init(op_proto_reader_t *reader) {
  memset(reader, 0, sizeof *reader);
}

void op_proto_reader_dispose(op_proto_reader_t *reader) {
  free(reader->buf);
  op_proto_reader_init(reader);
}

int op_proto_reader_fill(op_proto_reader_t *reader, int fd) {
  for (;;) {
    if (reader->len == reader->cap) {
      /* Full: either a complete frame waits to be taken (poll will wake us
       * again for the rest), or a frame is over the limit. */
      if (reader->len >= 4 && (size_t)frame_length(reader->buf) + 4 <= reader->len)
        return 0;
      if (reader->cap >= OP_PROTO_MAX_FRAME + 4)
        return OP_EPROTO;
      size_t cap = reader->cap ? reader->cap * 2 : 8192;
      if (cap > OP_PROTO_MAX_FRAME + 4)
        cap = OP_PROTO_MAX_FRAME + 4;
      unsigned char *nb = realloc(reader->buf, cap);
      if (nb == NULL)
        return OP_ENOMEM;
      reader->buf = nb;
      reader->cap = cap;
    }
    ssize_t n = read(fd, reader->buf + reader->len, reader->cap - reader->len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      return OP_EIO;
    }
    if (n == 0)
      return OP_EEOF;
    reader->len += (size_t)n;
  }
}

int op_proto_reader_next(op_proto_reader_t *reader, json_t **msg) {
  *msg = NULL;
  if (reader->len < 4)
    return 0;
  uint32_t len = frame_length(reader->buf);
  if (len > OP_PROTO_MAX_FRAME)
    return OP_EPROTO;
  if (reader->len < 4 + (size_t)len)
    return 0;
  int rc = parse_object((const char *)reader->buf + 4, len, msg);
  memmove(reader->buf, reader->buf + 4 + len, reader->len - 4 - len);
  reader->len -= 4 + (size_t)len;
  return rc < 0 ? rc : 1;
}

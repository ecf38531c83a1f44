/*
 * protocol.h: the framing every worker speaks, built-in or external.
 *
 * A message is a 4-byte big-endian length followed by that many bytes of one
 * UTF-8 JSON object. Frames larger than OP_PROTO_MAX_FRAME are a protocol
 * error: page images and results never travel inline, they are files in the
 * task's scratch directory. docs/worker-protocol.md describes the messages.
 */
#ifndef OCRPOOL_WORKER_PROTOCOL_H
#define OCRPOOL_WORKER_PROTOCOL_H

#include <jansson.h>
#include <stddef.h>

#include "util/error.h"

/** The largest frame either side accepts. */
#define OP_PROTO_MAX_FRAME (4u * 1024 * 1024)

/** Sends msg on a blocking fd, retrying short writes and EINTR. Does not take msg's reference. */
int op_proto_send(int fd, const json_t *msg);

/**
 * Receives one message from a blocking fd. *msg is a new reference the caller
 * json_decref()s. OP_EEOF when the peer closed before a frame began.
 */
int op_proto_recv(int fd, json_t **msg, op_error_t *err);

/** Incremental reader for a non-blocking fd, as the supervisor uses. */
typedef struct op_proto_reader_s {
  unsigned char *buf;
  size_t len, cap;
} op_proto_reader_t;

/** Empties reader (no allocation). */
void op_proto_reader_init(op_proto_reader_t *reader);

/** Frees the buffer. */
void op_proto_reader_dispose(op_proto_reader_t *reader);

/**
 * Reads what fd has now. Returns 0 when bytes were read or none are ready,
 * OP_EEOF at end of stream, OP_EIO on error.
 */
int op_proto_reader_fill(op_proto_reader_t *reader, int fd);

/**
 * Takes the next complete message out of the buffer: 1 and *msg (a new
 * reference) when there is one, 0 when more bytes are needed, OP_EPROTO when
 * the frame is too large or not a JSON object.
 */
int op_proto_reader_next(op_proto_reader_t *reader, json_t **msg);

#endif

/*
 * worker.h: the worker process's side of the protocol.
 *
 * `ocrpool worker` runs op_worker_main on the socket its supervisor gave it:
 * it answers one message at a time (probe a document, OCR a page, merge PDFs,
 * ping) until it is told to exit or its socket closes. All parsing of untrusted
 * documents happens here, so a malformed file can only kill this process.
 */
#ifndef OCRPOOL_WORKER_WORKER_H
#define OCRPOOL_WORKER_WORKER_H

/**
 * Serves the supervisor on fd until exit; returns the process exit status.
 * sandbox is op_sandbox_encode's text (NULL: none), entered before the hello.
 */
int op_worker_main(int fd, const char *device, unsigned worker_id, const char *sandbox);

/** This process's resident and peak resident memory in kB, from /proc/self/status. */
void op_self_memory_kb(long *rss_kb, long *peak_kb);

#endif

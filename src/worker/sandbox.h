/*
 * sandbox.h: what a worker may do once it has started (docs/security.md).
 *
 * The process that spawns workers describes the sandbox (op_sandbox_config_t)
 * and passes it, encoded, on the worker's command line; the worker enters it
 * before it says hello, after which it decodes untrusted documents. In turn:
 * resource limits, a network namespace of its own (where it may make one), an
 * unprivileged user (when started as root), no new privileges, a Landlock
 * ruleset (its scratch directory read-write, system and model files
 * read-only, nothing else), and a seccomp allow-list of system calls whose
 * violation kills the worker with SIGSYS.
 */
#ifndef OCRPOOL_WORKER_SANDBOX_H
#define OCRPOOL_WORKER_SANDBOX_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

/** The most paths one sandbox names (each a Landlock rule). */
#define OP_SANDBOX_MAX_PATHS 64u

/** How a worker is to be confined. */
typedef struct op_sandbox_config_s {
  int enabled;               /**< 0: `sandbox: off`, nothing below applies */
  const char *write_dirs[4]; /**< read-write trees; the first is the scratch root */
  unsigned n_write;
  /** A read-write directory of the sandbox's own where Leptonica puts its
   * temporary files (its PDF image encoding), instead of /tmp; NULL = /tmp. */
  const char *tmp_dir;
  const char *read_paths[OP_SANDBOX_MAX_PATHS]; /**< read-only files or trees */
  unsigned n_read;
  uid_t uid; /**< become this user and group (with no supplementary groups) when started as root ... */
  gid_t gid;
  int drop_user;           /**< ... if set */
  uint64_t max_file_bytes; /**< RLIMIT_FSIZE: the largest file a worker may write */
  unsigned max_open_files; /**< RLIMIT_NOFILE */
} op_sandbox_config_t;

/** Defaults: enabled, /usr and $TESSDATA_PREFIX read-only, no user change, 4 GiB files, 256 fds. */
void op_sandbox_config_init(op_sandbox_config_t *cfg);

/** Adds a read-only path; OP_ELIMIT past OP_SANDBOX_MAX_PATHS. */
int op_sandbox_add_read(op_sandbox_config_t *cfg, const char *path, op_error_t *err);

/**
 * Resolves name ("nobody") into cfg's uid and gid and sets drop_user, when
 * this process runs as root; a no-op otherwise or for an empty name.
 * OP_EUSAGE when no such user exists.
 */
int op_sandbox_set_user(op_sandbox_config_t *cfg, const char *name, op_error_t *err);

/** cfg as the text a worker's --sandbox takes; caller frees. NULL when out of memory. */
char *op_sandbox_encode(const op_sandbox_config_t *cfg);

/** What a worker's sandbox turned out to be, as its hello reports it. */
typedef struct op_sandbox_status_s {
  int known;        /**< the worker said (an old or external worker may not) */
  int enabled;      /**< any of it */
  int seccomp;      /**< the system call allow-list is loaded */
  int landlock_abi; /**< the Landlock ABI in force; 0: none (the kernel has none) */
  int mountns;      /**< instead of Landlock, a mount namespace holding only its paths */
  int netns;        /**< a network namespace of its own */
  int no_new_privs;
  long uid; /**< the user it runs as */
} op_sandbox_status_t;

/** The status as a worker's hello carries it (a new object; op_sandbox_status_parse reads it). */
json_t *op_sandbox_status_hello(const op_sandbox_status_t *st);

/** The status from a hello's "sandbox" object (NULL: not known). */
void op_sandbox_status_parse(json_t *obj, op_sandbox_status_t *st);

/** The status as JSON for /v1/memory's workers (a new object). */
json_t *op_sandbox_status_json(const op_sandbox_status_t *st);

/** A worker's sandbox, once entered. */
typedef struct op_sandbox_s {
  op_sandbox_status_t status;
  char cwd_prefix[1024]; /**< the scratch root as jobs name it, when the worker changed into it; "" otherwise */
} op_sandbox_t;

/**
 * In the worker: enters the sandbox that text (op_sandbox_encode's) describes.
 * What the kernel does not offer (Landlock, a network namespace) is left out
 * and said in sb->status; anything else failing is an error, and the worker
 * must not go on.
 */
int op_sandbox_enter(const char *text, op_sandbox_t *sb, op_error_t *err);

/**
 * The path a job names, as this worker opens it: below the scratch root, relative
 * to it (a worker that changed user may not pass through the directories above).
 */
const char *op_sandbox_path(const op_sandbox_t *sb, const char *path);

#endif

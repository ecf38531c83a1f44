/*
 * node.c: this server as one node of those sharing the store, known to the
 * others by its row in the table nodes, which its heartbeat keeps fresh.
 *
 * At start the node makes its id and writes its row before the server
 * reports ready. Then the service's loop writes it again every
 * store.heartbeat with the node's state (draining, workers, pages running,
 * memory per device), at once when a drain starts, and forgets rows silent
 * for a day. The same beat renews the leases of the tasks the node holds
 * (recover.c claims them): a node that stops beating loses them after
 * store.lease, and live nodes claim them. A clean stop deletes the row and
 * lets go of its tasks at once; a killed node leaves both behind until its
 * lease lapses. A failed beat is logged, never fatal.
 *
 * The data directory holds node.lock, locked (flock) by the node that runs
 * from it and holding its id. A node killed and started again on the same
 * directory and host finds the lock free: its old row is then known dead, is
 * forgotten, and its tasks are let go at once rather than after a lease. A
 * lock still held means a live server uses the directory: the start is refused.
 * On a store that keeps no blobs (SQLite) a second live node is refused too.
 */
#include "core/service_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "worker/supervisor.h"

#define FORGET_AFTER_S (24.0 * 3600) /* a row silent this long is removed by any node's beat */

static double monotonic_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *op_service_node_id(const op_service_t *svc) {
  return svc->node.id;
}

/* The host name as stored and shown: ASCII letters, digits, '.', '-' and '_'; others become '?'. */
static void host_name(char *out, size_t size) {
  char raw[256] = "";
  if (gethostname(raw, sizeof raw - 1) < 0 || raw[0] == '\0')
    snprintf(raw, sizeof raw, "unknown");
  size_t n = 0;
  for (const char *p = raw; *p && n + 1 < size; p++) {
    char c = *p;
    int plain =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    out[n++] = plain ? c : '?';
  }
  out[n] = '\0';
}

/* Per device {"used_bytes","budget_bytes"} from the last snapshot, as compact JSON text into out; "{}" before one. */
static void memory_text(op_service_t *svc, char *out, size_t size) {
  json_t *memory = json_object();
  pthread_mutex_lock(&svc->lock);
  const op_snapshot_t *snap = svc->snapshot;
  if (memory != NULL && snap != NULL) {
    json_object_set_new(memory, "cpu",
                        json_pack("{s:I, s:I}", "used_bytes", (json_int_t)snap->mem.used_bytes, "budget_bytes",
                                  (json_int_t)snap->mem.budget_bytes));
    for (unsigned g = 0; g < snap->mem.n_gpus; g++) {
      char name[16];
      snprintf(name, sizeof name, "cuda:%u", g);
      json_object_set_new(memory, name,
                          json_pack("{s:I, s:I}", "used_bytes", (json_int_t)snap->mem.gpus[g].used_bytes,
                                    "budget_bytes", (json_int_t)snap->mem.gpus[g].budget_bytes));
    }
  }
  pthread_mutex_unlock(&svc->lock);
  size_t need = memory ? json_dumpb(memory, out, size - 1, JSON_COMPACT) : 0;
  if (need == 0 || need >= size) /* cannot happen with 8 GPUs at most; "{}" beats a cut JSON text */
    need = (size_t)snprintf(out, size, "{}");
  out[need] = '\0';
  json_decref(memory);
}

void op__node_beat(op_service_t *svc, int force) {
  op__node_t *node = &svc->node;
  double now = monotonic_s();
  if (!force && now < node->next_beat)
    return;
  node->next_beat = now + svc->cfg.heartbeat_s;
  op_node_row_t row;
  memset(&row, 0, sizeof row);
  snprintf(row.id, sizeof row.id, "%s", node->id);
  snprintf(row.host, sizeof row.host, "%s", node->host);
  row.draining = atomic_load(&svc->draining);
  row.workers = (int)(svc->cfg.workers ? svc->cfg.workers : op_usable_cores());
  row.pages_running = svc->sched ? (int)op_sched_running(svc->sched) : 0;
  memory_text(svc, row.memory, sizeof row.memory);
  op_error_t e;
  int rc = op_store_node_beat(svc->store, &row, &e);
  if (rc == 0) {
    node->in_store = 1;
    rc = op_store_leases_renew(svc->store, node->id, svc->cfg.lease_s, &e);
  }
  if (rc == 0)
    rc = op_store_node_forget(svc->store, NULL, FORGET_AFTER_S, &e);
  if (rc < 0) {
    /* Said once per run of failures: a store that is down says so elsewhere too. */
    if (node->beat_failing++ == 0)
      op_log_warn("node %s: the heartbeat could not be written: %s; trying again every %g s", node->id, e.message,
                  svc->cfg.heartbeat_s);
    return;
  }
  if (node->beat_failing > 0)
    op_log_info("node %s: the heartbeat is written again, after %d failed", node->id, node->beat_failing);
  node->beat_failing = 0;
}

/* Locks data_dir/node.lock; *busy when a live process holds it. Else
 * before[33] is the id of the node that held it last, which is gone ("" if none). */
static int lock_data_dir(op_service_t *svc, int *busy, char *before, op_error_t *err) {
  op__node_t *node = &svc->node;
  char path[sizeof svc->data_dir + 16];
  snprintf(path, sizeof path, "%s/node.lock", svc->data_dir);
  *busy = 0;
  before[0] = '\0';
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600); /* CLOEXEC: no worker may inherit the lock */
  if (fd < 0)
    return op_error_set(err, OP_EIO, "internal", "cannot open %s: %s", path, strerror(errno));
  int rc;
  while ((rc = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR)
    ;
  if (rc < 0) {
    int saved = errno;
    close(fd);
    if (saved == EWOULDBLOCK) {
      *busy = 1;
      return 0;
    }
    return op_error_set(err, OP_EIO, "internal", "cannot lock %s: %s", path, strerror(saved));
  }
  node->lock_fd = fd;
  char text[64];
  ssize_t n = pread(fd, text, sizeof text - 1, 0);
  text[n > 0 ? n : 0] = '\0';
  text[strcspn(text, "\n")] = '\0';
  if (strlen(text) == 32 && strspn(text, "0123456789abcdef") == 32)
    memcpy(before, text, 33);
  return 0;
}

/* Writes this node's id into the lock file, for the next start on this directory. */
static void claim_data_dir(op_service_t *svc) {
  op__node_t *node = &svc->node;
  char line[48];
  int len = snprintf(line, sizeof line, "%s\n", node->id);
  if (ftruncate(node->lock_fd, 0) < 0 || pwrite(node->lock_fd, line, (size_t)len, 0) != len)
    op_log_warn("node %s: cannot write %s/node.lock: %s", node->id, svc->data_dir, strerror(errno));
}

/* The node that ran last from this data directory (gone_id, whose lock was
 * free) is dead: its row goes and its tasks are let go for any node, this
 * one first, to claim at once. Only when it ran on this host: a copy of a
 * data directory on another machine proves nothing. */
static void forget_gone(op_service_t *svc, const char *gone_id) {
  op_node_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  if (gone_id[0] == '\0' || op_store_nodes(svc->store, &rows, &n, &e) < 0) {
    free(rows);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    if (strcmp(rows[i].id, gone_id) != 0 || strcmp(rows[i].host, svc->node.host) != 0)
      continue;
    if (op_store_leases_release(svc->store, gone_id, &e) < 0 || op_store_node_forget(svc->store, gone_id, 0, &e) < 0)
      op_log_warn("node %s: %s, which ran from this data directory, is gone, but its tasks wait for its lease: %s",
                  svc->node.id, gone_id, e.message);
    else
      op_log_info("node %s: %s, which ran from this data directory before, is gone: its row is removed and its "
                  "tasks let go",
                  svc->node.id, gone_id);
  }
  free(rows);
}

/* A store that keeps no blobs (an SQLite file) leaves each task's files in the
 * data directory of the node that accepted it, where no other node can read
 * them: such a store takes one live node. OP_EUSAGE when another one's
 * heartbeat is younger than the lease. */
static int refuse_second_node(op_service_t *svc, op_error_t *err) {
  if (op_store_keeps_blobs(svc->store))
    return 0;
  op_node_row_t *rows = NULL;
  size_t n = 0;
  int rc = op_store_nodes(svc->store, &rows, &n, err);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (strcmp(rows[i].id, svc->node.id) == 0 || rows[i].age_s >= svc->cfg.lease_s)
      continue;
    rc = op_error_set(err, OP_EUSAGE, "bad_options",
                      "another ocrpool node (%s on %s, last seen %.1f s ago) uses this store, which keeps each "
                      "task's files in the data directory of the node that accepted it (SQLite): one node at a "
                      "time; several nodes share a PostgreSQL store",
                      rows[i].id, rows[i].host[0] ? rows[i].host : "an unknown host",
                      rows[i].age_s > 0 ? rows[i].age_s : 0.0);
  }
  free(rows);
  return rc;
}

int op__node_start(op_service_t *svc, op_error_t *err) {
  op__node_t *node = &svc->node;
  op_service_new_id(node->id);
  host_name(node->host, sizeof node->host);
  int busy = 0;
  char gone_id[33];
  int rc = lock_data_dir(svc, &busy, gone_id, err);
  if (rc == 0 && busy)
    rc = op_error_set(err, OP_EUSAGE, "bad_options",
                      "another ocrpool serve uses the data directory %s (it holds %s/node.lock); stop it, or give "
                      "this one another --data-dir",
                      svc->data_dir, svc->data_dir);
  if (rc < 0)
    return rc;
  forget_gone(svc, gone_id);
  if ((rc = refuse_second_node(svc, err)) < 0)
    return rc;
  claim_data_dir(svc);
  op_error_t e;
  if (!svc->cfg.poll_only && op_store_listen(svc->store, &e) < 0)
    op_log_warn("node %s: cannot listen for new work (%s); it polls every %g s", node->id, e.message, svc->cfg.poll_s);
  op__node_beat(svc, 1);
  op_log_info("node %s on %s: heartbeat every %g s, lease %g s", node->id, node->host, svc->cfg.heartbeat_s,
              svc->cfg.lease_s);
  return 0;
}

void op__node_stop(op_service_t *svc) {
  op__node_t *node = &svc->node;
  if (node->in_store && svc->store != NULL) {
    op_error_t e;
    /* Its unfinished tasks (still queued, or pages past the drain) go to the others now. */
    if (op_store_leases_release(svc->store, node->id, &e) < 0)
      op_log_warn("node %s: its tasks could not be let go: %s; others claim them after store.lease", node->id,
                  e.message);
    if (op_store_node_forget(svc->store, node->id, 0, &e) < 0)
      op_log_warn("node %s: its row could not be deleted: %s; others see it as dead after store.lease", node->id,
                  e.message);
    node->in_store = 0;
  }
  if (node->lock_fd >= 0) /* the id stays in the file: the next start forgets the row should it be left */
    close(node->lock_fd);
  node->lock_fd = -1;
}

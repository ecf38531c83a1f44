/*
 * supervisor.h: a pool of worker processes and the jobs running on them.
 *
 * The supervisor spawns `ocrpool worker` processes (posix_spawn of our own
 * binary, one socketpair each), hands a job to an idle worker, and turns what
 * happens into events: a worker's reply, or the loss of its job because the
 * worker died or ran past the job's timeout. It reaps with waitpid(WNOHANG),
 * restarts dead workers, pings idle ones and kills those that stop answering.
 * What to do with a lost job (retry, fail) is the scheduler's decision.
 */
#ifndef OCRPOOL_WORKER_SUPERVISOR_H
#define OCRPOOL_WORKER_SUPERVISOR_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"
#include "worker/sandbox.h"

typedef struct op_supervisor_s op_supervisor_t;

/**
 * The most worker processes one pool runs. Each costs a process, a socket,
 * a poll entry and two event-queue entries, all sized from the configured
 * count at create; more is refused there, and by --workers, -j and
 * server.workers, with an error that names this maximum.
 */
#define OP_SUPERVISOR_MAX_WORKERS 1024u

/** How the pool runs. */
typedef struct op_supervisor_config_s {
  unsigned workers;               /**< processes to keep running, 1 .. OP_SUPERVISOR_MAX_WORKERS */
  const char *exe_path;           /**< the ocrpool binary; NULL = /proc/self/exe */
  const char *device;             /**< device the workers are bound to, "cpu" */
  unsigned heartbeat_interval_ms; /**< ping an idle worker this often (default 2000) */
  unsigned heartbeat_timeout_ms;  /**< kill an idle worker silent this long (default 5000) */
  unsigned start_timeout_ms;      /**< kill a worker that does not say hello in time (default 10000) */
  const char *log_level;          /**< passed to workers, NULL = inherit */
  const char *sandbox;            /**< the workers' sandbox, op_sandbox_encode's text (copied); NULL = none */
  int lazy; /**< start workers only on op_supervisor_start_worker and leave dead ones down: the caller's
                 memory admission decides how many run (workers is then the most at once) */
} op_supervisor_config_t;

/** Fills cfg with the defaults above and one worker per usable core (at most OP_SUPERVISOR_MAX_WORKERS). */
void op_supervisor_config_init(op_supervisor_config_t *cfg);

/** The number of CPUs this process may run on (sched_getaffinity), at least 1. */
unsigned op_usable_cores(void);

typedef enum {
  OP_SUP_EV_REPLY = 1, /**< a worker answered a job: reply holds its message */
  OP_SUP_EV_LOST,      /**< a job's worker died or timed out: code and message say which */
} op_sup_event_type_t;

/** One thing that happened to a job. */
typedef struct op_sup_event_s {
  op_sup_event_type_t type;
  void *job_ctx;     /**< the pointer given to op_supervisor_dispatch */
  json_t *reply;     /**< REPLY: the worker's message, owned by the event */
  int code;          /**< LOST: OP_ECRASH or OP_ETIMEOUT */
  int term_signal;   /**< LOST: the signal that killed the worker, 0 if none */
  char message[256]; /**< LOST: a sentence ("worker 123 was killed by signal 9 (Killed)") */
  pid_t pid;         /**< the worker */
  unsigned worker_id;
} op_sup_event_t;

/** Frees what an event owns. */
void op_sup_event_dispose(op_sup_event_t *ev);

/**
 * Starts the workers (none yet for a lazy pool). More than
 * OP_SUPERVISOR_MAX_WORKERS is OP_EUSAGE. On failure nothing is left running.
 */
int op_supervisor_create(const op_supervisor_config_t *cfg, op_supervisor_t **sup, op_error_t *err);

/** Asks every worker to exit, waits briefly, kills the rest, reaps all, frees. */
void op_supervisor_destroy(op_supervisor_t *sup);

/** Workers ready for a job now. */
unsigned op_supervisor_idle_count(const op_supervisor_t *sup);

/**
 * Sends job (a JSON object; "job" is set to a fresh id) to an idle worker.
 * timeout_ms > 0 kills the worker if no reply comes in time. Returns the
 * worker's id (>= 0), or OP_EINTERNAL when no worker is idle. The job's fate
 * comes back later as exactly one event carrying job_ctx.
 */
int op_supervisor_dispatch(op_supervisor_t *sup, json_t *job, unsigned timeout_ms, void *job_ctx);

/**
 * Waits up to timeout_ms (0 = just look) for the next event and does the
 * housekeeping meanwhile (reaping, restarts, heartbeats, timeouts). Returns 1
 * with *ev filled, 0 when nothing happened in time or early when a worker
 * became free or a slot empty (the caller may dispatch), <0 on a fatal error:
 * poll() failing, or a job's event lost to a full event queue (which its
 * sizing rules out; see op_supervisor_create), so that no job waits forever.
 */
int op_supervisor_poll(op_supervisor_t *sup, int timeout_ms, op_sup_event_t *ev, op_error_t *err);

/** Kills the worker running job_ctx, if any: its job is dropped without an event. */
int op_supervisor_cancel(op_supervisor_t *sup, void *job_ctx);

/** Copies up to max worker pids into pids; returns how many workers are alive. */
unsigned op_supervisor_pids(const op_supervisor_t *sup, pid_t *pids, unsigned max);

/** What the caller may know of one worker slot. */
typedef struct op_worker_info_s {
  pid_t pid;                   /**< 0 when the slot has no process */
  int starting;                /**< spawned, not yet ready */
  int idle;                    /**< ready for a job */
  int busy;                    /**< running a job */
  int exiting;                 /**< retired, killed or dead, not yet reaped: its memory is still in use */
  uint64_t jobs_done;          /**< jobs this process answered */
  op_sandbox_status_t sandbox; /**< what its hello said of its sandbox */
} op_worker_info_t;

/** Worker slots (the configured workers). */
unsigned op_supervisor_size(const op_supervisor_t *sup);

/** Fills *info for slot index. */
void op_supervisor_worker(const op_supervisor_t *sup, unsigned index, op_worker_info_t *info);

/** Like op_supervisor_dispatch, to slot index, which must be idle. */
int op_supervisor_dispatch_to(op_supervisor_t *sup, unsigned index, json_t *job, unsigned timeout_ms, void *job_ctx);

/**
 * Lazy pools: starts a process in a free slot (one whose restart backoff has
 * passed). Returns its index, or OP_EINTERNAL when every slot is taken or
 * backing off.
 */
int op_supervisor_start_worker(op_supervisor_t *sup);

/**
 * Asks idle worker index to exit (it finishes nothing: it has no job) and
 * leaves its slot free; its exit is not a restart. OP_EINTERNAL if not idle.
 */
int op_supervisor_retire(op_supervisor_t *sup, unsigned index);

/** Kills worker index now; a job it ran comes back as a LOST event (signal 9). */
int op_supervisor_kill(op_supervisor_t *sup, unsigned index);

/** Makes op_supervisor_poll return 0 early when fd becomes readable (the caller drains it); -1 = none. */
void op_supervisor_set_wake_fd(op_supervisor_t *sup, int fd);

/** Workers that started (said hello) since creation. */
unsigned op_supervisor_started(const op_supervisor_t *sup);

/** 1 when no worker is up and every slot asked to run one has seen its
 * process end before it was ready tries times in a row (a sandbox it cannot
 * enter, a broken install): starting more will not help. */
int op_supervisor_cannot_start(const op_supervisor_t *sup, unsigned tries);

/** Worker restarts since creation (crashes, timeouts, silent workers), those still being reaped too. */
unsigned op_supervisor_restarts(const op_supervisor_t *sup);

#endif

/*
 * supervisor.c: spawning, watching and replacing worker processes.
 *
 * Each worker is one slot: a pid, our end of its socketpair, a frame reader,
 * and at most one job. One poll() over the sockets drives everything; on
 * every pass we also reap children with waitpid(WNOHANG), expire job
 * deadlines, ping idle workers and restart dead slots (with a backoff when
 * workers die before saying hello, so a broken install cannot fork-bomb us).
 * Events are queued and handed out one per op_supervisor_poll call.
 *
 * Every array here is sized from the configured worker count when the pool is
 * created (the slots, the poll set, the event queue), and that count is capped
 * at OP_SUPERVISOR_MAX_WORKERS, so nothing grows and nothing is dropped at a
 * fixed size however many workers end at once.
 */
#include "worker/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "worker/protocol.h"

extern char **environ;

/* The fd number a worker finds its socket on (see docs/worker-protocol.md). */
#define WORKER_FD 3
#define REAP_GRACE_MS 2000
/* Room in the event queue beyond the two per slot the proof in
 * op_supervisor_create needs: not needed, kept as a margin for a mistake in
 * that proof, which would otherwise be a fatal error. */
#define EVENT_SLACK 16

typedef enum {
  SLOT_EMPTY = 0, /* no process; restart when its backoff allows */
  SLOT_STARTING,  /* spawned, waiting for hello */
  SLOT_IDLE,
  SLOT_BUSY,
  SLOT_DYING, /* socket closed or killed; waiting to reap */
} slot_state_t;

typedef struct slot_s {
  slot_state_t state;
  pid_t pid;
  int fd;
  op_proto_reader_t reader;
  void *job_ctx; /* the job it runs (BUSY, or DYING with a job to report) */
  uint64_t job_id;
  uint64_t deadline_ms;   /* BUSY: job deadline; STARTING: hello deadline; 0 = none */
  uint64_t last_heard_ms; /* last message or spawn time */
  uint64_t ping_sent_ms;  /* IDLE: outstanding ping, 0 = none */
  uint64_t dying_since_ms;
  uint64_t restart_at_ms; /* EMPTY: earliest respawn */
  int kill_code;          /* why we killed it: OP_ETIMEOUT, or 0 */
  unsigned fast_deaths;   /* deaths before hello in a row, for backoff */
  int said_hello;
  int parked;   /* EMPTY and left down until op_supervisor_start_worker (lazy pools) */
  int retiring; /* asked to exit by op_supervisor_retire: its end is no crash */
  uint64_t jobs_done;
  op_sandbox_status_t sandbox; /* as its hello said */
} slot_t;

struct op_supervisor_s {
  op_supervisor_config_t cfg;
  char exe[PATH_MAX];
  char device[32];
  char log_level[16];
  char *sandbox;      /* the workers' --sandbox, NULL = none */
  int warned_sandbox; /* a sandbox weaker than asked was logged */
  slot_t *slots;
  unsigned n_slots;
  uint64_t next_job_id;
  unsigned restarts;
  unsigned started;       /* workers that said hello */
  int changed;            /* a worker became free or a slot empty: the caller may dispatch now */
  int wake_fd;            /* readable = return from poll early; -1 = none */
  op_sup_event_t *events; /* a ring of ev_cap events, ev_count of them from ev_head */
  unsigned ev_cap, ev_head, ev_count;
  unsigned ev_lost;   /* events that found the queue full: a fatal error poll reports */
  struct pollfd *pfd; /* poll set: one per slot, plus the wake fd */
  unsigned *pfd_slot; /* pfd[k] is slot pfd_slot[k]'s socket */
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

unsigned op_usable_cores(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0)
      return (unsigned)n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1u;
}

void op_supervisor_config_init(op_supervisor_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->workers = op_usable_cores();
  if (cfg->workers > OP_SUPERVISOR_MAX_WORKERS)
    cfg->workers = OP_SUPERVISOR_MAX_WORKERS;
  cfg->device = "cpu";
  cfg->heartbeat_interval_ms = 2000;
  cfg->heartbeat_timeout_ms = 5000;
  cfg->start_timeout_ms = 10000;
}

void op_sup_event_dispose(op_sup_event_t *ev) {
  if (ev->reply != NULL)
    json_decref(ev->reply);
  ev->reply = NULL;
}

/* A new event at the queue's tail, or NULL (logged, counted, and reported by
 * the next op_supervisor_poll as a fatal error) when the queue is full, which
 * the bound argued in op_supervisor_create rules out. */
static op_sup_event_t *push_event(op_supervisor_t *sup, unsigned index) {
  if (sup->ev_count == sup->ev_cap) {
    sup->ev_lost++;
    op_log_error("worker %u: the worker pool's event queue is full (%u events); a job's outcome is lost", index,
                 sup->ev_cap);
    return NULL;
  }
  op_sup_event_t *ev = &sup->events[(sup->ev_head + sup->ev_count) % sup->ev_cap];
  sup->ev_count++;
  memset(ev, 0, sizeof *ev);
  return ev;
}

/* Builds the worker's environment: ours, plus OMP_THREAD_LIMIT=1 unless the
 * user chose a value. libgomp reads it when it loads, so it must be there at
 * exec; setenv() inside the worker would be too late. */
static char **worker_environ(void) {
  size_t n = 0;
  while (environ[n] != NULL)
    n++;
  char **env = calloc(n + 2, sizeof *env);
  if (env == NULL)
    return NULL;
  memcpy(env, environ, n * sizeof *env);
  if (getenv("OMP_THREAD_LIMIT") == NULL)
    env[n++] = "OMP_THREAD_LIMIT=1";
  env[n] = NULL;
  return env;
}

static int spawn_slot(op_supervisor_t *sup, slot_t *slot, unsigned index) {
  int sv[2] = {-1, -1};
  int child_fd = -1;
  int rc = OP_EINTERNAL;
  char **env = NULL;
  posix_spawn_file_actions_t fa;
  int fa_ready = 0;

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    op_log_error("socketpair for a worker failed: %s", strerror(errno));
    goto out;
  }
  /* dup2 onto the same number would keep FD_CLOEXEC; make sure it differs. */
  child_fd = sv[1];
  if (child_fd == WORKER_FD) {
    child_fd = fcntl(sv[1], F_DUPFD_CLOEXEC, WORKER_FD + 1);
    if (child_fd < 0)
      goto out;
  }
  env = worker_environ();
  if (env == NULL || posix_spawn_file_actions_init(&fa) != 0)
    goto out;
  fa_ready = 1;
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  /* Worker output never mixes with results the CLI writes to stdout. */
  posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, child_fd, WORKER_FD);

  char id_arg[16];
  snprintf(id_arg, sizeof id_arg, "%u", index);
  char *argv[14];
  int argc = 0;
  argv[argc++] = "ocrpool";
  argv[argc++] = "worker";
  argv[argc++] = "--fd";
  argv[argc++] = "3";
  argv[argc++] = "--device";
  argv[argc++] = sup->device;
  argv[argc++] = "--id";
  argv[argc++] = id_arg;
  if (sup->log_level[0] != '\0') {
    argv[argc++] = "--log-level";
    argv[argc++] = sup->log_level;
  }
  if (sup->sandbox != NULL) {
    argv[argc++] = "--sandbox";
    argv[argc++] = sup->sandbox;
  }
  argv[argc] = NULL;

  /* Its own process group: a terminal's Ctrl-C (or a signal to our group)
   * reaches the server, which drains, and not the workers, whose running
   * pages are to finish. They still die with us (PR_SET_PDEATHSIG). */
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  pid_t pid;
  int err = posix_spawn(&pid, sup->exe, &fa, &attr, argv, env);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    op_log_error("cannot start worker %s: %s", sup->exe, strerror(err));
    goto out;
  }
  if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)
    op_log_warn("worker socket: cannot set O_NONBLOCK: %s", strerror(errno));
  slot->state = SLOT_STARTING;
  slot->pid = pid;
  slot->fd = sv[0];
  sv[0] = -1;
  op_proto_reader_init(&slot->reader);
  slot->job_ctx = NULL;
  slot->kill_code = 0;
  slot->said_hello = 0;
  slot->parked = 0;
  slot->retiring = 0;
  slot->jobs_done = 0;
  op_sandbox_status_parse(NULL, &slot->sandbox);
  slot->last_heard_ms = now_ms();
  slot->ping_sent_ms = 0;
  slot->deadline_ms = sup->cfg.start_timeout_ms ? slot->last_heard_ms + sup->cfg.start_timeout_ms : 0;
  op_log_debug("started worker %u, pid %d", index, (int)pid);
  rc = 0;
out:
  if (fa_ready)
    posix_spawn_file_actions_destroy(&fa);
  free(env);
  if (child_fd >= 0 && child_fd != sv[1])
    close(child_fd);
  if (sv[1] >= 0)
    close(sv[1]);
  if (sv[0] >= 0)
    close(sv[0]);
  return rc;
}

/* Marks a slot dying (killing its process unless it is already going, as on
 * EOF); its job, if any, is reported when the process is reaped. */
static void end_slot(slot_t *slot, int why, int send_kill) {
  if (send_kill && slot->pid > 0)
    kill(slot->pid, SIGKILL);
  if (slot->state != SLOT_DYING) {
    slot->state = SLOT_DYING;
    slot->dying_since_ms = now_ms();
  }
  if (why != 0 && slot->kill_code == 0)
    slot->kill_code = why;
  if (slot->fd >= 0) {
    close(slot->fd);
    slot->fd = -1;
  }
  op_proto_reader_dispose(&slot->reader);
}

static void describe_status(int status, char *buf, size_t len, int *sig) {
  *sig = 0;
  if (WIFSIGNALED(status)) {
    *sig = WTERMSIG(status);
    snprintf(buf, len, "was killed by signal %d (%s)", *sig, strsignal(*sig));
  } else if (WIFEXITED(status)) {
    snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
  } else {
    snprintf(buf, len, "ended (status 0x%x)", (unsigned)status);
  }
}

/* Called when a slot's process has been reaped with the given status. */
static void slot_reaped(op_supervisor_t *sup, slot_t *slot, unsigned index, int status) {
  char how[96];
  int sig;
  describe_status(status, how, sizeof how, &sig);
  if (slot->job_ctx != NULL) {
    op_sup_event_t *ev = push_event(sup, index);
    if (ev != NULL) {
      ev->type = OP_SUP_EV_LOST;
      ev->job_ctx = slot->job_ctx;
      ev->code = slot->kill_code == OP_ETIMEOUT ? OP_ETIMEOUT : OP_ECRASH;
      ev->term_signal = sig;
      ev->pid = slot->pid;
      ev->worker_id = index;
      if (ev->code == OP_ETIMEOUT)
        snprintf(ev->message, sizeof ev->message, "the job ran past its timeout; worker %d was killed", (int)slot->pid);
      else
        snprintf(ev->message, sizeof ev->message, "worker %d %s while running the job", (int)slot->pid, how);
    }
    op_log_warn("worker %u (pid %d) %s during a job", index, (int)slot->pid, how);
  } else if (slot->kill_code == 0 && !slot->retiring) {
    op_log_warn("worker %u (pid %d) %s", index, (int)slot->pid, how);
  }
  uint64_t now = now_ms();
  if (!slot->said_hello) {
    slot->fast_deaths++;
    unsigned shift = slot->fast_deaths < 7 ? slot->fast_deaths : 7;
    slot->restart_at_ms = now + (100u << shift); /* 200 ms .. 12.8 s */
  } else {
    slot->fast_deaths = 0;
    slot->restart_at_ms = now;
  }
  if (slot->fd >= 0)
    close(slot->fd);
  op_proto_reader_dispose(&slot->reader);
  slot->fd = -1;
  slot->pid = -1;
  slot->job_ctx = NULL;
  slot->state = SLOT_EMPTY;
  slot->parked = sup->cfg.lazy;
  sup->changed = 1;
  if (slot->retiring) {
    op_log_debug("worker %u retired", index);
    slot->retiring = 0;
    slot->fast_deaths = 0;
  } else {
    sup->restarts++;
  }
}

int op_supervisor_create(const op_supervisor_config_t *cfg, op_supervisor_t **out, op_error_t *err) {
  *out = NULL;
  op_supervisor_t *sup = NULL;
  int rc = 0;
  unsigned workers = cfg->workers ? cfg->workers : 1;
  const char *device = cfg->device ? cfg->device : "cpu";
  const char *log_level = cfg->log_level ? cfg->log_level : "";
  if (workers > OP_SUPERVISOR_MAX_WORKERS) {
    rc = op_error_set(err, OP_EUSAGE, "bad_options", "%u workers asked for; a pool runs at most %u", workers,
                      OP_SUPERVISOR_MAX_WORKERS);
    goto out;
  }
  if ((sup = calloc(1, sizeof *sup)) == NULL) {
    rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory creating the worker pool");
    goto out;
  }
  sup->cfg = *cfg;
  sup->cfg.workers = workers;
  sup->wake_fd = -1;
  if (cfg->sandbox != NULL && (sup->sandbox = strdup(cfg->sandbox)) == NULL) {
    rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory creating the worker pool");
    goto out;
  }
  if ((size_t)snprintf(sup->device, sizeof sup->device, "%s", device) >= sizeof sup->device) {
    rc = op_error_set(err, OP_EUSAGE, "bad_options", "device name \"%.40s...\" is longer than %zu bytes", device,
                      sizeof sup->device - 1);
    goto out;
  }
  if ((size_t)snprintf(sup->log_level, sizeof sup->log_level, "%s", log_level) >= sizeof sup->log_level) {
    rc = op_error_set(err, OP_EUSAGE, "bad_options", "log level \"%.40s...\" is longer than %zu bytes", log_level,
                      sizeof sup->log_level - 1);
    goto out;
  }
  if (cfg->exe_path != NULL) {
    if ((size_t)snprintf(sup->exe, sizeof sup->exe, "%s", cfg->exe_path) >= sizeof sup->exe) {
      rc =
          op_error_set(err, OP_EUSAGE, "bad_options", "the worker binary's path is longer than %d bytes", PATH_MAX - 1);
      goto out;
    }
  } else {
    ssize_t n = readlink("/proc/self/exe", sup->exe, sizeof sup->exe - 1);
    if (n <= 0) {
      rc = op_error_set(err, OP_EINTERNAL, NULL, "cannot find our own binary: %s", strerror(errno));
      goto out;
    }
    sup->exe[n] = '\0';
  }
  /* The event queue cannot overflow at 2 events per slot. Events are pushed
   * in two places: a REPLY when a busy slot's socket delivers its job's
   * answer (the slot turns idle), and a LOST when a slot whose process held a
   * job is reaped (the slot turns empty). op_supervisor_poll reads sockets
   * only when the queue is empty, so take the last time T it did: every
   * pending event was pushed at T or after. At T each slot yields at most one
   * REPLY (it holds at most one job, and is idle once that job answers).
   * After T no socket is read, so no slot answers again and no new worker
   * says hello; a slot can therefore be given at most one more job (only if
   * it was idle) and lose at most one job to a reap, after which it is empty
   * or starting and takes no job until sockets are read again. So at most one
   * REPLY and one LOST per slot are pending: 2 x workers, plus a margin. */
  sup->ev_cap = 2 * workers + EVENT_SLACK;
  sup->slots = calloc(workers, sizeof *sup->slots);
  sup->events = calloc(sup->ev_cap, sizeof *sup->events);
  sup->pfd = calloc(workers + 1, sizeof *sup->pfd); /* + the wake fd */
  sup->pfd_slot = calloc(workers, sizeof *sup->pfd_slot);
  if (sup->slots == NULL || sup->events == NULL || sup->pfd == NULL || sup->pfd_slot == NULL) {
    rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory creating a pool of %u workers", workers);
    goto out;
  }
  sup->n_slots = workers;
  for (unsigned i = 0; i < sup->n_slots; i++) {
    sup->slots[i].fd = -1;
    sup->slots[i].pid = -1;
    sup->slots[i].parked = sup->cfg.lazy;
  }
  for (unsigned i = 0; i < sup->n_slots && !sup->cfg.lazy; i++) {
    if (spawn_slot(sup, &sup->slots[i], i) < 0) {
      rc = op_error_set(err, OP_EINTERNAL, NULL, "cannot start worker processes from %s",
                        cfg->exe_path ? cfg->exe_path : "/proc/self/exe");
      goto out;
    }
  }
  *out = sup;
  sup = NULL;
out:
  op_supervisor_destroy(sup);
  return rc;
}

void op_supervisor_destroy(op_supervisor_t *sup) {
  if (sup == NULL)
    return;
  json_t *bye = json_pack("{s:s}", "op", "exit");
  for (unsigned i = 0; i < sup->n_slots; i++) {
    slot_t *s = &sup->slots[i];
    if (s->fd >= 0 && bye != NULL && (s->state == SLOT_IDLE || s->state == SLOT_STARTING))
      op_proto_send(s->fd, bye);
    else if (s->pid > 0)
      kill(s->pid, SIGKILL);
    if (s->fd >= 0) {
      /* Closing our end is also an exit request: the worker reads EOF. */
      close(s->fd);
      s->fd = -1;
    }
  }
  json_decref(bye);
  uint64_t give_up = now_ms() + 2000;
  for (unsigned i = 0; i < sup->n_slots; i++) {
    slot_t *s = &sup->slots[i];
    while (s->pid > 0) {
      pid_t r = waitpid(s->pid, NULL, WNOHANG);
      if (r == s->pid || (r < 0 && errno != EINTR))
        break;
      if (now_ms() > give_up)
        kill(s->pid, SIGKILL);
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    op_proto_reader_dispose(&s->reader);
  }
  while (sup->ev_count > 0) {
    op_sup_event_dispose(&sup->events[sup->ev_head]);
    sup->ev_head = (sup->ev_head + 1) % sup->ev_cap;
    sup->ev_count--;
  }
  free(sup->events);
  free(sup->pfd);
  free(sup->pfd_slot);
  free(sup->slots);
  free(sup->sandbox);
  free(sup);
}

unsigned op_supervisor_idle_count(const op_supervisor_t *sup) {
  unsigned n = 0;
  for (unsigned i = 0; i < sup->n_slots; i++)
    n += sup->slots[i].state == SLOT_IDLE && sup->slots[i].ping_sent_ms == 0;
  return n;
}

int op_supervisor_dispatch_to(op_supervisor_t *sup, unsigned i, json_t *job, unsigned timeout_ms, void *job_ctx) {
  if (i >= sup->n_slots)
    return OP_EINTERNAL;
  slot_t *s = &sup->slots[i];
  if (s->state != SLOT_IDLE || s->ping_sent_ms != 0)
    return OP_EINTERNAL;
  uint64_t id = ++sup->next_job_id;
  json_object_set_new(job, "job", json_integer((json_int_t)id));
  if (op_proto_send(s->fd, job) < 0) {
    op_log_warn("worker %u (pid %d): sending a job failed; replacing it", i, (int)s->pid);
    end_slot(s, 0, 1);
    return OP_EINTERNAL;
  }
  s->state = SLOT_BUSY;
  s->job_ctx = job_ctx;
  s->job_id = id;
  s->deadline_ms = timeout_ms ? now_ms() + timeout_ms : 0;
  return (int)i;
}

int op_supervisor_dispatch(op_supervisor_t *sup, json_t *job, unsigned timeout_ms, void *job_ctx) {
  for (unsigned i = 0; i < sup->n_slots; i++) {
    int w = op_supervisor_dispatch_to(sup, i, job, timeout_ms, job_ctx);
    if (w >= 0)
      return w;
  }
  return OP_EINTERNAL;
}

unsigned op_supervisor_size(const op_supervisor_t *sup) {
  return sup->n_slots;
}

void op_supervisor_worker(const op_supervisor_t *sup, unsigned index, op_worker_info_t *info) {
  memset(info, 0, sizeof *info);
  if (index >= sup->n_slots)
    return;
  const slot_t *s = &sup->slots[index];
  info->pid = s->pid > 0 ? s->pid : 0;
  info->starting = s->state == SLOT_STARTING;
  info->idle = s->state == SLOT_IDLE && s->ping_sent_ms == 0;
  info->busy = s->state == SLOT_BUSY;
  info->exiting = s->state == SLOT_DYING;
  info->jobs_done = s->jobs_done;
  info->sandbox = s->sandbox;
}

int op_supervisor_start_worker(op_supervisor_t *sup) {
  uint64_t now = now_ms();
  for (unsigned i = 0; i < sup->n_slots; i++) {
    slot_t *s = &sup->slots[i];
    if (s->state == SLOT_EMPTY && s->parked && now >= s->restart_at_ms) {
      if (spawn_slot(sup, s, i) < 0) {
        s->restart_at_ms = now + 1000;
        return OP_EINTERNAL;
      }
      return (int)i;
    }
  }
  return OP_EINTERNAL;
}

int op_supervisor_kill(op_supervisor_t *sup, unsigned index) {
  if (index >= sup->n_slots || sup->slots[index].pid <= 0 || sup->slots[index].state == SLOT_DYING)
    return OP_EINTERNAL;
  end_slot(&sup->slots[index], 0, 1);
  return 0;
}

int op_supervisor_retire(op_supervisor_t *sup, unsigned index) {
  if (index >= sup->n_slots || sup->slots[index].state != SLOT_IDLE)
    return OP_EINTERNAL;
  slot_t *s = &sup->slots[index];
  json_t *bye = json_pack("{s:s}", "op", "exit");
  if (bye != NULL)
    op_proto_send(s->fd, bye);
  json_decref(bye);
  s->retiring = 1;
  end_slot(s, 0, 0); /* closing our end is an exit request too */
  return 0;
}

int op_supervisor_cancel(op_supervisor_t *sup, void *job_ctx) {
  for (unsigned i = 0; i < sup->n_slots; i++) {
    slot_t *s = &sup->slots[i];
    if (s->job_ctx == job_ctx && (s->state == SLOT_BUSY || s->state == SLOT_DYING)) {
      s->job_ctx = NULL;
      end_slot(s, 0, 1);
      return 0;
    }
  }
  return OP_EINTERNAL;
}

unsigned op_supervisor_pids(const op_supervisor_t *sup, pid_t *pids, unsigned max) {
  unsigned n = 0;
  for (unsigned i = 0; i < sup->n_slots; i++) {
    if (sup->slots[i].pid > 0 && sup->slots[i].state != SLOT_DYING) {
      if (n < max)
        pids[n] = sup->slots[i].pid;
      n++;
    }
  }
  return n;
}

void op_supervisor_set_wake_fd(op_supervisor_t *sup, int fd) {
  sup->wake_fd = fd;
}

unsigned op_supervisor_restarts(const op_supervisor_t *sup) {
  unsigned n = sup->restarts;
  for (unsigned i = 0; i < sup->n_slots; i++)
    n += sup->slots[i].state == SLOT_DYING && !sup->slots[i].retiring; /* killed or lost, not reaped yet */
  return n;
}

unsigned op_supervisor_started(const op_supervisor_t *sup) {
  return sup->started;
}

int op_supervisor_cannot_start(const op_supervisor_t *sup, unsigned tries) {
  int given_up = 0;
  for (unsigned i = 0; i < sup->n_slots; i++) {
    const slot_t *s = &sup->slots[i];
    if (s->state == SLOT_IDLE || s->state == SLOT_BUSY)
      return 0;
    if (s->fast_deaths >= tries)
      given_up = 1;
    else if (!(s->parked && s->fast_deaths == 0)) /* a lazy slot never asked to start says nothing */
      return 0;
  }
  return given_up;
}

/* Says once per pool what of the sandbox this kernel does not give. */
static void note_sandbox(op_supervisor_t *sup, const op_sandbox_status_t *st) {
  if (sup->sandbox == NULL || sup->warned_sandbox || !st->known)
    return;
  sup->warned_sandbox = 1;
  if (!st->enabled)
    op_log_warn("workers run without a sandbox (sandbox: off): a hostile document that takes over a worker has "
                "this server's user, files and network");
  else if (st->mountns)
    op_log_info("sandbox: workers run under seccomp, a mount namespace of their paths only (no Landlock here)%s%s",
                st->netns ? ", a network namespace" : "", st->uid > 0 ? ", an unprivileged user" : "");
  else if (st->landlock_abi == 0)
    op_log_warn("sandbox: this kernel has no Landlock, so workers can read any file their user can; the system "
                "call filter%s still applies",
                st->netns ? " and the network namespace" : "");
  else
    op_log_info("sandbox: workers run under seccomp, Landlock ABI %d%s%s", st->landlock_abi,
                st->netns ? ", a network namespace" : "", st->uid > 0 ? ", an unprivileged user" : "");
}

/* A message from a worker. */
static void slot_message(op_supervisor_t *sup, slot_t *s, unsigned index, json_t *msg) {
  const char *op = json_string_value(json_object_get(msg, "op"));
  s->last_heard_ms = now_ms();
  if (op == NULL) {
    op_log_warn("worker %u sent a message without \"op\"; ignored", index);
  } else if (strcmp(op, "hello") == 0) {
    if (s->state == SLOT_STARTING) {
      op_log_debug("worker %u (pid %d) is ready", index, (int)s->pid);
      s->state = SLOT_IDLE;
      sup->started++;
      sup->changed = 1;
      s->said_hello = 1;
      s->fast_deaths = 0;
      s->deadline_ms = 0;
      op_sandbox_status_parse(json_object_get(msg, "sandbox"), &s->sandbox);
      note_sandbox(sup, &s->sandbox);
    }
  } else if (strcmp(op, "pong") == 0) {
    s->ping_sent_ms = 0;
  } else if (strcmp(op, "log") == 0) {
    /* reserved for external workers; built-in ones log to stderr */
  } else if (s->state == SLOT_BUSY && (uint64_t)json_integer_value(json_object_get(msg, "job")) == s->job_id) {
    op_sup_event_t *ev = push_event(sup, index);
    if (ev != NULL) {
      ev->type = OP_SUP_EV_REPLY;
      ev->job_ctx = s->job_ctx;
      ev->reply = json_incref(msg);
      ev->pid = s->pid;
      ev->worker_id = index;
    }
    s->state = SLOT_IDLE;
    s->job_ctx = NULL;
    s->deadline_ms = 0;
    s->jobs_done++;
  } else {
    op_log_debug("worker %u: stale or unexpected \"%s\" message ignored", index, op);
  }
  json_decref(msg);
}

static void housekeeping(op_supervisor_t *sup) {
  uint64_t now = now_ms();
  for (unsigned i = 0; i < sup->n_slots; i++) {
    slot_t *s = &sup->slots[i];
    if (s->pid > 0) {
      int status;
      pid_t r;
      do
        r = waitpid(s->pid, &status, WNOHANG);
      while (r < 0 && errno == EINTR);
      if (r == s->pid) {
        slot_reaped(sup, s, i, status);
        continue;
      }
    }
    switch (s->state) {
    case SLOT_EMPTY:
      if (!s->parked && now >= s->restart_at_ms && spawn_slot(sup, s, i) < 0)
        s->restart_at_ms = now + 1000;
      break;
    case SLOT_STARTING:
      if (s->deadline_ms && now > s->deadline_ms) {
        op_log_warn("worker %u (pid %d) did not start in %u ms; killing it", i, (int)s->pid, sup->cfg.start_timeout_ms);
        end_slot(s, 0, 1);
      }
      break;
    case SLOT_BUSY:
      if (s->deadline_ms && now > s->deadline_ms) {
        op_log_warn("worker %u (pid %d): job ran past its timeout; killing it", i, (int)s->pid);
        end_slot(s, OP_ETIMEOUT, 1);
      }
      break;
    case SLOT_IDLE:
      if (s->ping_sent_ms != 0) {
        if (now - s->ping_sent_ms > sup->cfg.heartbeat_timeout_ms) {
          op_log_warn("worker %u (pid %d) stopped answering heartbeats; replacing it", i, (int)s->pid);
          end_slot(s, 0, 1);
        }
      } else if (sup->cfg.heartbeat_interval_ms && now - s->last_heard_ms >= sup->cfg.heartbeat_interval_ms) {
        json_t *ping = json_pack("{s:s}", "op", "ping");
        if (ping == NULL || op_proto_send(s->fd, ping) < 0)
          end_slot(s, 0, 1);
        else
          s->ping_sent_ms = now;
        json_decref(ping);
      }
      break;
    case SLOT_DYING:
      if (now - s->dying_since_ms > REAP_GRACE_MS && s->pid > 0)
        kill(s->pid, SIGKILL);
      break;
    }
  }
}

static int take_event(op_supervisor_t *sup, op_sup_event_t *ev) {
  if (sup->ev_count == 0)
    return 0;
  *ev = sup->events[sup->ev_head];
  sup->ev_head = (sup->ev_head + 1) % sup->ev_cap;
  sup->ev_count--;
  return 1;
}

/* A job's outcome that found the event queue full is gone: its caller would
 * wait for it forever, so the pool reports it as fatal rather than go on. */
static int lost_events(op_supervisor_t *sup, op_error_t *err) {
  return op_error_set(err, OP_EINTERNAL, NULL,
                      "the worker pool's event queue (%u events for %u workers) overflowed: %u job outcome(s) lost",
                      sup->ev_cap, sup->n_slots, sup->ev_lost);
}

int op_supervisor_poll(op_supervisor_t *sup, int timeout_ms, op_sup_event_t *ev, op_error_t *err) {
  uint64_t until = now_ms() + (timeout_ms > 0 ? (uint64_t)timeout_ms : 0);
  struct pollfd *pfd = sup->pfd;
  unsigned *map = sup->pfd_slot;
  for (;;) {
    housekeeping(sup);
    if (sup->ev_lost > 0)
      return lost_events(sup, err);
    if (take_event(sup, ev))
      return 1;

    unsigned n = 0;
    int dying = 0;
    for (unsigned i = 0; i < sup->n_slots; i++) {
      if (sup->slots[i].fd >= 0) {
        pfd[n].fd = sup->slots[i].fd;
        pfd[n].events = POLLIN;
        map[n++] = i;
      }
      dying |= sup->slots[i].state == SLOT_DYING || (sup->slots[i].state == SLOT_EMPTY && !sup->slots[i].parked);
    }
    unsigned wake_at = n;
    if (sup->wake_fd >= 0) {
      pfd[n].fd = sup->wake_fd;
      pfd[n++].events = POLLIN;
    }
    uint64_t now = now_ms();
    /* Wake often enough for reaping, deadlines and heartbeats. */
    int wait = (int)(until > now ? until - now : 0);
    int tick = dying ? 20 : 100;
    if (wait > tick)
      wait = tick;
    int r = poll(pfd, n, wait);
    if (r < 0 && errno != EINTR)
      return op_error_set(err, OP_EINTERNAL, NULL, "poll failed: %s", strerror(errno));
    /* Someone has news for our caller, which drains the fd; what the
     * workers sent is read first, so that a caller slow to drain it (or a
     * stream of wakes) never starves their replies. */
    int woken = r > 0 && sup->wake_fd >= 0 && pfd[wake_at].revents != 0;
    for (unsigned k = 0; r > 0 && k < n; k++) {
      if (pfd[k].revents == 0 || k == wake_at)
        continue;
      slot_t *s = &sup->slots[map[k]];
      int rc = op_proto_reader_fill(&s->reader, s->fd);
      json_t *msg;
      int got;
      while ((got = op_proto_reader_next(&s->reader, &msg)) == 1)
        slot_message(sup, s, map[k], msg);
      if (got < 0) {
        op_log_error("worker %u (pid %d) broke the protocol; killing it", map[k], (int)s->pid);
        end_slot(s, 0, 1);
      } else if (rc < 0) {
        /* EOF: the worker is exiting or died; reap it to learn how. */
        end_slot(s, 0, 0);
      }
    }
    if (sup->ev_lost > 0)
      return lost_events(sup, err);
    if (take_event(sup, ev))
      return 1;
    if (woken)
      return 0;
    if (sup->changed) {
      sup->changed = 0;
      return 0; /* not an event, but work may go out now rather than at the timeout */
    }
    if (now_ms() >= until)
      return 0;
  }
}

/*
 * service.c: the durable task service's life: create, run, drain, destroy.
 *
 * The service thread loops: it takes the requests other threads posted to
 * its mailbox (cancels, model loads and unloads, memory reports), claims
 * tasks no node holds (recover.c; each store.poll, or at once on a local
 * submission or another node's NOTIFY), fails tasks that waited
 * past the queue timeout, runs one scheduler step, and now and then removes
 * tasks past their retention, refreshes the snapshot other threads read and
 * writes the node's heartbeat (node.c).
 * The scheduler's callbacks write every page start, end and retry, and every
 * task end, to the store before anything else happens (record.c), so a kill -9
 * at any moment leaves a record that the next start resumes from (recover.c).
 */
#include "core/service_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mem/mem.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/notify.h"
#include "worker/supervisor.h"

#define MAILS_PER_TURN 64 /* mail taken per turn of the loop; the rest waits for the next */

void op_service_config_init(op_service_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->data_dir = "./var";
  cfg->workers = op_usable_cores();
  if (cfg->workers > OP_SUPERVISOR_MAX_WORKERS)
    cfg->workers = OP_SUPERVISOR_MAX_WORKERS; /* a default never fails the start */
  cfg->max_queue = 100;
  cfg->min_free_bytes = UINT64_C(512) << 20;
  cfg->queue_timeout_s = 300;
  cfg->page_timeout_s = 300;
  cfg->retention_s = 7 * 24 * 3600;
  cfg->max_attempts = 3;
  cfg->drain_timeout_s = 30;
  cfg->task_cpu_budget_s = 7200;
  cfg->heartbeat_s = 10;
  cfg->lease_s = 30;
  cfg->poll_s = 1;
  cfg->claim_batch = 16;
  cfg->sandbox = "on";
  cfg->worker_user = "nobody";
  op_doc_limits_init(&cfg->limits);
}

/* GPUs through NVML: none is the normal CPU-only case, said once. */
static int open_gpus(op_service_t *svc, op_error_t *err) {
  op_error_t e;
  if (op_nvml_open(&svc->nvml, &e) < 0) {
    op_log_info("GPUs: none (%s); the cpu device only", e.message);
    svc->nvml = NULL;
    return 0;
  }
  svc->n_gpus = op_nvml_count(svc->nvml);
  if (svc->n_gpus > OP_SCHED_MAX_GPUS) {
    op_log_warn("GPUs: %u found; the first %d are used", svc->n_gpus, OP_SCHED_MAX_GPUS);
    svc->n_gpus = OP_SCHED_MAX_GPUS;
  }
  for (unsigned g = 0; g < svc->n_gpus; g++) {
    op_gpu_info_t info;
    if (op_nvml_info(svc->nvml, g, &info, &e) < 0) {
      op_log_warn("GPU cuda:%u: %s; it gets no work", g, e.message);
      continue;
    }
    const char *text = svc->settings.gpu_budget_text[0] ? svc->settings.gpu_budget_text : "80%";
    if (op_mem_budget_parse(text, info.total_bytes, &svc->gpu_budget[g], err) < 0)
      return op_error_set(err, OP_EUSAGE, "bad_options", "devices.cuda.budget on cuda:%u (%s): %s", g, info.name,
                          err->message);
    char cap[32], bud[32];
    op_mem_format(info.total_bytes, cap, sizeof cap);
    op_mem_format(svc->gpu_budget[g], bud, sizeof bud);
    op_log_info("memory: cuda:%u %s, capacity %s, budget %s", g, info.name, cap, bud);
  }
  return 0;
}

/* The data directory, its tasks directory, the store and the wake pipe. */
static int open_data(op_service_t *svc, op_error_t *err) {
  snprintf(svc->data_dir, sizeof svc->data_dir, "%s", svc->cfg.data_dir);
  snprintf(svc->tasks_dir, sizeof svc->tasks_dir, "%s/tasks", svc->data_dir);
  if ((mkdir(svc->data_dir, 0700) < 0 && errno != EEXIST) || (mkdir(svc->tasks_dir, 0700) < 0 && errno != EEXIST))
    return op_error_set(err, OP_EIO, "internal", "cannot create the data directory %s: %s", svc->data_dir,
                        strerror(errno));
  const char *where = svc->cfg.store_url && svc->cfg.store_url[0] ? svc->cfg.store_url : svc->data_dir;
  if (strlen(where) >= sizeof svc->store_where)
    return op_error_set(err, OP_EUSAGE, "bad_options", "the store URL is longer than %zu bytes",
                        sizeof svc->store_where - 1);
  snprintf(svc->store_where, sizeof svc->store_where, "%s", where);
  int rc = op_store_open(svc->store_where, &svc->store, err);
  if (rc < 0)
    return rc;
  /* A test hook (docs/configuration.md): the service's own writes fail every Nth statement. */
  const char *fail_every = getenv("OCRPOOL_TEST_STORE_FAIL_EVERY");
  if (fail_every != NULL && atoi(fail_every) > 0)
    op_store_test_fail_every(svc->store, (unsigned)atoi(fail_every));
  if (pipe2(svc->wake, O_CLOEXEC | O_NONBLOCK) < 0)
    return op_error_set(err, OP_EINTERNAL, NULL, "pipe: %s", strerror(errno));
  /* Cancels matter only for unfinished tasks, of which there are at most the
   * queue's worth waiting plus those running: room for twice that. */
  if (op_mailbox_init(&svc->mailbox, 2 * ((size_t)svc->cfg.max_queue + svc->cfg.workers), svc->wake[1]) < 0)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  return 0;
}

/* The workers' sandbox: the tasks directory read-write, the system's files
 * read-only; run as root, workers become server.worker_user, who is given the
 * tasks directory (each task's files follow as their jobs start). *text is the
 * workers' --sandbox (caller frees), NULL with sandbox: off. */
static int plan_sandbox(op_service_t *svc, char **text, op_sched_config_t *qcfg, op_error_t *err) {
  const op_service_config_t *cfg = &svc->cfg;
  *text = NULL;
  const char *mode = cfg->sandbox ? cfg->sandbox : "on";
  if (strcmp(mode, "on") != 0 && strcmp(mode, "off") != 0)
    return op_error_set(err, OP_EUSAGE, "bad_config", "server.sandbox: on or off, not \"%s\"", mode);
  op_sandbox_config_t sb;
  op_sandbox_config_init(&sb);
  sb.enabled = strcmp(mode, "on") == 0;
  sb.write_dirs[sb.n_write++] = svc->tasks_dir;
  /* The workers' /tmp, emptied of what killed workers left (a dot name: no task's). */
  snprintf(svc->worker_tmp, sizeof svc->worker_tmp, "%s/.tmp", svc->tasks_dir);
  op_remove_tree(svc->worker_tmp);
  if (mkdir(svc->worker_tmp, 0700) < 0 && errno != EEXIST)
    return op_error_set(err, OP_EIO, "internal", "cannot create %s: %s", svc->worker_tmp, strerror(errno));
  sb.tmp_dir = svc->worker_tmp;
  if (sb.enabled && op_sandbox_set_user(&sb, cfg->worker_user, err) < 0)
    return err->code;
  if (sb.drop_user && (chown(svc->tasks_dir, sb.uid, sb.gid) < 0 || chown(svc->worker_tmp, sb.uid, sb.gid) < 0)) {
    op_log_warn("cannot give %s to the workers' user (%s): workers stay root", svc->tasks_dir, strerror(errno));
    sb.drop_user = 0;
  }
  if (sb.drop_user) {
    qcfg->give_files = 1;
    qcfg->worker_uid = sb.uid;
    qcfg->worker_gid = sb.gid;
  }
  if ((*text = op_sandbox_encode(&sb)) == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  return 0;
}

/* The worker pool and the scheduler over it. */
static int start_pool(op_service_t *svc, op_error_t *err) {
  const op_service_config_t *cfg = &svc->cfg;
  op_sched_config_t qcfg;
  op_sched_config_init(&qcfg);
  char *sandbox = NULL;
  int rc = plan_sandbox(svc, &sandbox, &qcfg, err);
  if (rc < 0)
    return rc;
  op_supervisor_config_t scfg;
  op_supervisor_config_init(&scfg);
  scfg.sandbox = sandbox;
  scfg.workers = cfg->workers ? cfg->workers : op_usable_cores();
  scfg.log_level = cfg->log_level;
  if (cfg->log_level == NULL && svc->settings.log_level_text[0]) { /* no flag, no environment: the file's */
    op_log_set_level((op_log_level_t)op_log_level_parse(svc->settings.log_level_text));
    scfg.log_level = svc->settings.log_level_text;
  }
  scfg.lazy = 1; /* admission starts workers as memory allows */
  rc = op_supervisor_create(&scfg, &svc->sup, err);
  free(sandbox);
  if (rc < 0)
    return rc;
  op_supervisor_set_wake_fd(svc->sup, svc->wake[0]);
  qcfg.scratch_root = svc->tasks_dir;
  qcfg.page_timeout_ms = cfg->page_timeout_s * 1000u;
  qcfg.task_cpu_budget_s = cfg->task_cpu_budget_s;
  qcfg.render_cpu_ms = cfg->render_cpu_s * 1000u;
  qcfg.render_bytes = cfg->limits.max_render_bytes;
  if (cfg->max_attempts > 0) /* a crash is one kind of failed run: the same cap */
    qcfg.max_attempts = qcfg.max_crash_attempts = cfg->max_attempts;
  op__record_install(svc, &qcfg);
  svc->aging_s = qcfg.aging_s;
  qcfg.warning_share = svc->settings.warning_share;
  qcfg.critical_share = svc->settings.critical_share;
  qcfg.cooldown_s = svc->settings.cooldown_s;
  qcfg.defer_below = (int)svc->settings.defer_below;
  qcfg.nvml = svc->nvml;
  qcfg.n_gpus = svc->n_gpus;
  memcpy(qcfg.gpu_budget, svc->gpu_budget, sizeof qcfg.gpu_budget);
  qcfg.budget_bytes = svc->settings.budget;
  qcfg.policies = svc->settings.policies;
  qcfg.n_policies = svc->settings.n_policies;
  if ((svc->sched = op_sched_create(&qcfg, svc->sup)) == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  op_supervisor_start_worker(svc->sup); /* ready once one runs (a fresh worker retires when idle and unused) */
  for (unsigned i = 0; i < svc->settings.n_policies; i++)
    if (svc->settings.policies[i].preload) /* warmed up as memory allows; a failure is logged, never fatal */
      op_sched_model_request(svc->sched, &svc->settings.policies[i], 1);
  return 0;
}

int op_service_create(const op_service_config_t *cfg, op_service_t **out, op_error_t *err) {
  *out = NULL;
  op_service_t *svc = calloc(1, sizeof *svc);
  if (svc == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  svc->cfg = *cfg;
  svc->wake[0] = svc->wake[1] = -1;
  svc->node.lock_fd = -1;
  pthread_mutex_init(&svc->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&svc->finished, &ca);
  pthread_condattr_destroy(&ca);
  int rc = OP_ENOMEM;
  if ((svc->metrics = op_metrics_create()) == NULL) {
    op_error_set(err, OP_ENOMEM, NULL, "out of memory");
    goto fail;
  }
  if ((rc = open_data(svc, err)) < 0)
    goto fail;
  /* Before anything touches the tasks: a refusal leaves another node's work alone. */
  if ((rc = op__node_start(svc, err)) < 0)
    goto fail;
  op__clean_leftovers(svc);
  if ((rc = op_settings_read(cfg, &svc->settings, err)) < 0)
    goto fail;
  char cap[32], bud[32];
  op_mem_format(svc->settings.capacity, cap, sizeof cap);
  op_mem_format(svc->settings.budget, bud, sizeof bud);
  op_log_info("memory: cpu capacity %s (%s), budget %s", cap, op_mem_cgroup_limit() ? "cgroup limit" : "MemTotal", bud);
  if ((rc = open_gpus(svc, err)) < 0 || (rc = start_pool(svc, err)) < 0)
    goto fail;
  op__snapshot_refresh(svc);
  op__node_beat(svc, 1); /* the row with the figures, before the server reports ready */
  op__review_tasks(svc); /* what the previous run left, first */
  op__claim_tasks(svc);
  if (svc->n_active > 0)
    op_log_info("recovered %zu unfinished tasks", svc->n_active);
  *out = svc;
  return 0;
fail:
  op_service_destroy(svc);
  return rc;
}

/* systemd's watchdog, pinged from the scheduler's own loop (at half its
 * interval): a loop that stops turning gets the service restarted. */
static void watchdog(void) {
  static double every = -1, last;
  if (every < 0)
    every = (double)op_notify_watchdog_usec() / 2e6;
  if (every > 0 && op_wall_time_s() - last >= every) {
    op_notify("WATCHDOG=1");
    last = op_wall_time_s();
  }
}

void op_service_watch_reload(op_service_t *svc, volatile sig_atomic_t *flag, void (*on_reload)(void *arg), void *arg) {
  svc->reload = flag;
  svc->on_reload = on_reload;
  svc->on_reload_arg = arg;
}

/* SIGHUP: the file again; what may change while tasks run is applied (settings.c). */
static void reload(op_service_t *svc) {
  if (svc->on_reload != NULL)
    svc->on_reload(svc->on_reload_arg);
  if (svc->cfg.config_file == NULL) {
    op_log_info("reload: no --config file: nothing to read again");
    return;
  }
  op_settings_t fresh;
  op_error_t e;
  if (op_settings_reread(&svc->settings, &svc->cfg, &fresh, &e) < 0) {
    op_log_error("reload: %s; the configuration in use stays", e.message);
    op_settings_dispose(&fresh);
    return;
  }
  op_log_info("reload: read %s", svc->cfg.config_file);
  op_settings_apply(&svc->settings, &fresh, &svc->cfg);
  const op_settings_t *s = &svc->settings;
  op_sched_set_limits(svc->sched, s->budget, s->warning_share, s->critical_share, s->cooldown_s, (int)s->defer_below);
  op_log_info("reload: done (--listen, --workers, --data-dir, the --tokens path, log format and GPUs need a restart)");
  op_settings_dispose(&fresh);
}

/* The requests other threads posted. */
static void take_mail(op_service_t *svc) {
  op_mail_t mail[MAILS_PER_TURN];
  size_t n = op_mailbox_take(&svc->mailbox, mail, MAILS_PER_TURN);
  for (size_t k = 0; k < n; k++) {
    const op_mail_t *m = &mail[k];
    if (m->kind == OP_MAIL_REPORT) {
      op__write_report(svc, "requested");
    } else if (m->kind == OP_MAIL_CANCEL) {
      for (size_t i = 0; i < svc->n_active; i++) {
        if (strcmp(svc->active[i]->row.id, m->task_id) == 0) {
          op_sched_cancel(svc->sched, svc->active[i]->task); /* its end is recorded after the step */
          break;
        }
      }
    } else {
      int load = m->kind == OP_MAIL_MODEL_LOAD;
      op_log_info("model %s: %s requested", m->model->name, load ? "load" : "unload");
      op_sched_model_request(svc->sched, m->model, load);
    }
  }
}

/* Now and then: retention, the node's heartbeat, the snapshot, readiness, a critical report. */
static void housekeeping(op_service_t *svc, double now) {
  op__node_beat(svc, 0); /* when one is due: every store.heartbeat */
  /* Once a minute is plenty for days of retention; a zero retention (tests,
   * or "keep nothing") is applied every second. */
  if (now - svc->last_retention > (svc->cfg.retention_s == 0 ? 1 : 60)) {
    op__apply_retention(svc);
    svc->last_retention = now;
  }
  if (now - svc->last_memory < 0.2)
    return;
  op__snapshot_refresh(svc);
  if (!atomic_load(&svc->ready) && op_supervisor_started(svc->sup) > 0) {
    atomic_store(&svc->ready, 1);
    op_log_info("ready: a worker started");
  }
  if (svc->report_reason != NULL) { /* after the snapshot: the report holds the latest figures */
    op__write_report(svc, svc->report_reason);
    svc->report_reason = NULL;
  }
  svc->last_memory = now;
}

/* Empties the wake pipe (op__wake); 1 if anything was in it. */
static int take_wake(op_service_t *svc) {
  char buf[64];
  int woken = 0;
  while (read(svc->wake[0], buf, sizeof buf) > 0)
    woken = 1;
  return woken;
}

/* Stopping: no new pages; running ones get drain_timeout_s to finish and be recorded. */
static int drain(op_service_t *svc, volatile sig_atomic_t *stop, op_error_t *err) {
  atomic_store(&svc->draining, 1);
  op_notify("STOPPING=1\nSTATUS=draining");
  op_sched_pause(svc->sched, 1);
  op__node_beat(svc, 1); /* the others see the drain at once */
  double deadline = op_wall_time_s() + svc->cfg.drain_timeout_s;
  size_t running = op_sched_running(svc->sched);
  if (running > 0)
    op_log_info("draining: waiting up to %u s for %zu running pages", svc->cfg.drain_timeout_s, running);
  while (op_sched_running(svc->sched) > 0 && op_wall_time_s() < deadline && *stop < 2) {
    watchdog();
    take_wake(svc);        /* a submission or a cancel still wakes us: left in the pipe, it would wake every poll */
    op__node_beat(svc, 0); /* a drain is alive until its pages end */
    int rc = op_sched_step(svc->sched, 200, err);
    if (rc < 0)
      return rc;
  }
  return 0;
}

void op__wake(op_service_t *svc) {
  char c = 1;
  ssize_t w = write(svc->wake[1], &c, 1); /* a full pipe already means "wake up" */
  (void)w;
}

int op_service_run(op_service_t *svc, volatile sig_atomic_t *stop, op_error_t *err) {
  double last_scan = 0;
  while (!*stop) {
    watchdog();
    int woken = take_wake(svc);
    if (svc->reload != NULL && *svc->reload) {
      *svc->reload = 0;
      reload(svc);
    }
    double now = op_wall_time_s();
    if (woken || now - last_scan > svc->cfg.poll_s)
      take_mail(svc);
    /* The store is reviewed each store.poll (its own tasks, cancels, lost
     * leases, expiries); new work is claimed then too, and at once when woken:
     * a local submission, room made by a task's end, or news from
     * another node (NOTIFY, read each turn: at most 200 ms late). */
    if (now - last_scan > svc->cfg.poll_s) {
      op__review_tasks(svc);
      op__claim_tasks(svc);
      op__expire_queued(svc);
      last_scan = now;
    } else if (woken || op_store_notified(svc->store)) {
      op__claim_tasks(svc);
    }
    housekeeping(svc, now);
    int rc = op_sched_step(svc->sched, 200, err);
    if (rc < 0)
      return rc;
  }
  return drain(svc, stop, err);
}

void op_service_destroy(op_service_t *svc) {
  if (svc == NULL)
    return;
  atomic_store(&svc->draining, 1);
  /* Tasks still running stay "running" in the store: the next start resumes them. */
  op_sched_destroy(svc->sched);
  svc->sched = NULL;
  op_supervisor_destroy(svc->sup);
  op__node_stop(svc); /* a clean stop: its row goes (a killed node's ages past the lease) */
  for (size_t i = 0; i < svc->n_active; i++) {
    op_task_destroy(svc->active[i]->task);
    free(svc->active[i]);
  }
  free(svc->active);
  op_snapshot_free(svc->snapshot);
  json_decref(svc->history);
  op_nvml_close(svc->nvml);
  op_metrics_destroy(svc->metrics);
  op_settings_dispose(&svc->settings);
  op_mailbox_dispose(&svc->mailbox);
  for (size_t i = 0; i < svc->pool_n; i++)
    op_store_close(svc->pool[i]);
  op_store_close(svc->store);
  if (svc->wake[0] >= 0)
    close(svc->wake[0]);
  if (svc->wake[1] >= 0)
    close(svc->wake[1]);
  pthread_cond_destroy(&svc->finished);
  pthread_mutex_destroy(&svc->lock);
  free(svc);
}

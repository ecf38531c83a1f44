/*
 * serve.c: `ocrpool serve`: the durable OCR task server.
 *
 * The main thread runs the task service (scheduler, workers, store); the HTTP
 * server answers on its own threads. SIGTERM or SIGINT: new submissions get
 * 503 and no new page starts; running pages get --drain-timeout to finish;
 * then the workers stop and the process exits 0. What is left stays queued in
 * the store and resumes at the next start. A second signal skips the wait.
 */
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/service.h"
#include "http/http.h"
#include "store/store.h"
#include "util/log.h"
#include "util/notify.h"
#include "util/parse.h"
#include "worker/supervisor.h"

static volatile sig_atomic_t stop_requested, reload_requested;

static void on_hangup(int sig) {
  (void)sig;
  reload_requested = 1;
}

/* The first SIGTERM/SIGINT drains, a second one stops at once. */
static void on_stop(int sig) {
  (void)sig;
  if (stop_requested < 2)
    stop_requested++;
}

static void usage(FILE *out) {
  fputs("Usage: ocrpool serve [OPTIONS]\n"
        "\n"
        "Serve the OCR task API (docs/api.md) with a pool of worker processes.\n"
        "\n"
        "Options:\n"
        "      --listen ADDR:PORT    where to listen (default 127.0.0.1:8080; port 0 picks one)\n"
        "      --data-dir DIR        database, uploads and results (default ./var)\n"
        "      --store URL           postgresql://... (several nodes) or sqlite:FILE; default: SQLite in\n"
        "                            the data directory; also store.url, OCRPOOL_STORE_URL\n"
        "      --workers N           worker processes at most, up to 1024 (default: usable cores)\n"
        "      --config FILE         YAML configuration: devices.cpu.budget, models (docs/configuration.md)\n"
        "      --memory-budget B     memory the server and its workers may use: a size (2GB) or a share\n"
        "                            of the machine or cgroup (80%, the default); also OCRPOOL_MEMORY_BUDGET\n"
        "      --tokens FILE         bearer tokens, `TOKEN SCOPE NAME` a line (default: no auth)\n"
        "      --max-queue N         tasks waiting before submissions get 429 (default 100)\n"
        "      --queue-timeout SEC   a task not started by then fails (default 300)\n"
        "      --page-timeout SEC    a page running longer is killed and retried (default 300)\n"
        "      --max-attempts N      runs of one page before it fails (default 3; two page timeouts\n"
        "                            end it sooner)\n"
        "      --retention-days N    finished tasks are removed after N days (default 7)\n"
        "      --max-input-size N    largest upload in bytes (K, M, G suffixes; default 256M)\n"
        "      --min-free-space N    uploads are refused (507) rather than leave less free on the data\n"
        "                            directory's disk (default 512M; 0 = no floor)\n"
        "      --max-connections-per-client N\n"
        "                            open connections from one address (default 128 of 256)\n"
        "      --health-listen ADDR:PORT\n"
        "                            a second listener for /healthz, /readyz and /metrics only, so\n"
        "                            probes get in while clients hold every connection\n"
        "      --drain-timeout SEC   on SIGTERM, running pages get this long to finish (default 30)\n"
        "      --task-cpu-budget SEC a task whose page runs add up to more fails (default 7200; 0 = none)\n"
        "      --render-cpu SEC      CPU a PDF page's drawing may take (default 0: half the page timeout)\n"
        "      --render-memory N     memory MuPDF may take for a PDF page beyond 16 bytes a pixel\n"
        "                            (default 128M; 0 = no cap)\n"
        "      --sandbox on|off      confine workers (seccomp, Landlock, no network; default on)\n"
        "      --worker-user NAME    run as root, workers become this user (default nobody; \"\" = root)\n"
        "      --port-file FILE      write the bound port there once listening\n"
        "      --log-level LEVEL     debug, info (default), warn, error; SIGHUP reloads it from --config\n"
        "      --log-format F        logfmt (default) or json; also OCRPOOL_LOG_FORMAT\n"
        "  -h, --help                show this help\n",
        out);
}

/* The server's settings from the file's server: section and the environment
 * (OCRPOOL_SERVER_*), for each one no flag gave. where[] records the source. */
typedef struct setting_s {
  const char *key; /* in server: */
  int flag;        /* its option's letter */
  /* s string (const char *), u count, d duration in s (unsigned), z size
   * (uint64_t), r retention days (kept as unsigned seconds) */
  char kind;
  char in;       /* the field is in 's' op_service_config_t or 'h' op_http_config_t */
  size_t offset; /* ... at this offset */
  /* The range, in the setting's unit: each largest value is far past any
   * real use and keeps what is derived from it (days in s, s in ms) within
   * 32 bits. */
  uint64_t least, max;
  const char *unset; /* a string setting's value when unset, as `ocrpool config` shows it */
} setting_t;

#define SVC(field) 's', offsetof(op_service_config_t, field)
#define HTTP(field) 'h', offsetof(op_http_config_t, field)

static const setting_t settings[] = {
    {"listen", 'l', 's', HTTP(listen), 0, 0, NULL},
    {"data_dir", 'd', 's', SVC(data_dir), 0, 0, NULL},
    {"workers", 'w', 'u', SVC(workers), 1, OP_SUPERVISOR_MAX_WORKERS, NULL},
    {"tokens", 't', 's', HTTP(tokens_file), 0, 0, "(none: no auth)"},
    {"max_queue", 'q', 'u', SVC(max_queue), 1, 1000000, NULL},
    {"queue_timeout", 'Q', 'd', SVC(queue_timeout_s), 1, 30 * 86400, NULL},
    {"page_timeout", 'P', 'd', SVC(page_timeout_s), 1, 86400, NULL},
    {"max_attempts", 'A', 'u', SVC(max_attempts), 1, 100, NULL},
    {"retention_days", 'r', 'r', SVC(retention_s), 0, 36500, NULL},
    {"max_input_size", 'm', 'z', SVC(limits.max_input_bytes), 1, UINT64_C(1) << 40, NULL},
    {"min_free_space", 'f', 'z', SVC(min_free_bytes), 0, UINT64_C(1) << 50, NULL},
    {"max_connections_per_client", 'c', 'u', HTTP(max_connections_per_client), 1, 100000, NULL},
    {"health_listen", 'H', 's', HTTP(health_listen), 0, 0, "(none: health on --listen)"},
    {"drain_timeout", 'D', 'd', SVC(drain_timeout_s), 0, 86400, NULL},
    {"task_cpu_budget", 'T', 'd', SVC(task_cpu_budget_s), 0, 30 * 86400, NULL},
    {"render_cpu", 'U', 'd', SVC(render_cpu_s), 0, 86400, NULL},
    {"render_memory", 'R', 'z', SVC(limits.max_render_bytes), 0, UINT64_C(1) << 40, NULL},
    {"sandbox", 'X', 's', SVC(sandbox), 0, 0, NULL},
    {"worker_user", 'W', 's', SVC(worker_user), 0, 0, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, NULL}};

static void *setting_field(const setting_t *st, op_service_config_t *scfg, op_http_config_t *hcfg) {
  return (st->in == 'h' ? (char *)hcfg : (char *)scfg) + st->offset;
}

/* Stores v, in the setting's unit and within its range, in its field. */
static void setting_store(const setting_t *st, void *field, uint64_t v) {
  if (st->kind == 'z')
    *(uint64_t *)field = v;
  else
    *(unsigned *)field = st->kind == 'r' ? (unsigned)v * 86400u : (unsigned)v;
}

static const setting_t *setting_of_flag(int flag) {
  const setting_t *st = settings;
  while (st->key != NULL && st->flag != flag)
    st++;
  return st;
}

/* store: url (OCRPOOL_STORE_URL) unless --store gave it; lease and heartbeat
 * (OCRPOOL_STORE_LEASE, OCRPOOL_STORE_HEARTBEAT), durations. */
static int apply_store(op_config_t *cfg, const unsigned char *given, op_service_config_t *scfg, op_error_t *err) {
  static const char *const keys[] = {"url", "lease", "heartbeat", "poll", "poll_only", "claim_batch", NULL};
  json_t *root = op_config_root(cfg);
  json_t *store = root ? json_object_get(root, "store") : NULL;
  if (store == NULL || json_is_null(store))
    return 0;
  const char *url = NULL;
  double lease = -1, heartbeat = -1, poll = -1;
  int poll_only = -1;
  unsigned batch = 0;
  int rc = op_config_keys(cfg, store, keys, "store", err);
  rc = rc ? rc : op_config_duration(cfg, store, "poll", &poll, err);
  rc = rc ? rc : op_config_bool(cfg, store, "poll_only", &poll_only, err);
  rc = rc ? rc : op_config_uint(cfg, store, "claim_batch", 1000, &batch, err);
  rc = rc ? rc : op_config_string(cfg, store, "url", &url, err);
  rc = rc ? rc : op_config_duration(cfg, store, "lease", &lease, err);
  rc = rc ? rc : op_config_duration(cfg, store, "heartbeat", &heartbeat, err);
  if (rc < 0)
    return rc;
  if (url != NULL && !given['S'])
    scfg->store_url = url;
  if (heartbeat >= 0)
    scfg->heartbeat_s = heartbeat;
  if (lease >= 0)
    scfg->lease_s = lease;
  if (poll >= 0)
    scfg->poll_s = poll;
  if (poll_only >= 0)
    scfg->poll_only = poll_only;
  if (batch > 0)
    scfg->claim_batch = batch;
  if (scfg->poll_s < 0.05 || scfg->poll_s > 60)
    return op_config_error(cfg, json_object_get(store, "poll"), err, "store.poll must be from 0.05 s to 60 s, not %g s",
                           scfg->poll_s);
  /* A beat may come a turn of the service's loop late: a lease of over two beats tells a slow node from a dead one. */
  if (scfg->heartbeat_s < 0.1)
    return op_config_error(cfg, json_object_get(store, "heartbeat"), err,
                           "store.heartbeat must be at least 0.1 s, not %g s", scfg->heartbeat_s);
  if (!(scfg->lease_s > 2 * scfg->heartbeat_s))
    return op_config_error(cfg, json_object_get(store, lease >= 0 ? "lease" : "heartbeat"), err,
                           "store.lease (%g s) must be more than twice store.heartbeat (%g s)", scfg->lease_s,
                           scfg->heartbeat_s);
  return 0;
}

static int apply_file(op_config_t *cfg, const unsigned char *given, op_service_config_t *scfg, op_http_config_t *hcfg,
                      op_error_t *err) {
  json_t *root = op_config_root(cfg);
  int src = apply_store(cfg, given, scfg, err);
  if (src < 0)
    return src;
  json_t *server = root ? json_object_get(root, "server") : NULL;
  if (server == NULL || json_is_null(server))
    return 0;
  static const char *keys[sizeof settings / sizeof settings[0]];
  for (size_t i = 0; settings[i].key != NULL; i++)
    keys[i] = settings[i].key;
  int rc = op_config_keys(cfg, server, keys, "server", err);
  for (size_t i = 0; rc == 0 && settings[i].key != NULL; i++) {
    const setting_t *st = &settings[i];
    if (given[st->flag])
      continue; /* the flag wins */
    json_t *node = json_object_get(server, st->key);
    void *field = setting_field(st, scfg, hcfg);
    const char *str = NULL;
    unsigned u = 0;
    double d = -1;
    uint64_t v = 0;
    switch (st->kind) {
    case 's':
      rc = op_config_string(cfg, server, st->key, &str, err);
      if (rc == 0 && str != NULL)
        *(const char **)field = str;
      continue;
    case 'u':
    case 'r':
      rc = op_config_uint(cfg, server, st->key, (unsigned)st->max, &u, err);
      v = u;
      break;
    case 'd':
      rc = op_config_duration(cfg, server, st->key, &d, err);
      v = d >= 0 ? (uint64_t)(d + 0.5) : 0;
      if (rc == 0 && d > (double)st->max)
        rc = op_config_error(cfg, node, err, "\"%s\" must be at most %llus, not %.0fs", st->key,
                             (unsigned long long)st->max, d);
      break;
    default:
      rc = op_config_size(cfg, server, st->key, &v, err);
      if (rc == 0 && v > st->max)
        rc = op_config_error(cfg, node, err, "\"%s\" must be at most %llu bytes", st->key, (unsigned long long)st->max);
      break;
    }
    if (rc < 0 || node == NULL || json_is_null(node))
      continue;
    if (v < st->least)
      rc = op_config_error(cfg, node, err, "\"%s\" must be at least %llu", st->key, (unsigned long long)st->least);
    else
      setting_store(st, field, v);
  }
  return rc;
}

/* ocrpool config: every setting, its value and where it came from. */
static void print_config(op_config_t *cfg, const unsigned char *given, const op_service_config_t *scfg,
                         const op_http_config_t *hcfg, const char *level_name, unsigned n_models) {
  static const struct {
    const char *key, *def;
    int flag;
  } rest[] = {{"log.level", "info", 'L'},        {"log.format", "logfmt", 'F'},      {"devices.cpu.budget", "80%", 'B'},
              {"devices.cpu.warning", "80%", 0}, {"devices.cpu.critical", "95%", 0}, {"devices.cuda.budget", "80%", 0},
              {"pressure.cooldown", "5s", 0},    {"pressure.defer_below", "5", 0},   {NULL, NULL, 0}};
  printf("# the configuration `ocrpool serve` would run with these options: flag > env > file > default\n");
  printf("# file: %s\n", scfg->config_file ? scfg->config_file : "(none)");
  char value[160], key[64];
  for (size_t i = 0; settings[i].key != NULL; i++) {
    const setting_t *st = &settings[i];
    const void *field = setting_field(st, (op_service_config_t *)scfg, (op_http_config_t *)hcfg);
    switch (st->kind) {
    case 's':
      snprintf(value, sizeof value, "%s", *(const char *const *)field ? *(const char *const *)field : st->unset);
      break;
    case 'u':
      snprintf(value, sizeof value, "%u", *(const unsigned *)field);
      break;
    case 'd':
      snprintf(value, sizeof value, "%us", *(const unsigned *)field);
      break;
    case 'r':
      snprintf(value, sizeof value, "%u", *(const unsigned *)field / 86400u);
      break;
    default:
      snprintf(value, sizeof value, "%lluMB", (unsigned long long)(*(const uint64_t *)field >> 20));
      break;
    }
    snprintf(key, sizeof key, "server.%s", st->key);
    const char *source = given[st->flag] ? "flag" : op_config_source(cfg, key);
    printf("%-24s %-26s %s\n", key, value, source ? source : "default");
  }
  for (size_t i = 0; rest[i].key != NULL; i++) {
    const char *source = op_config_source(cfg, rest[i].key), *v = rest[i].def;
    json_t *node = op_config_root(cfg);
    char path[64];
    snprintf(path, sizeof path, "%s", rest[i].key);
    char *save = NULL;
    for (char *part = strtok_r(path, ".", &save); part != NULL && node != NULL; part = strtok_r(NULL, ".", &save))
      node = json_is_object(node) ? json_object_get(node, part) : NULL;
    if (json_is_string(node))
      v = json_string_value(node);
    if (rest[i].flag == 'L' && level_name != NULL)
      v = level_name, source = given['L'] ? "flag" : "env";
    if (rest[i].flag == 'F' && (given['F'] || getenv("OCRPOOL_LOG_FORMAT")))
      v = getenv("OCRPOOL_LOG_FORMAT"), source = given['F'] ? "flag" : source ? source : "env";
    if (rest[i].flag == 'B' && scfg->memory_budget != NULL)
      v = scfg->memory_budget, source = given['B'] ? "flag" : "env (OCRPOOL_MEMORY_BUDGET)";
    printf("%-24s %-26s %s\n", rest[i].key, v ? v : "-", source ? source : "default");
  }
  char shown[256];
  op_store_describe(scfg->store_url ? scfg->store_url : scfg->data_dir, shown, sizeof shown);
  printf("%-24s %-26s %s\n", "store.url", shown,
         given['S']        ? "flag"
         : scfg->store_url ? op_config_source(cfg, "store.url")
                           : "default (sqlite in data_dir)");
  static const char *const durations[] = {"store.lease", "store.heartbeat", "store.poll"};
  for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
    const char *source = op_config_source(cfg, durations[i]);
    snprintf(value, sizeof value, "%gs", i == 0 ? scfg->lease_s : i == 1 ? scfg->heartbeat_s : scfg->poll_s);
    printf("%-24s %-26s %s\n", durations[i], value, source ? source : "default");
  }
  const char *source = op_config_source(cfg, "store.poll_only");
  printf("%-24s %-26s %s\n", "store.poll_only", scfg->poll_only ? "true" : "false", source ? source : "default");
  source = op_config_source(cfg, "store.claim_batch");
  printf("%-24s %-26u %s\n", "store.claim_batch", scfg->claim_batch, source ? source : "default");
  printf("%-24s %-26u %s\n", "models", n_models, n_models ? "file" : "default");
}

static int print_only;   /* ocrpool config */
static int migrate_only; /* ocrpool migrate */

int op_cli_config(int argc, char **argv) {
  print_only = 1;
  return op_cli_serve(argc, argv);
}

int op_cli_migrate(int argc, char **argv) {
  migrate_only = 1;
  return op_cli_serve(argc, argv);
}

static const struct option serve_longopts[] = {{"listen", required_argument, NULL, 'l'},
                                               {"data-dir", required_argument, NULL, 'd'},
                                               {"workers", required_argument, NULL, 'w'},
                                               {"tokens", required_argument, NULL, 't'},
                                               {"max-queue", required_argument, NULL, 'q'},
                                               {"queue-timeout", required_argument, NULL, 'Q'},
                                               {"page-timeout", required_argument, NULL, 'P'},
                                               {"retention-days", required_argument, NULL, 'r'},
                                               {"max-input-size", required_argument, NULL, 'm'},
                                               {"port-file", required_argument, NULL, 'p'},
                                               {"min-free-space", required_argument, NULL, 'f'},
                                               {"max-connections-per-client", required_argument, NULL, 'c'},
                                               {"health-listen", required_argument, NULL, 'H'},
                                               {"task-cpu-budget", required_argument, NULL, 'T'},
                                               {"log-level", required_argument, NULL, 'L'},
                                               {"help", no_argument, NULL, 'h'},
                                               {"drain-timeout", required_argument, NULL, 'D'},
                                               {"memory-budget", required_argument, NULL, 'B'},
                                               {"config", required_argument, NULL, 'C'},
                                               {"log-format", required_argument, NULL, 'F'},
                                               {"store", required_argument, NULL, 'S'},
                                               {"render-cpu", required_argument, NULL, 'U'},
                                               {"render-memory", required_argument, NULL, 'R'},
                                               {"max-attempts", required_argument, NULL, 'A'},
                                               {"sandbox", required_argument, NULL, 'X'},
                                               {"worker-user", required_argument, NULL, 'W'},
                                               {NULL, 0, NULL, 0}};

/* What the command line, the environment and the file settle between them. */
typedef struct serve_args_s {
  op_service_config_t scfg;
  op_http_config_t hcfg;
  const char *port_file;
  int level;
  const char *level_name;
  unsigned char given[128]; /* the flags given, by letter: a flag beats the file */
} serve_args_t;

/* What parse_serve_args and settle_config answer when the command goes on. */
#define GO_ON (-1)

/* A flag that takes a count, a duration in seconds or a size. 0 or -1 (a usage error printed). */
static int set_number(serve_args_t *a, int flag, const char *value) {
  uint64_t v;
  const setting_t *st = setting_of_flag(flag);
  const char *name = "";
  for (const struct option *o = serve_longopts; o->name != NULL; o++)
    if (o->val == flag)
      name = o->name;
  if (op_parse_size(value, UINT64_MAX, &v) < 0) {
    fprintf(stderr, "ocrpool serve: bad value \"%s\" for --%s\n", value, name);
    return -1;
  }
  if (flag == 'w' && v > OP_SUPERVISOR_MAX_WORKERS) {
    fprintf(stderr, "ocrpool serve: --workers %s is too many: at most %u worker processes\n", value,
            OP_SUPERVISOR_MAX_WORKERS);
    return -1;
  }
  if (v < st->least || v > st->max) { /* refused, never wrapped: 49,711 days is not 17 hours */
    fprintf(stderr, "ocrpool serve: --%s %s is out of range: from %llu to %llu\n", name, value,
            (unsigned long long)st->least, (unsigned long long)st->max);
    return -1;
  }
  setting_store(st, setting_field(st, &a->scfg, &a->hcfg), v);
  return 0;
}

/* Reads the command line into a. GO_ON, or the exit status (after --help, or a usage error printed). */
static int parse_serve_args(int argc, char **argv, serve_args_t *a) {
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", serve_longopts, NULL)) != -1) {
    if (c > 0 && c < 128)
      a->given[c] = 1;
    switch (c) {
    case 'l':
      a->hcfg.listen = optarg;
      break;
    case 'd':
      a->scfg.data_dir = optarg;
      break;
    case 't':
      a->hcfg.tokens_file = optarg;
      break;
    case 'H':
      a->hcfg.health_listen = optarg;
      break;
    case 'p':
      a->port_file = optarg;
      break;
    case 'L':
      if (op_log_level_parse(optarg) < 0) {
        fprintf(stderr, "ocrpool serve: bad --log-level \"%s\"\n", optarg);
        return OP_EXIT_USAGE;
      }
      a->level = op_log_level_parse(optarg);
      a->level_name = optarg;
      break;
    case 'F':
      if (op_log_format_parse(optarg) < 0) {
        fprintf(stderr, "ocrpool serve: bad --log-format \"%s\" (logfmt or json)\n", optarg);
        return OP_EXIT_USAGE;
      }
      op_log_set_format((op_log_format_t)op_log_format_parse(optarg)); /* workers inherit it */
      break;
    case 'h':
      usage(stdout);
      return OP_EXIT_OK;
    case 'B':
      a->scfg.memory_budget = optarg;
      break;
    case 'S':
      a->scfg.store_url = optarg;
      break;
    case 'C':
      a->scfg.config_file = optarg;
      break;
    case 'X':
      a->scfg.sandbox = optarg;
      break;
    case 'W':
      a->scfg.worker_user = optarg;
      break;
    default: /* the numbers of the settings table */
      if (setting_of_flag(c)->key == NULL || setting_of_flag(c)->kind == 's') {
        fputs("Try `ocrpool serve --help`.\n", stderr);
        return OP_EXIT_USAGE;
      }
      if (set_number(a, c, optarg) < 0)
        return OP_EXIT_USAGE;
      break;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "ocrpool serve: unexpected argument \"%s\"\n", argv[optind]);
    return OP_EXIT_USAGE;
  }
  return GO_ON;
}

/* Loads the configuration file into *file and settles every setting the
 * flags left open (environment, then file); for `ocrpool config`, prints
 * them. GO_ON, or the exit status (a message printed). The caller frees *file. */
static int settle_config(serve_args_t *a, op_config_t **file) {
  op_error_t ce;
  unsigned n_models = 0;
  if (a->scfg.memory_budget == NULL)
    a->scfg.memory_budget = getenv("OCRPOOL_MEMORY_BUDGET");
  if (op_service_config_load(a->scfg.config_file, file, &ce) < 0 ||
      apply_file(*file, a->given, &a->scfg, &a->hcfg, &ce) < 0 ||
      (print_only && op_service_check_config(&a->scfg, &n_models, &ce) < 0)) {
    fprintf(stderr, "ocrpool %s: %s\n", print_only ? "config" : "serve", ce.message);
    return OP_EXIT_USAGE;
  }
  const char *file_format = NULL; /* log.format: the flag and OCRPOOL_LOG_FORMAT are in force already */
  json_t *log_section = op_config_root(*file) ? json_object_get(op_config_root(*file), "log") : NULL;
  if (!a->given['F'] && op_config_string(*file, log_section, "format", &file_format, &ce) == 0 && file_format != NULL) {
    if (op_log_format_parse(file_format) < 0) {
      fprintf(stderr, "ocrpool serve: log.format is logfmt or json, not \"%s\"\n", file_format);
      return OP_EXIT_USAGE;
    }
    op_log_set_format((op_log_format_t)op_log_format_parse(file_format));
  }
  const char *env_level = getenv("OCRPOOL_LOG_LEVEL"); /* the flag, then this, then the file's log.level */
  if (a->level_name == NULL && env_level != NULL && op_log_level_parse(env_level) >= 0) {
    a->level_name = env_level;
    a->level = op_log_level_parse(env_level);
  }
  if (print_only) {
    print_config(*file, a->given, &a->scfg, &a->hcfg, a->level_name, n_models);
    return OP_EXIT_OK;
  }
  return GO_ON;
}

/* ocrpool migrate: opening the store applies the migrations it lacks (each in
 * its own transaction, so several nodes starting at once are safe); this runs
 * them ahead of a rollout and says where the schema stands. */
static int migrate(const serve_args_t *a) {
  op_log_init((op_log_level_t)a->level, "migrate");
  const char *where = a->scfg.store_url ? a->scfg.store_url : a->scfg.data_dir;
  char shown[256];
  op_store_describe(where, shown, sizeof shown);
  op_error_t e;
  op_store_t *store = NULL;
  if (op_store_open(where, &store, &e) < 0) {
    fprintf(stderr, "ocrpool migrate: %s: %s\n", shown, e.message);
    return e.code == OP_EUSAGE ? OP_EXIT_USAGE : OP_EXIT_INTERNAL;
  }
  printf("%s store %s: schema version %d, up to date\n", op_store_kind(store), shown, op_store_schema_version(store));
  op_store_close(store);
  return OP_EXIT_OK;
}

static void catch_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_hangup;
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* Runs the service and its HTTP server until a signal stops them. Returns the exit status. */
static int serve(serve_args_t *a) {
  op_log_init((op_log_level_t)a->level, "serve");
  a->scfg.log_level = a->level_name;
  catch_signals();
  op_error_t e;
  op_service_t *svc = NULL;
  op_http_t *http = NULL;
  int status = OP_EXIT_OK;
  if (op_service_create(&a->scfg, &svc, &e) < 0 || op_http_start(&a->hcfg, svc, &http, &e) < 0) {
    fprintf(stderr, "ocrpool serve: %s\n", e.message);
    op_service_destroy(svc);
    return e.code == OP_EUSAGE ? OP_EXIT_USAGE : OP_EXIT_INTERNAL;
  }
  char store[256];
  op_store_describe(a->scfg.store_url ? a->scfg.store_url : "sqlite in the data directory", store, sizeof store);
  op_log_info("listening on port %u, data in %s, store %s", op_http_port(http), a->scfg.data_dir, store);
  if (op_http_health_port(http) != 0)
    op_log_info("health listener on port %u: /healthz, /readyz and /metrics", op_http_health_port(http));
  if (a->port_file != NULL) {
    FILE *f = fopen(a->port_file, "w");
    if (f != NULL) {
      fprintf(f, "%u\n", op_http_port(http));
      fclose(f);
    }
  }
  char status_line[128];
  snprintf(status_line, sizeof status_line, "READY=1\nSTATUS=listening on port %u", op_http_port(http));
  op_notify(status_line);
  op_service_watch_reload(svc, &reload_requested, op_http_reload, http);
  if (op_service_run(svc, &stop_requested, &e) < 0) {
    fprintf(stderr, "ocrpool serve: %s\n", e.message);
    status = OP_EXIT_INTERNAL;
  }
  op_log_info("stopping");
  op_notify("STOPPING=1");
  op_http_stop(http);
  op_service_destroy(svc);
  return status;
}

int op_cli_serve(int argc, char **argv) {
  serve_args_t a;
  memset(&a, 0, sizeof a);
  op_service_config_init(&a.scfg);
  op_http_config_init(&a.hcfg);
  a.level = OP_LOG_INFO;
  op_config_t *file = NULL;
  int status = parse_serve_args(argc, argv, &a);
  if (status == GO_ON)
    status = settle_config(&a, &file);
  if (status == GO_ON)
    status = migrate_only ? migrate(&a) : serve(&a);
  op_config_free(file); /* after the service: its settings pointed into it */
  return status;
}

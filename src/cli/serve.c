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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/service.h"
#include "http/http.h"
#include "util/log.h"
#include "util/notify.h"
#include "util/parse.h"

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
        "      --workers N           worker processes at most (default: usable cores)\n"
        "      --config FILE         YAML configuration: devices.cpu.budget, models (docs/configuration.md)\n"
        "      --memory-budget B     memory the server and its workers may use: a size (2GB) or a share\n"
        "                            of the machine or cgroup (80%, the default); also OCRPOOL_MEMORY_BUDGET\n"
        "      --tokens FILE         bearer tokens, `TOKEN SCOPE NAME` a line (default: no auth)\n"
        "      --max-queue N         tasks waiting before submissions get 429 (default 100)\n"
        "      --queue-timeout SEC   a task not started by then fails (default 300)\n"
        "      --page-timeout SEC    a page running longer is killed and retried (default 300)\n"
        "      --retention-days N    finished tasks are removed after N days (default 7)\n"
        "      --max-input-size N    largest upload in bytes (K, M, G suffixes; default 256M)\n"
        "      --drain-timeout SEC   on SIGTERM, running pages get this long to finish (default 30)\n"
        "      --port-file FILE      write the bound port there once listening\n"
        "      --log-level LEVEL     debug, info (default), warn, error; SIGHUP reloads it from --config\n"
        "      --log-format F        logfmt (default) or json; also OCRPOOL_LOG_FORMAT\n"
        "  -h, --help                show this help\n",
        out);
}

int op_cli_serve(int argc, char **argv) {
  static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                           {"data-dir", required_argument, NULL, 'd'},
                                           {"workers", required_argument, NULL, 'w'},
                                           {"tokens", required_argument, NULL, 't'},
                                           {"max-queue", required_argument, NULL, 'q'},
                                           {"queue-timeout", required_argument, NULL, 'Q'},
                                           {"page-timeout", required_argument, NULL, 'P'},
                                           {"retention-days", required_argument, NULL, 'r'},
                                           {"max-input-size", required_argument, NULL, 'm'},
                                           {"port-file", required_argument, NULL, 'p'},
                                           {"log-level", required_argument, NULL, 'L'},
                                           {"help", no_argument, NULL, 'h'},
                                           {"drain-timeout", required_argument, NULL, 'D'},
                                           {"memory-budget", required_argument, NULL, 'B'},
                                           {"config", required_argument, NULL, 'C'},
                                           {"log-format", required_argument, NULL, 'F'},
                                           {NULL, 0, NULL, 0}};
  op_service_config_t scfg;
  op_service_config_init(&scfg);
  op_http_config_t hcfg;
  op_http_config_init(&hcfg);
  const char *port_file = NULL;
  int level = OP_LOG_INFO;
  const char *level_name = NULL;
  uint64_t v;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'l':
      hcfg.listen = optarg;
      break;
    case 'd':
      scfg.data_dir = optarg;
      break;
    case 't':
      hcfg.tokens_file = optarg;
      break;
    case 'p':
      port_file = optarg;
      break;
    case 'L':
      if (op_log_level_parse(optarg) < 0) {
        fprintf(stderr, "ocrpool serve: bad --log-level \"%s\"\n", optarg);
        return OP_EXIT_USAGE;
      }
      level = op_log_level_parse(optarg);
      level_name = optarg;
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
      scfg.memory_budget = optarg;
      break;
    case 'C':
      scfg.config_file = optarg;
      break;
    case 'D':
    case 'w':
    case 'q':
    case 'Q':
    case 'P':
    case 'r':
    case 'm':
      if (op_parse_size(optarg, c == 'm' ? UINT64_C(1) << 40 : 1000000u, &v) < 0 || (v == 0 && c != 'r' && c != 'D')) {
        const char *name = "";
        for (const struct option *o = longopts; o->name != NULL; o++)
          if (o->val == c)
            name = o->name;
        fprintf(stderr, "ocrpool serve: bad value \"%s\" for --%s\n", optarg, name);
        return OP_EXIT_USAGE;
      }
      if (c == 'D')
        scfg.drain_timeout_s = (unsigned)v;
      else if (c == 'w')
        scfg.workers = (unsigned)v;
      else if (c == 'q')
        scfg.max_queue = (unsigned)v;
      else if (c == 'Q')
        scfg.queue_timeout_s = (unsigned)v;
      else if (c == 'P')
        scfg.page_timeout_s = (unsigned)v;
      else if (c == 'r')
        scfg.retention_s = (unsigned)v * 86400u;
      else
        scfg.limits.max_input_bytes = v;
      break;
    default:
      fputs("Try `ocrpool serve --help`.\n", stderr);
      return OP_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "ocrpool serve: unexpected argument \"%s\"\n", argv[optind]);
    return OP_EXIT_USAGE;
  }
  if (scfg.memory_budget == NULL)
    scfg.memory_budget = getenv("OCRPOOL_MEMORY_BUDGET");
  const char *env_level = getenv("OCRPOOL_LOG_LEVEL"); /* the flag, then this, then the file's log.level */
  if (level_name == NULL && env_level != NULL && op_log_level_parse(env_level) >= 0) {
    level_name = env_level;
    level = op_log_level_parse(env_level);
  }
  op_log_init((op_log_level_t)level, "serve");
  scfg.log_level = level_name;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_hangup;
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  op_error_t e;
  op_service_t *svc = NULL;
  op_http_t *http = NULL;
  int status = OP_EXIT_OK;
  if (op_service_create(&scfg, &svc, &e) < 0) {
    fprintf(stderr, "ocrpool serve: %s\n", e.message);
    return e.code == OP_EUSAGE ? OP_EXIT_USAGE : OP_EXIT_INTERNAL;
  }
  if (op_http_start(&hcfg, svc, &http, &e) < 0) {
    fprintf(stderr, "ocrpool serve: %s\n", e.message);
    op_service_destroy(svc);
    return e.code == OP_EUSAGE ? OP_EXIT_USAGE : OP_EXIT_INTERNAL;
  }
  op_log_info("listening on port %u, data in %s", op_http_port(http), scfg.data_dir);
  if (port_file != NULL) {
    FILE *f = fopen(port_file, "w");
    if (f != NULL) {
      fprintf(f, "%u\n", op_http_port(http));
      fclose(f);
    }
  }
  char status_line[128];
  snprintf(status_line, sizeof status_line, "READY=1\nSTATUS=listening on port %u", op_http_port(http));
  op_notify(status_line);
  op_service_watch_reload(svc, &reload_requested);
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

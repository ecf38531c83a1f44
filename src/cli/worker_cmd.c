/* worker_cmd.c: `ocrpool worker --fd N`, the process a supervisor spawns. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/log.h"
#include "worker/worker.h"

int op_cli_worker(int argc, char **argv) {
  int fd = 3;
  const char *device = "cpu";
  const char *sandbox = NULL;
  unsigned id = 0;
  int level = OP_LOG_WARN;
  static const struct option longopts[] = {{"fd", required_argument, NULL, 'f'},
                                           {"device", required_argument, NULL, 'd'},
                                           {"id", required_argument, NULL, 'i'},
                                           {"log-level", required_argument, NULL, 'L'},
                                           {"sandbox", required_argument, NULL, 's'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  const char *env_level = getenv("OCRPOOL_LOG_LEVEL");
  if (env_level != NULL && op_log_level_parse(env_level) >= 0)
    level = op_log_level_parse(env_level);
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'f':
      fd = atoi(optarg);
      break;
    case 'd':
      device = optarg;
      break;
    case 'i':
      id = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 's':
      sandbox = optarg;
      break;
    case 'L':
      if (op_log_level_parse(optarg) >= 0)
        level = op_log_level_parse(optarg);
      break;
    case 'h':
      puts("Usage: ocrpool worker --fd N [--device cpu] [--id N] [--log-level L] [--sandbox JSON]\n"
           "A worker process speaking docs/worker-protocol.md on fd N. Started by ocrpool, not by hand.");
      return OP_EXIT_OK;
    default:
      return OP_EXIT_USAGE;
    }
  }
  char role[16];
  snprintf(role, sizeof role, "worker%u", id);
  op_log_init((op_log_level_t)level, role);
  return op_worker_main(fd, device, id, sandbox);
}

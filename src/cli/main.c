/* main.c: the ocrpool binary: picks the subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *out) {
  fputs("Usage: ocrpool COMMAND [OPTIONS]\n"
        "\n"
        "OCR documents (PNG, JPEG, TIFF, PDF) with Tesseract in supervised worker processes.\n"
        "\n"
        "Commands:\n"
        "  ocr FILE...    OCR files here and now, no server needed (text to stdout by default)\n"
        "  serve          run the HTTP task server (docs/api.md)\n"
        "  config [OPT]   the effective configuration of serve with these options, and where each value came from\n"
        "  migrate [OPT]  create or update the store's schema (--store URL or --data-dir DIR), as serve does at start\n"
        "  submit FILE... send documents to a server (--wait for the results)\n"
        "  status [ID]    tasks on a server\n"
        "  worker         a worker process (started by ocrpool itself)\n"
        "\n"
        "Options:\n"
        "  -h, --help     show this help (and `ocrpool COMMAND --help` for a command's)\n"
        "  --version      show the version\n"
        "\n"
        "Exit status: 0 done, 1 internal error, 2 usage error, 3 bad input, 4 OCR failure.\n"
        "Example: ocrpool ocr scan.pdf -o scan.txt\n",
        out);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return OP_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
    usage(stdout);
    return OP_EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 || strcmp(cmd, "version") == 0) {
    printf("ocrpool %s\n", OCRPOOL_VERSION);
    return OP_EXIT_OK;
  }
  if (strcmp(cmd, "ocr") == 0)
    return op_cli_ocr(argc - 1, argv + 1);
  if (strcmp(cmd, "submit") == 0)
    return op_cli_submit(argc - 1, argv + 1);
  if (strcmp(cmd, "status") == 0)
    return op_cli_status(argc - 1, argv + 1);
  if (strcmp(cmd, "serve") == 0)
    return op_cli_serve(argc - 1, argv + 1);
  if (strcmp(cmd, "config") == 0)
    return op_cli_config(argc - 1, argv + 1);
  if (strcmp(cmd, "migrate") == 0)
    return op_cli_migrate(argc - 1, argv + 1);
  if (strcmp(cmd, "worker") == 0)
    return op_cli_worker(argc - 1, argv + 1);
  fprintf(stderr, "ocrpool: unknown command \"%s\"\n", cmd);
  usage(stderr);
  return OP_EXIT_USAGE;
}

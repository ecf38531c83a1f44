/*
 * cli.h: the subcommands of the ocrpool binary.
 *
 * Exit statuses are the same for every subcommand (docs/cli.md).
 */
#ifndef OCRPOOL_CLI_CLI_H
#define OCRPOOL_CLI_CLI_H

enum {
  OP_EXIT_OK = 0,       /**< everything done */
  OP_EXIT_INTERNAL = 1, /**< an unexpected failure of ocrpool itself */
  OP_EXIT_USAGE = 2,    /**< bad command line */
  OP_EXIT_BADINPUT = 3, /**< a document was refused: unreadable, unsupported, over a limit */
  OP_EXIT_OCRFAIL = 4,  /**< OCR failed on some page (crash, timeout, engine error) */
  OP_EXIT_INTERRUPTED = 130,
};

/** `ocrpool ocr`: OCR documents with a local worker pool. */
int op_cli_ocr(int argc, char **argv);

/** `ocrpool submit FILE...`: send documents to a server, optionally wait for the results. */
int op_cli_submit(int argc, char **argv);

/** `ocrpool status [ID]`: tasks on a server. */
int op_cli_status(int argc, char **argv);

/** `ocrpool serve`: the HTTP task server. */
int op_cli_serve(int argc, char **argv);

/** `ocrpool config [serve's options]`: prints the effective configuration and where each value came from. */
int op_cli_config(int argc, char **argv);

/** ocrpool migrate [--store URL | --data-dir DIR] [--config FILE]: brings the store's schema up to date. */
int op_cli_migrate(int argc, char **argv);

/** `ocrpool worker`: the worker process (started by a supervisor, not by hand). */
int op_cli_worker(int argc, char **argv);

#endif

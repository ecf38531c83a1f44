/* fs.h: file-system helpers shared by the modules that own directories. */
#ifndef OCRPOOL_UTIL_FS_H
#define OCRPOOL_UTIL_FS_H

#include <jansson.h>
#include <stdio.h>

/** Removes dir and everything below it, not following symbolic links; what cannot be removed stays. */
void op_remove_tree(const char *dir);

/**
 * Opens a temporary file beside dest for writing, so that readers of dest never
 * see half a file; *tmp receives its name (freed by op_atomic_finish). NULL on failure.
 */
FILE *op_atomic_create(const char *dest, char **tmp);

/** Closes f, then renames it over dest when ok (and the close worked) or removes it. 0 or -1. */
int op_atomic_finish(FILE *f, char *tmp, const char *dest, int ok);

/**
 * Whether what is acknowledged must survive a power loss (the default), or
 * only a killed process: OCRPOOL_SYNC=normal chooses the latter, for speed
 * (docs/security.md). Read once.
 */
int op_sync_full(void);

/**
 * Flushes path (a file or a directory) to the disk, and with parent the
 * directory that names it, so that it survives a power loss; nothing when
 * !op_sync_full(). 0 or -1 (errno).
 */
int op_fsync_path(const char *path, int parent);

/** Seconds since the epoch, as a double (wall clock: for records, not for intervals). */
double op_wall_time_s(void);

/** A unix time as the API shows it (RFC 3339, UTC, milliseconds), or null for 0. */
json_t *op_time_json(double t);

#endif

/* fs.c: removing a directory tree, and the wall clock. */
#include "util/fs.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0; /* keep going: remove what can be removed */
}

void op_remove_tree(const char *dir) {
  nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

FILE *op_atomic_create(const char *dest, char **tmp) {
  *tmp = NULL;
  if (asprintf(tmp, "%s.tmp-%d", dest, (int)getpid()) < 0) {
    *tmp = NULL;
    return NULL;
  }
  FILE *f = fopen(*tmp, "wb");
  if (f == NULL) {
    free(*tmp);
    *tmp = NULL;
  }
  return f;
}

int op_atomic_finish(FILE *f, char *tmp, const char *dest, int ok) {
  int rc = ok ? 0 : -1;
  if (fclose(f) != 0)
    rc = -1;
  if (rc == 0 && rename(tmp, dest) < 0)
    rc = -1;
  if (rc < 0)
    unlink(tmp);
  free(tmp);
  return rc;
}

static int fsync_one(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

int op_sync_full(void) {
  static int full = -1; /* a benign race: every thread computes the same */
  if (full < 0) {
    const char *v = getenv("OCRPOOL_SYNC");
    full = !(v != NULL && strcmp(v, "normal") == 0);
  }
  return full;
}

int op_fsync_path(const char *path, int parent) {
  if (!op_sync_full())
    return 0;
  if (fsync_one(path) < 0)
    return -1;
  if (!parent)
    return 0;
  char *dir = strdup(path);
  if (dir == NULL)
    return -1;
  char *slash = strrchr(dir, '/');
  if (slash == dir)
    slash[1] = '\0'; /* "/x": the root */
  else if (slash != NULL)
    *slash = '\0';
  int rc = fsync_one(slash ? dir : ".");
  free(dir);
  return rc;
}

double op_wall_time_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

json_t *op_time_json(double t) {
  if (t <= 0)
    return json_null();
  time_t sec = (time_t)t;
  struct tm tm;
  gmtime_r(&sec, &tm);
  char buf[96];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, (int)((t - (double)sec) * 1000));
  return json_string(buf);
}

/* fs.c: removing a directory tree, and the wall clock. */
#define _XOPEN_SOURCE 700
#include "util/fs.h"

#include <ftw.h>
#include <stdio.h>
#include <time.h>

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

double op_wall_time_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

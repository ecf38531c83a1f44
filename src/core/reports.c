/*
 * reports.c: memory reports: everything memory admission knows, written to
 * DATA/reports/memory-TIME.json when memory turns critical or an admin asks
 * (POST /v1/memory/reports); the last REPORTS_KEPT are kept.
 */
#include "core/service_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"

#define REPORTS_KEPT 20

static int report_name_ok(const char *name) {
  size_t n = strlen(name);
  if (strncmp(name, "memory-", 7) != 0 || n < 12 || n > 64 || strcmp(name + n - 5, ".json") != 0)
    return 0;
  return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") == n;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The reports' names, oldest first (a new array of n strings). */
static char **list_reports(const op_service_t *svc, size_t *n) {
  char dir[sizeof svc->data_dir + 16];
  snprintf(dir, sizeof dir, "%s/reports", svc->data_dir);
  *n = 0;
  DIR *d = opendir(dir);
  if (d == NULL)
    return NULL;
  char **names = NULL;
  size_t cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!report_name_ok(de->d_name))
      continue;
    if (*n == cap) {
      char **grown = realloc(names, (cap = cap ? cap * 2 : 32) * sizeof *names);
      if (grown == NULL)
        break;
      names = grown;
    }
    if ((names[*n] = strdup(de->d_name)) != NULL)
      (*n)++;
  }
  closedir(d);
  if (*n > 0)
    qsort(names, *n, sizeof *names, by_name);
  return names;
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

/* Writes a report of everything memory admission knows to
 * DATA/reports/memory-TIME.json and keeps the last REPORTS_KEPT. */
void op__write_report(op_service_t *svc, const char *reason) {
  char dir[sizeof svc->data_dir + 16];
  snprintf(dir, sizeof dir, "%s/reports", svc->data_dir);
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
    op_log_warn("cannot create %s: %s", dir, strerror(errno));
    return;
  }
  double now = op_wall_time_s();
  json_t *stamp = op_time_json(now);
  char name[64], path[sizeof dir + 72];
  const char *iso = json_string_value(stamp);
  snprintf(name, sizeof name, "memory-%.4s%.2s%.2sT%.2s%.2s%.2s%.4sZ.json", iso, iso + 5, iso + 8, iso + 11, iso + 14,
           iso + 17, iso + 19);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  pthread_mutex_lock(&svc->lock); /* the snapshot belongs to the service thread, which is this one */
  json_t *memory = svc->snapshot ? op_snapshot_memory_json(svc->snapshot) : json_null();
  json_t *models = svc->snapshot ? op_snapshot_models_json(svc->snapshot) : json_null();
  pthread_mutex_unlock(&svc->lock);
  json_t *report = json_pack("{s:s, s:o, s:s, s:o, s:o, s:o}", "name", name, "created_at", stamp, "reason", reason,
                             "memory", memory, "models", models, "scheduler", op_sched_report_json(svc->sched));
  char *tmp = NULL;
  FILE *f = report ? op_atomic_create(path, &tmp) : NULL;
  int ok = f != NULL && json_dumpf(report, f, JSON_INDENT(1)) == 0;
  if (f != NULL && op_atomic_finish(f, tmp, path, ok) == 0 && ok)
    op_log_warn("memory report (%s) written: %s", reason, path);
  else
    op_log_warn("cannot write the memory report %s", path);
  json_decref(report);
  size_t n;
  char **names = list_reports(svc, &n);
  for (size_t i = 0; i + REPORTS_KEPT < n; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  free_names(names, n);
}

json_t *op_service_reports_json(const op_service_t *svc) {
  size_t n;
  char **names = list_reports(svc, &n);
  json_t *list = json_array();
  for (size_t i = n; i-- > 0;) { /* newest first */
    char path[sizeof svc->data_dir + 96];
    snprintf(path, sizeof path, "%s/reports/%s", svc->data_dir, names[i]);
    struct stat st;
    if (stat(path, &st) == 0)
      json_array_append_new(list, json_pack("{s:s, s:o, s:I}", "name", names[i], "created_at",
                                            op_time_json((double)st.st_mtime), "bytes", (json_int_t)st.st_size));
  }
  free_names(names, n);
  return json_pack("{s:o}", "reports", list);
}

char *op_service_report_path(const op_service_t *svc, const char *name) {
  if (!report_name_ok(name))
    return NULL;
  size_t len = strlen(svc->data_dir) + strlen(name) + 16;
  char *path = malloc(len);
  if (path != NULL)
    snprintf(path, len, "%s/reports/%s", svc->data_dir, name);
  return path;
}

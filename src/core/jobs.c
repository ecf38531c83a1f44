/*
 * jobs.c: the messages that start a task's jobs on a worker (probe, page,
 * merge; docs/worker-protocol.md), and the model each job runs.
 */
#include "core/sched_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

const op_model_policy_t *op__page_policy(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p) {
  const op_model_policy_t *fb = p != NULL && p->on_fallback
                                    ? op_model_policy_named(s->cfg.policies, s->cfg.n_policies, t->policy->fallback)
                                    : NULL;
  return fb != NULL ? fb : t->policy;
}

void op__job_key(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p, op_model_key_t *key) {
  const op_model_policy_t *pol = op__page_policy(s, t, p);
  if (p != NULL && p->on_fallback)
    op_model_key_set(key, pol->engine, pol->lang);
  else
    op_model_key_set(key, t->opts.model.engine, t->opts.model.lang);
}

/* A worker that changed user reads and writes only what it owns: the job's
 * files become its before the job names them (the server, root, keeps its
 * access). A file the store wrote back after an outage is given again. */
static void give_to_workers(const op_sched_t *s, const char *path) {
  if (s->cfg.give_files && path != NULL && lchown(path, s->cfg.worker_uid, s->cfg.worker_gid) < 0 && errno != ENOENT)
    op_log_warn("cannot give %s to the workers' user: %s", path, strerror(errno));
}

static void give_task(const op_sched_t *s, const op_task_t *t) {
  give_to_workers(s, t->scratch_dir);
  give_to_workers(s, t->input_path);
}

static json_t *formats_json(unsigned mask) {
  json_t *a = json_array();
  for (unsigned f = 1; f <= OP_FMT_PDF; f <<= 1)
    if (mask & f)
      json_array_append_new(a, json_string(op_format_name((op_format_t)f)));
  return a;
}

json_t *op__probe_job(const op_sched_t *s, const op_task_t *t) {
  give_task(s, t);
  return json_pack("{s:s, s:s, s:s?, s:{s:I, s:I, s:i, s:I}}", "op", "probe", "input", t->input_path, "pages",
                   t->opts.pages, "limits", "max_pages", (json_int_t)t->opts.limits.max_pages, "max_page_pixels",
                   (json_int_t)t->opts.limits.max_page_pixels, "dpi", t->opts.limits.dpi, "max_render_bytes",
                   (json_int_t)s->cfg.render_bytes);
}

json_t *op__page_job(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p) {
  char *prefix = op_task_page_prefix(t, p->index);
  if (prefix == NULL)
    return NULL;
  const op_model_policy_t *pol = op__page_policy(s, t, p);
  op_model_key_t key;
  op__job_key(s, t, p, &key);
  give_task(s, t);
  json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:i, s:I, s:{s:s, s:s, s:i}, s:i, s:i, s:b, s:o, s:s, s:s, s:I}",
                        "op", "page", "input", t->input_path, "type", op_doc_type_name(t->type), "index",
                        (json_int_t)p->index, "page_number", (json_int_t)p->index, "dpi", t->opts.limits.dpi,
                        "max_page_pixels", (json_int_t)t->opts.limits.max_page_pixels, "model", "engine", key.engine,
                        "lang", key.lang, "oem", t->opts.model.oem, "psm", t->opts.psm, "user_dpi", t->opts.user_dpi,
                        "rotate", t->opts.rotate_pages, "formats", formats_json(t->opts.formats), "out", prefix,
                        "title", t->title, "attempt", (json_int_t)p->attempts);
  free(prefix);
  if (j != NULL && t->opts.rotate_threshold > 0)
    json_object_set_new(j, "rotate_threshold", json_real(t->opts.rotate_threshold));
  if (j != NULL) {
    /* Drawing a PDF page may take half its timeout: past that it is refused, not run to the timeout twice. */
    if (t->type == OP_DOC_PDF && (s->cfg.render_cpu_ms > 0 || s->cfg.page_timeout_ms > 0))
      json_object_set_new(j, "render_cpu_ms",
                          json_integer(s->cfg.render_cpu_ms ? s->cfg.render_cpu_ms : s->cfg.page_timeout_ms / 2));
    if (t->type == OP_DOC_PDF)
      json_object_set_new(j, "render_bytes", json_integer((json_int_t)s->cfg.render_bytes));
    json_object_set_new(j, "batch", json_integer(p->batch ? p->batch : pol->batch));
    if (pol->memory_limit > 0 && strncmp(pol->device, "cuda:", 5) != 0) /* a GPU model's limit is of VRAM */
      json_object_set_new(j, "memory_limit", json_integer((json_int_t)pol->memory_limit));
  }
  return j;
}

json_t *op__merge_job(const op_sched_t *s, const op_task_t *t) {
  give_task(s, t);
  json_t *inputs = json_array();
  for (size_t i = 0; i < t->n_pages; i++) {
    if (t->pages[i].state != OP_PAGE_DONE)
      continue;
    char *prefix = op_task_page_prefix(t, t->pages[i].index);
    char *path = NULL;
    if (prefix != NULL && asprintf(&path, "%s.pdf", prefix) >= 0) {
      give_to_workers(s, path);
      json_array_append_new(inputs, json_string(path));
      free(path);
    }
    free(prefix);
  }
  char *out = op_task_result_path(t, OP_FMT_PDF);
  json_t *j = json_pack("{s:s, s:o, s:s?}", "op", "merge_pdf", "inputs", inputs, "output", out);
  free(out);
  return j;
}

/*
 * mailbox.h: the one bounded queue by which other threads ask the service
 * thread for something: cancel a task, load or unload a model, write a
 * memory report. A full mailbox is an error the asker sees (HTTP 503), never
 * a silent drop.
 */
#ifndef OCRPOOL_CORE_MAILBOX_H
#define OCRPOOL_CORE_MAILBOX_H

#include <pthread.h>
#include <stddef.h>

#include "core/policy.h"

#define OP_MAILBOX_MIN 256 /**< the least capacity, whatever the queue's size */

typedef enum { OP_MAIL_CANCEL, OP_MAIL_MODEL_LOAD, OP_MAIL_MODEL_UNLOAD, OP_MAIL_REPORT } op_mail_kind_t;

/** One request. */
typedef struct op_mail_s {
  op_mail_kind_t kind;
  char task_id[40];               /**< CANCEL: the task */
  const op_model_policy_t *model; /**< MODEL_*: the declared model (lives as long as the service) */
} op_mail_t;

typedef struct op_mailbox_s {
  pthread_mutex_t lock;
  op_mail_t *items; /**< a ring of cap */
  size_t head, n, cap;
  int wake_fd; /**< written to after each post: the service thread polls it */
} op_mailbox_t;

/** A mailbox of cap requests (at least OP_MAILBOX_MIN) that wakes wake_fd; OP_ENOMEM. */
int op_mailbox_init(op_mailbox_t *mb, size_t cap, int wake_fd);

/** Frees what op_mailbox_init took. */
void op_mailbox_dispose(op_mailbox_t *mb);

/** Posts a request and wakes the service; OP_ELIMIT when the mailbox is full. Any thread. */
int op_mailbox_post(op_mailbox_t *mb, const op_mail_t *mail);

/** Takes up to max requests, oldest first, into out; returns how many. */
size_t op_mailbox_take(op_mailbox_t *mb, op_mail_t *out, size_t max);

#endif

/* mailbox.c: the bounded queue of requests from other threads to the service thread. */
#include "core/mailbox.h"

#include <stdlib.h>
#include <unistd.h>

#include "util/error.h"

int op_mailbox_init(op_mailbox_t *mb, size_t cap, int wake_fd) {
  mb->cap = cap < OP_MAILBOX_MIN ? OP_MAILBOX_MIN : cap;
  mb->head = mb->n = 0;
  mb->wake_fd = wake_fd;
  mb->items = calloc(mb->cap, sizeof *mb->items);
  if (mb->items == NULL)
    return OP_ENOMEM;
  pthread_mutex_init(&mb->lock, NULL);
  return 0;
}

void op_mailbox_dispose(op_mailbox_t *mb) {
  if (mb->items == NULL)
    return;
  free(mb->items);
  mb->items = NULL;
  pthread_mutex_destroy(&mb->lock);
}

int op_mailbox_post(op_mailbox_t *mb, const op_mail_t *mail) {
  pthread_mutex_lock(&mb->lock);
  int rc = OP_ELIMIT;
  if (mb->n < mb->cap) {
    mb->items[(mb->head + mb->n++) % mb->cap] = *mail;
    rc = 0;
  }
  pthread_mutex_unlock(&mb->lock);
  if (rc == 0 && mb->wake_fd >= 0) {
    char c = 1;
    ssize_t w = write(mb->wake_fd, &c, 1); /* a full pipe already means "wake up" */
    (void)w;
  }
  return rc;
}

size_t op_mailbox_take(op_mailbox_t *mb, op_mail_t *out, size_t max) {
  pthread_mutex_lock(&mb->lock);
  size_t k = 0;
  for (; k < max && mb->n > 0; k++, mb->n--) {
    out[k] = mb->items[mb->head];
    mb->head = (mb->head + 1) % mb->cap;
  }
  pthread_mutex_unlock(&mb->lock);
  return k;
}

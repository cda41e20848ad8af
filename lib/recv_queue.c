#include "recv_queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* Enough recycled entries for a burst; more are freed. */
#define FREE_LIST_MAX 64

void dp_recv_queue_init(dp_recv_queue *q, size_t max_len, size_t slot_size) {
  memset(q, 0, sizeof *q);
  q->max_len = max_len;
  q->slot_size = slot_size;
}

static void free_all(dp_recv_entry *e) {
  while (e != NULL) {
    dp_recv_entry *next = e->next;
    OPENSSL_cleanse(e->data, e->cap);
    free(e);
    e = next;
  }
}

void dp_recv_queue_clear(dp_recv_queue *q) {
  free_all(q->head);
  free_all(q->free);
  dp_recv_queue_init(q, q->max_len, q->slot_size);
}

static dp_recv_entry *take_entry(dp_recv_queue *q, size_t len) {
  if (q->free != NULL && len <= q->free->cap) {
    dp_recv_entry *e = q->free;
    q->free = e->next;
    q->free_len--;
    return e;
  }
  size_t cap = len > q->slot_size ? len : q->slot_size;
  dp_recv_entry *e = malloc(sizeof *e + cap);
  if (e != NULL)
    e->cap = cap;
  return e;
}

static void give_back(dp_recv_queue *q, dp_recv_entry *e) {
  if (q->free_len >= FREE_LIST_MAX || e->cap != q->slot_size) {
    OPENSSL_cleanse(e->data, e->len);
    free(e);
    return;
  }
  e->next = q->free;
  q->free = e;
  q->free_len++;
}

int dp_recv_queue_push(dp_recv_queue *q, const dp_addr *from, const dp_local *local, const uint8_t *data,
                       size_t len) {
  if (q->len >= q->max_len)
    return -ENOBUFS;
  dp_recv_entry *e = take_entry(q, len);
  if (e == NULL)
    return -ENOMEM;
  e->next = NULL;
  e->from = *from;
  if (local != NULL)
    e->local = *local;
  else
    memset(&e->local, 0, sizeof e->local);
  e->len = len;
  memcpy(e->data, data, len);
  if (q->tail != NULL)
    q->tail->next = e;
  else
    q->head = e;
  q->tail = e;
  q->len++;
  return 0;
}

ssize_t dp_recv_queue_pop(dp_recv_queue *q, const struct iovec *iov, size_t iovcnt, int peek, dp_addr *from,
                          dp_local *local) {
  dp_recv_entry *e = q->head;
  if (e == NULL)
    return -EAGAIN;
  size_t copied = 0;
  for (size_t i = 0; i < iovcnt && copied < e->len; i++) {
    size_t n = e->len - copied < iov[i].iov_len ? e->len - copied : iov[i].iov_len;
    if (n > 0)
      memcpy(iov[i].iov_base, e->data + copied, n);
    copied += n;
  }
  if (from != NULL)
    *from = e->from;
  if (local != NULL)
    *local = e->local;
  ssize_t full = (ssize_t)e->len;
  if (!peek) {
    q->head = e->next;
    if (q->head == NULL)
      q->tail = NULL;
    q->len--;
    give_back(q, e);
  }
  return full;
}

/* Decrypted datagrams waiting for dtlsrecvfrom, oldest first.  Entries are
 * recycled through a small free list, so that a steady flow of datagrams
 * allocates nothing. */
#ifndef DTLSPLEX_RECV_QUEUE_H
#define DTLSPLEX_RECV_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "addr.h"

typedef struct dp_recv_entry {
  struct dp_recv_entry *next;
  dp_addr from;
  dp_local local; /* where it arrived, for IP_PKTINFO/IPV6_PKTINFO */
  size_t len, cap;
  uint8_t data[];
} dp_recv_entry;

typedef struct dp_recv_queue {
  dp_recv_entry *head, *tail, *free;
  size_t len, free_len;
  size_t max_len;   /* more are refused, as a full socket buffer refuses them */
  size_t slot_size; /* capacity of recycled entries: the data MTU bound */
} dp_recv_queue;

void dp_recv_queue_init(dp_recv_queue *q, size_t max_len, size_t slot_size);
/* Frees every entry (and wipes the data). */
void dp_recv_queue_clear(dp_recv_queue *q);
/* Appends a copy of a datagram from a peer that arrived at local (NULL:
 * not known).  0, or -ENOBUFS (full) or -ENOMEM. */
int dp_recv_queue_push(dp_recv_queue *q, const dp_addr *from, const dp_local *local, const uint8_t *data,
                       size_t len);
/* As dp_endpoint_recvmsg: the oldest datagram's full length (as much as
 * fits scattered over iov), or -EAGAIN.  from and local may be NULL. */
ssize_t dp_recv_queue_pop(dp_recv_queue *q, const struct iovec *iov, size_t iovcnt, int peek, dp_addr *from,
                          dp_local *local);

#endif

/* The per-peer datagram BIO.  libssl writes one datagram per BIO_write (a
 * handshake flight packs several records into one write, which is right for
 * DTLS); a read returns the one datagram being processed, or asks to retry. */
#ifndef DTLSPLEX_DGRAM_BIO_H
#define DTLSPLEX_DGRAM_BIO_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>

#include "addr.h"
#include "dtlsplex.h"
#include "records.h"

/* Sends one datagram to a peer from this side's end of the path to it
 * (source: all zero for the kernel's choice).  Returns 0 or -errno.  Never
 * blocks unless asked to by the caller's context (see socket.c). */
typedef int (*dp_send_fn)(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data,
                          size_t len);

/* Datagram being assembled: writes accumulate while they fit the MTU, so that
 * a retransmitted flight (which libssl writes message by message) leaves as
 * few datagrams as it can.  One per endpoint, shared by its sessions: every
 * call into libssl ends with dp_bio_io_flush. */
typedef struct dp_outbuf {
  size_t len;
  uint8_t data[DTLSPLEX_MTU_MAX];
} dp_outbuf;

typedef struct dp_bio_io {
  dp_addr peer;           /* destination of writes, source of the datagram in hand */
  dp_local local;         /* where writes leave from: where the peer reached this side */
  const uint8_t *in;      /* datagram in hand, NULL once read */
  size_t in_len;
  unsigned int mtu;
  unsigned int rto_initial_ms, rto_max_ms; /* handshake retransmission timer (see session.c) */
  uint64_t now;           /* the core's time of the call into libssl, for its callbacks (tickets) */
  int mtu_exceeded;       /* the last write failed with EMSGSIZE */
  int last_send_error;    /* -errno of the last write, or 0 */
  dp_send_fn send;
  void *send_arg;
  dp_outbuf *out;         /* NULL: every write is a datagram of its own */
  /* Once this library seals the session's application data (records.h),
   * the records libssl writes in that epoch are sealed again by it; until
   * then, where libssl's sequence numbers have got to. */
  dp_records *records;
  int records_by_libssl;   /* leave every record to libssl (tests compare the two layers) */
  uint16_t write_epoch;    /* the newest epoch libssl has written in */
  uint64_t write_seq_next; /* the first sequence number of it libssl has not used */
} dp_bio_io;

/* A BIO over io, which must outlive it.  NULL on allocation failure. */
BIO *dp_bio_new(dp_bio_io *io);

/* Sends what writes have assembled, if anything; records last_send_error. */
void dp_bio_io_flush(dp_bio_io *io);
/* Sends one datagram at once; records last_send_error. */
void dp_bio_io_send(dp_bio_io *io, const uint8_t *data, size_t len);

/* Puts a datagram in hand for the next read. */
static inline void dp_bio_io_feed(dp_bio_io *io, const uint8_t *data, size_t len) {
  io->in = data;
  io->in_len = len;
}

#endif

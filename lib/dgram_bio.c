#include "dgram_bio.h"

#include <errno.h>
#include <string.h>

#include <openssl/ssl.h>

#include "once.h"

static BIO_METHOD *method;
static int method_type = -1;
static dp_once method_once = DP_ONCE_INIT;

void dp_bio_io_send(dp_bio_io *io, const uint8_t *data, size_t len) {
  io->last_send_error = io->send(io->send_arg, &io->peer, &io->local, data, len);
  io->mtu_exceeded = io->last_send_error == -EMSGSIZE;
}

void dp_bio_io_flush(dp_bio_io *io) {
  if (io->out == NULL || io->out->len == 0)
    return;
  dp_bio_io_send(io, io->out->data, io->out->len);
  io->out->len = 0;
}

/* The length of the DTLS record starting at d, header included. */
static size_t record_len_at(const uint8_t *d) { return 13 + ((size_t)d[11] << 8 | d[12]); }

/* The length of the whole DTLS records at the start of data that fit in
 * room (at least the first record, whatever its size), or 0 if data does
 * not start with a whole record. */
static size_t records_fitting(const uint8_t *data, size_t len, size_t room) {
  size_t at = 0;
  while (at + 13 <= len) {
    size_t record = record_len_at(data + at);
    if (at + record > len || (at > 0 && at + record > room))
      break;
    at += record;
  }
  return at;
}

/* Appends to the datagram being assembled, sending it first if n bytes
 * would take it over the MTU; n above the MTU goes as a datagram alone. */
static void assemble(dp_bio_io *io, const uint8_t *data, size_t n) {
  if (io->out == NULL || n > io->mtu || n > sizeof io->out->data) {
    dp_bio_io_flush(io); /* keep the order */
    dp_bio_io_send(io, data, n);
    return;
  }
  if (io->out->len + n > io->mtu)
    dp_bio_io_flush(io);
  memcpy(io->out->data + io->out->len, data, n);
  io->out->len += n;
}

/* Where libssl's sequence numbers have got to, for the record layer that
 * may take over from them (see dp_bio_io). */
static void note_sequence_numbers(dp_bio_io *io, const uint8_t *d, size_t n) {
  for (size_t at = 0; at + 13 <= n; at += record_len_at(d + at)) {
    const uint8_t *r = d + at;
    uint16_t epoch = (uint16_t)(r[3] << 8 | r[4]);
    uint64_t seq = (uint64_t)r[5] << 40 | (uint64_t)r[6] << 32 | (uint64_t)r[7] << 24 | (uint64_t)r[8] << 16 |
                   (uint64_t)r[9] << 8 | r[10];
    if (epoch > io->write_epoch) {
      io->write_epoch = epoch;
      io->write_seq_next = 0;
    }
    if (epoch == io->write_epoch && seq >= io->write_seq_next)
      io->write_seq_next = seq + 1;
  }
}

/* libssl's records in the epoch whose application data this library seals
 * go out under this library's next sequence numbers: libssl's own have been
 * used by then.  libssl writes only alerts and the handshake's last
 * flight in that epoch (it never sees the application data); one that
 * cannot be sealed again (no memory) is lost as a datagram may be, and
 * libssl's copy never leaves. */
static void write_resealed(dp_bio_io *io, const uint8_t *d, size_t n) {
  uint8_t sealed[DTLSPLEX_MTU_MAX];
  for (size_t at = 0; at + 13 <= n && at + record_len_at(d + at) <= n; at += record_len_at(d + at)) {
    const uint8_t *r = d + at;
    size_t len = record_len_at(r);
    if ((r[3] << 8 | r[4]) != io->records->epoch) {
      assemble(io, r, len);
      continue;
    }
    ssize_t m = dp_records_reseal(io->records, r, len, sealed, sizeof sealed);
    if (m > 0)
      assemble(io, sealed, (size_t)m);
  }
}

static int dgram_write(BIO *b, const char *data, int len) {
  dp_bio_io *io = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len < 0)
    return -1;
  /* libssl 3.0 buffers a handshake flight and sizes its messages to the
   * MTU without an AEAD's nonce and tag: a flight ending in a ticket,
   * ChangeCipherSpec and an encrypted Finished comes in one write larger
   * than the MTU.  Records may travel in separate datagrams, so such a
   * write is cut between records. */
  const uint8_t *d = (const uint8_t *)data;
  size_t n = (size_t)len, cut;
  if (io->records != NULL) {
    write_resealed(io, d, n);
    return len;
  }
  note_sequence_numbers(io, d, n);
  while (n > io->mtu && (cut = records_fitting(d, n, io->mtu)) > 0 && cut < n) {
    assemble(io, d, cut);
    d += cut;
    n -= cut;
  }
  assemble(io, d, n);
  /* A datagram the kernel would not take is lost, as any UDP datagram may be:
   * DTLS retransmits handshake flights, and the caller of dtlssendto learns of
   * it from last_send_error.  Failing the write would make libssl treat the
   * session as broken (SSL_ERROR_SYSCALL). */
  return len;
}

static int dgram_read(BIO *b, char *out, int out_len) {
  dp_bio_io *io = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (io->in == NULL || out_len < 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = io->in_len < (size_t)out_len ? io->in_len : (size_t)out_len;
  memcpy(out, io->in, n);
  io->in = NULL;
  return (int)n;
}

static int get_peer(const dp_bio_io *io, BIO_ADDR *out) {
  if (io->peer.u.sa.sa_family == AF_INET)
    return BIO_ADDR_rawmake(out, AF_INET, &io->peer.u.in4.sin_addr, 4, io->peer.u.in4.sin_port);
  return BIO_ADDR_rawmake(out, AF_INET6, &io->peer.u.in6.sin6_addr, 16, io->peer.u.in6.sin6_port);
}

static long dgram_ctrl(BIO *b, int cmd, long num, void *ptr) {
  dp_bio_io *io = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1; /* 0 would stall the handshake before the ClientHello */
  case BIO_CTRL_DGRAM_QUERY_MTU:
  case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
    return io->mtu; /* 0 would collapse libssl's MTU to 256 */
  case BIO_CTRL_DGRAM_SET_MTU:
    return num;
  case BIO_CTRL_DGRAM_MTU_EXCEEDED: {
    int exceeded = io->mtu_exceeded;
    io->mtu_exceeded = 0;
    return exceeded;
  }
  case BIO_CTRL_DGRAM_GET_PEER:
    return ptr != NULL && get_peer(io, ptr) ? 1 : 0;
  case BIO_CTRL_DGRAM_SET_PEER:
  case BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT:
    /* The peer is fixed by the table; timers are read back with
     * DTLSv1_get_timeout after each call into libssl. */
    return 1;
  default:
    /* WPENDING, PENDING, EOF, PUSH/POP, MTU overhead, kTLS queries... */
    return 0;
  }
}

static int dgram_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int make_method(void) {
  /* The type is kept: another attempt must not use up another. */
  if (method_type == -1 && (method_type = BIO_get_new_index()) == -1)
    return -1;
  BIO_METHOD *m = BIO_meth_new(method_type | BIO_TYPE_SOURCE_SINK, "dtlsplex datagram");
  if (m == NULL)
    return -1;
  if (!BIO_meth_set_write(m, dgram_write) || !BIO_meth_set_read(m, dgram_read) ||
      !BIO_meth_set_ctrl(m, dgram_ctrl) || !BIO_meth_set_create(m, dgram_create)) {
    BIO_meth_free(m);
    return -1;
  }
  method = m;
  return 0;
}

BIO *dp_bio_new(dp_bio_io *io) {
  if (dp_once_run(&method_once, make_method) != 0)
    return NULL;
  BIO *b = BIO_new(method);
  if (b != NULL)
    BIO_set_data(b, io);
  return b;
}

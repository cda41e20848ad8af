#include "client_hello.h"

#define RECORD_HEADER 13
#define HANDSHAKE_HEADER 12
#define EXT_SESSION_TICKET 35

int dp_is_client_hello(const uint8_t *d, size_t len) {
  return len >= RECORD_HEADER + HANDSHAKE_HEADER && d[0] == 22 && d[1] == 0xfe && d[3] == 0 && d[4] == 0 &&
         d[13] == 1;
}

static size_t get24(const uint8_t *p) { return (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2]; }
static size_t get16(const uint8_t *p) { return (size_t)p[0] << 8 | p[1]; }

const uint8_t *dp_client_hello_random(const uint8_t *d, size_t len) {
  /* handshake header: type, length 3, message_seq 2, fragment_offset 3 (19..21), fragment_length 3 */
  if (len < RECORD_HEADER + HANDSHAKE_HEADER + 2 + 32 || get24(d + 19) != 0)
    return NULL;
  return d + RECORD_HEADER + HANDSHAKE_HEADER + 2;
}

/* Steps over a field of the given length-prefix size; 0 if it overruns. */
static int skip(const uint8_t **p, const uint8_t *end, size_t prefix) {
  if (*p > end || (size_t)(end - *p) < prefix)
    return 0;
  size_t n = prefix == 1 ? **p : get16(*p);
  if ((size_t)(end - *p) - prefix < n)
    return 0;
  *p += prefix + n;
  return 1;
}

int dp_client_hello_ticket(const uint8_t *d, size_t len, const uint8_t **ticket, size_t *ticket_len) {
  if (!dp_is_client_hello(d, len) || dp_client_hello_random(d, len) == NULL)
    return 0;
  size_t record_len = get16(d + 11), body_len = get24(d + 14);
  /* The whole message in this record (unfragmented), and the record in the datagram. */
  if (record_len > len - RECORD_HEADER || record_len < HANDSHAKE_HEADER || get24(d + 22) != body_len ||
      body_len > record_len - HANDSHAKE_HEADER || body_len < 2 + 32)
    return 0;
  const uint8_t *p = d + RECORD_HEADER + HANDSHAKE_HEADER + 2 + 32;
  const uint8_t *end = d + RECORD_HEADER + HANDSHAKE_HEADER + body_len;
  /* session_id, cookie (1-byte lengths), cipher_suites (2), compression_methods (1) */
  if (!skip(&p, end, 1) || !skip(&p, end, 1) || !skip(&p, end, 2) || !skip(&p, end, 1) || end - p < 2)
    return 0;
  size_t ext_len = get16(p);
  p += 2;
  if ((size_t)(end - p) < ext_len)
    return 0;
  end = p + ext_len;
  while (end - p >= 4) {
    size_t type = get16(p), n = get16(p + 2);
    if ((size_t)(end - p) - 4 < n)
      return 0;
    if (type == EXT_SESSION_TICKET) {
      *ticket = p + 4;
      *ticket_len = n;
      return n > 0;
    }
    p += 4 + n;
  }
  return 0;
}

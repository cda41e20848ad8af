/* Reading a ClientHello before libssl does: which datagrams hold one, and
 * what the endpoint decides on before any public-key work. */
#ifndef DTLSPLEX_CLIENT_HELLO_H
#define DTLSPLEX_CLIENT_HELLO_H

#include <stddef.h>
#include <stdint.h>

/* Whether the datagram starts with a plaintext, epoch-0 DTLS handshake
 * record carrying a ClientHello. */
int dp_is_client_hello(const uint8_t *d, size_t len);
/* The ClientHello's random (32 bytes), if this datagram holds its first
 * fragment; NULL otherwise. */
const uint8_t *dp_client_hello_random(const uint8_t *d, size_t len);
/* The SessionTicket extension's content (RFC 5077), if the datagram holds
 * the whole ClientHello in its first record and the extension is present
 * and not empty: 1 with *ticket and *ticket_len set, else 0. */
int dp_client_hello_ticket(const uint8_t *d, size_t len, const uint8_t **ticket, size_t *ticket_len);

#endif

/* The PROXY protocol's version 2 header (HAProxy's proxy-protocol.txt,
 * section 2.2), put before each datagram towards a backend that must know
 * the client's address: the backend sees the proxy's address instead. */
#ifndef PROXY_HEADER_H
#define PROXY_HEADER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header: 16 fixed bytes and two IPv6 addresses and ports. */
#define PP2_MAX (16 + 36)

/* Writes the header of a datagram from src (the DTLS client) to dst (the
 * proxy's address it reached) to out; returns its length.  IPv4-mapped
 * addresses are given as IPv4 ("UDP over IPv4"); a dst of the other family
 * than src is given as zeros. */
size_t pp2_header(uint8_t out[PP2_MAX], const struct sockaddr *src, const struct sockaddr *dst);

#endif

/* What the libFuzzer target and its seed generator share: the server they
 * talk to (fixed cookie secret, fixed clock, fixed client addresses) and the
 * input format, so that cookies in generated seeds stay valid in the fuzzer.
 *
 * Input: a sequence of datagrams, each [source index (1 byte, mod 4)]
 * [length (2 bytes, big-endian)] [bytes]. */
#ifndef TESTS_FUZZ_COMMON_H
#define TESTS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "dtlsplex.h"
#include "endpoint.h"

#define FUZZ_SOURCES 4

/* The server's configuration (certificate made once) or NULL on failure. */
dtlsplex_config *fuzz_server_config(void);
/* Client address i (127.0.0.1:40000+i). */
dp_addr fuzz_source(unsigned i);
/* Feeds every datagram of input to ep, as from its source. */
void fuzz_feed(dp_endpoint *ep, const uint8_t *input, size_t len);

#endif

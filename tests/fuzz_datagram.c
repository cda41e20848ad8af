/* libFuzzer target: arbitrary datagrams from a handful of source addresses
 * into a server endpoint (configure --enable-fuzz; see docs/SECURITY.md). */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "sim_clock.h"

static dtlsplex_config *cfg;

static int discard(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len) {
  (void)arg, (void)to, (void)source, (void)data, (void)len;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (cfg == NULL && (cfg = fuzz_server_config()) == NULL)
    return 0;
  sim_now = 1800000000000ULL; /* the seeds' cookie period */
  dp_endpoint *ep = dp_endpoint_new(cfg, discard, NULL);
  if (ep == NULL)
    return 0;
  fuzz_feed(ep, data, size);
  uint8_t buf[64];
  while (dp_endpoint_recv(ep, buf, sizeof buf, 0, NULL) >= 0) {
  }
  dp_endpoint_free(ep);
  return 0;
}

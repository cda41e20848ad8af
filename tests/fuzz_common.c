#include "fuzz_common.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "sim_clock.h"

static const unsigned char fixed_cookie_secret[32] = "dtlsplex fuzzing: fixed secret";

dtlsplex_config *fuzz_server_config(void) {
  test_pki pki;
  if (test_pki_make(&pki) != 0)
    return NULL;
  dtlsplex_config *cfg = dtlsplex_config_new();
  static const unsigned char psk[16] = "fuzzing psk key";
  if (cfg == NULL || dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key) != 0 ||
      dtlsplex_config_set_psk(cfg, "fuzz", psk, sizeof psk) != 0 ||
      dtlsplex_config_set_cookie_secret(cfg, fixed_cookie_secret, sizeof fixed_cookie_secret) != 0 ||
      dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER) != 0) {
    dtlsplex_config_free(cfg);
    cfg = NULL;
  }
  test_pki_remove(&pki);
  return cfg;
}

dp_addr fuzz_source(unsigned i) {
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(40000 + i % FUZZ_SOURCES)),
                           .sin_addr.s_addr = htonl(0x7f000001)};
  dp_addr a;
  dp_addr_from_sockaddr(&a, (struct sockaddr *)&in, sizeof in, AF_INET);
  return a;
}

void fuzz_feed(dp_endpoint *ep, const uint8_t *input, size_t len) {
  while (len >= 3) {
    dp_addr from = fuzz_source(input[0]);
    size_t n = (size_t)input[1] << 8 | input[2];
    input += 3;
    len -= 3;
    if (n > len)
      n = len;
    dp_endpoint_read_pkt(ep, &from, NULL, input, n, sim_now);
    input += n;
    len -= n;
    sim_now += 100; /* time passes between datagrams, within one cookie period */
    dp_endpoint_handle_expiry(ep, sim_now);
  }
}

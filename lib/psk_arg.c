#include "psk_arg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The key off the stack (the tools do not link libcrypto's cleanse). */
static void wipe(unsigned char *p, size_t len) {
  volatile unsigned char *v = p;
  while (len-- > 0)
    *v++ = 0;
}

int dp_psk_arg_apply(dtlsplex_config *cfg, const char *arg, const char **why) {
  const char *colon = strchr(arg, ':');
  char identity[129];
  unsigned char key[64];
  size_t id_len = colon != NULL ? (size_t)(colon - arg) : 0, hex_len = colon != NULL ? strlen(colon + 1) : 0;
  if (colon == NULL || id_len == 0)
    *why = "--psk takes IDENTITY:HEXKEY";
  else if (id_len >= sizeof identity)
    *why = "--psk: identity longer than 128 bytes";
  else if (hex_len == 0 || hex_len % 2 != 0 || hex_len / 2 > sizeof key)
    *why = "--psk: key must be 1 to 64 bytes in hex";
  else if (strspn(colon + 1, "0123456789abcdefABCDEF") != hex_len)
    *why = "--psk: key is not hex";
  else
    *why = NULL;
  if (*why != NULL)
    return -1;
  memcpy(identity, arg, id_len);
  identity[id_len] = '\0';
  for (size_t i = 0; i < hex_len / 2; i++) {
    char byte[3] = {colon[1 + 2 * i], colon[2 + 2 * i], '\0'};
    key[i] = (unsigned char)strtoul(byte, NULL, 16);
  }
  int r = dtlsplex_config_set_psk(cfg, identity, key, hex_len / 2);
  int err = errno;
  wipe(key, sizeof key);
  errno = err;
  return r < 0 ? -2 : 0;
}

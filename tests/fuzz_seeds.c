/* Writes the fuzzer's seed corpus: the datagrams real clients (certificate
 * and PSK) send to the fuzzing server during a handshake and a little data,
 * in fuzz_common.h's input format.  Usage: fuzz_seeds DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "fuzz_common.h"
#include "sim_clock.h"

/* The recording network: client datagrams are recorded and handed to the
 * server; server datagrams go straight back to the client. */
static dp_endpoint *server, *client;
static dp_addr server_addr;
static uint8_t record[65536];
static size_t record_len;
static uint8_t queue[64][2048];
static size_t queue_len[64], queued, client_index;

static void append(const uint8_t *data, size_t len);

static int client_send(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len) {
  (void)arg, (void)to, (void)source;
  append(data, len);
  if (queued < 64 && len <= sizeof queue[0]) {
    memcpy(queue[queued], data, len);
    queue_len[queued++] = len;
  }
  return 0;
}

static int server_send(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len) {
  (void)arg, (void)to, (void)source;
  dp_endpoint_read_pkt(client, &server_addr, NULL, data, len, sim_now);
  return 0;
}

static void append(const uint8_t *data, size_t len) {
  if (record_len + 3 + len > sizeof record)
    return;
  record[record_len] = (uint8_t)client_index;
  record[record_len + 1] = (uint8_t)(len >> 8);
  record[record_len + 2] = (uint8_t)len;
  memcpy(record + record_len + 3, data, len);
  record_len += 3 + len;
}

/* After the handshake, the shape that once ended a session with one forged
 * datagram (issue 18): records of the established epoch too short for the
 * suite's nonce and tag, of each type. */
static void append_short_sealed_records(void) {
  static const uint8_t types[] = {21, 22, 23};
  for (size_t t = 0; t < sizeof types; t++) {
    for (uint8_t len = 8; len <= 23; len += 15) {
      uint8_t d[13 + 23] = {types[t], 0xfe, 0xfd, 0, 1, 0, 0, 0xff, 0xff, 0, 0, 0, len};
      for (size_t i = 13; i < sizeof d; i++)
        d[i] = (uint8_t)(i * 37 + len);
      append(d, 13u + len);
    }
  }
}

static void run(const char *dir, const char *name, dtlsplex_config *scfg, dtlsplex_config *ccfg) {
  record_len = 0;
  queued = 0;
  client_index = 1;
  sim_now = 1800000000000ULL;
  server = dp_endpoint_new(scfg, server_send, NULL);
  client = dp_endpoint_new(ccfg, client_send, NULL);
  server_addr = fuzz_source(3);
  dp_endpoint_write_pkt(client, &server_addr, NULL, "seed data", 9, 1, sim_now);
  dp_addr from = fuzz_source((unsigned)client_index);
  for (size_t i = 0; i < queued && i < 64; i++) {
    sim_now += 100;
    dp_endpoint_read_pkt(server, &from, NULL, queue[i], queue_len[i], sim_now);
  }
  append_short_sealed_records();
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(record, 1, record_len, f) != record_len || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
  struct dtlsplex_stats st;
  dp_endpoint_stats(server, &st);
  printf("%s: %zu bytes, %zu datagrams; the server completed %llu handshake(s)\n", path, record_len, queued,
         (unsigned long long)st.handshakes_ok);
  if (st.handshakes_ok != 1) {
    fprintf(stderr, "fuzz_seeds: the recorded handshake did not complete\n");
    exit(1);
  }
  dp_endpoint_free(client);
  dp_endpoint_free(server);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  dtlsplex_config *scfg = fuzz_server_config();
  dtlsplex_config *cert_client = dtlsplex_config_new(), *psk_client = dtlsplex_config_new();
  static const unsigned char psk[16] = "fuzzing psk key";
  if (scfg == NULL || cert_client == NULL || psk_client == NULL ||
      dtlsplex_config_set_verify(cert_client, DTLSPLEX_VERIFY_NONE) != 0 ||
      dtlsplex_config_set_psk(psk_client, "fuzz", psk, sizeof psk) != 0) {
    fprintf(stderr, "fuzz_seeds: cannot configure\n");
    return 1;
  }
  run(argv[1], "certificate-handshake", scfg, cert_client);
  run(argv[1], "psk-handshake", scfg, psk_client);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(cert_client);
  dtlsplex_config_free(psk_client);
  return 0;
}

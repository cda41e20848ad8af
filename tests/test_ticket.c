/* Unit tests for lib/ticket.c: session-ticket keys from a master secret
 * and the period of time. */
#include <stdint.h>
#include <string.h>

#include <check.h>

#include "check_main.h"
#include "ticket.h"

static const uint8_t master_a[32] = "dtlsplex test ticket master A..";
static const uint8_t master_b[32] = "dtlsplex test ticket master B..";

#define PERIOD_S 3600
#define T0 UINT64_C(1700000012345) /* ms, inside some period */
#define PERIOD_MS ((uint64_t)PERIOD_S * 1000)

static void keys(dp_ticket_keys *k, const uint8_t *master) {
  ck_assert_int_eq(dp_ticket_keys_init(k, master, 32, PERIOD_S), 0);
}

/* Servers sharing the master agree, with no coordination; another master
 * opens nothing. */
START_TEST(same_master_same_keys) {
  dp_ticket_keys a, a2, b;
  keys(&a, master_a);
  keys(&a2, master_a);
  keys(&b, master_b);
  dp_ticket_key sealed, opened;
  ck_assert_int_eq(dp_ticket_key_to_seal(&a, T0, &sealed), 0);
  ck_assert_int_eq(dp_ticket_key_to_open(&a2, sealed.name, T0, &opened), 1);
  ck_assert_mem_eq(opened.aes, sealed.aes, sizeof sealed.aes);
  ck_assert_mem_eq(opened.mac, sealed.mac, sizeof sealed.mac);
  ck_assert_int_eq(dp_ticket_key_to_open(&b, sealed.name, T0, &opened), 0);
  /* The three keys of a period are distinct derivations. */
  ck_assert(memcmp(sealed.aes, sealed.mac, 32) != 0);
  dp_ticket_keys_cleanup(&a);
  dp_ticket_keys_cleanup(&a2);
  dp_ticket_keys_cleanup(&b);
}
END_TEST

/* A key seals in its period and opens in that period (1) and the next (2:
 * renew), never later; each period has its own. */
START_TEST(keys_rotate) {
  dp_ticket_keys k;
  keys(&k, master_a);
  dp_ticket_key sealed, next, opened;
  ck_assert_int_eq(dp_ticket_key_to_seal(&k, T0, &sealed), 0);
  ck_assert_int_eq(dp_ticket_key_to_open(&k, sealed.name, T0 + 1000, &opened), 1);
  ck_assert_int_eq(dp_ticket_key_to_open(&k, sealed.name, T0 + PERIOD_MS, &opened), 2);
  ck_assert_mem_eq(opened.aes, sealed.aes, sizeof sealed.aes);
  ck_assert_int_eq(dp_ticket_key_to_open(&k, sealed.name, T0 + 2 * PERIOD_MS, &opened), 0);
  ck_assert_int_eq(dp_ticket_key_to_seal(&k, T0 + PERIOD_MS, &next), 0);
  ck_assert(memcmp(next.name, sealed.name, sizeof next.name) != 0);
  ck_assert(memcmp(next.aes, sealed.aes, sizeof next.aes) != 0);
  /* Back to an old period (a clock stepped back): derived again, the same. */
  ck_assert_int_eq(dp_ticket_key_to_seal(&k, T0 - 3 * PERIOD_MS, &opened), 0);
  ck_assert_int_eq(dp_ticket_key_to_seal(&k, T0, &opened), 0);
  ck_assert_mem_eq(opened.aes, sealed.aes, sizeof sealed.aes);
  dp_ticket_keys_cleanup(&k);
}
END_TEST

/* A new master or period forgets the keys derived before. */
START_TEST(new_master_or_period) {
  dp_ticket_keys k;
  keys(&k, master_a);
  dp_ticket_key sealed, opened;
  ck_assert_int_eq(dp_ticket_key_to_seal(&k, T0, &sealed), 0);
  dp_ticket_keys_set(&k, master_b, sizeof master_b);
  ck_assert_int_eq(dp_ticket_key_to_open(&k, sealed.name, T0, &opened), 0);
  dp_ticket_keys_set(&k, master_a, sizeof master_a);
  ck_assert_int_eq(dp_ticket_key_to_open(&k, sealed.name, T0, &opened), 1);
  dp_ticket_keys_set_period(&k, 60);
  ck_assert_int_eq(dp_ticket_key_to_open(&k, sealed.name, T0, &opened), 0); /* another period, another key */
  dp_ticket_keys_cleanup(&k);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ticket");
  TCase *tc = tcase_create("ticket");
  tcase_add_test(tc, same_master_same_keys);
  tcase_add_test(tc, keys_rotate);
  tcase_add_test(tc, new_master_or_period);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_FORK_GETENV);
}

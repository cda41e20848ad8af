#!/bin/bash
# dtlsproxy end to end: dig asks dtlsproxy --client, which carries each
# query over DTLS to dtlsproxy, in front of dnsmasq serving a test zone.
# The answers must be those of asking dnsmasq directly, also for 50
# queries at once (50 local sources: 50 sessions); then the statistics on
# SIGUSR1, a reload on SIGHUP, idle peers expired on both sides, and a
# clean exit on SIGINT.  One line per check; exits 1 if any failed, 77
# (outside CI) if dnsmasq or dig is missing.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"
# shellcheck source=tests/proxy-lib.sh
. "$(dirname "$0")/proxy-lib.sh"

IDLE=3
proxy_setup
start_dns
start_proxies --idle "$IDLE"
T=$IL_TMP

# The same questions, directly and through the two proxies.
same=1
for q in "alpha.$ZONE A" "alpha.$ZONE AAAA" "note.$ZONE TXT" "host7.$ZONE A" "missing.$ZONE A"; do
  read -r name type <<<"$q"
  direct=$(ask "$DNS_PORT" "$name" "$type")
  proxied=$(ask "$CLIENT_PORT" "$name" "$type")
  if [ -z "$direct" ] || [ "$direct" != "$proxied" ]; then
    same=0
    not_ok "$name $type: the answer through the proxies is dnsmasq's own" "direct:" "$direct" \
      "through the proxies:" "$proxied" "@$T/dtlsproxy-cli.err" "@$T/dtlsproxy-srv.err"
  fi
done
[ "$same" = 1 ] && ok "A, AAAA, TXT and NXDOMAIN answers through the proxies are dnsmasq's own (header, flags, answer)"
if grep -q "status: NXDOMAIN" <(ask "$CLIENT_PORT" "missing.$ZONE" A); then
  ok "a name the zone lacks is NXDOMAIN through the proxies"
else
  not_ok "a name the zone lacks is NXDOMAIN through the proxies"
fi

# 50 queries at once, each dig from a port of its own.
pids=()
for i in $(seq 1 50); do
  ask "$CLIENT_PORT" "host$i.$ZONE" A >"$T/parallel.$i" &
  pids+=("$!")
done
wait "${pids[@]}" # not the proxies and dnsmasq, also children of this shell
wrong=()
for i in $(seq 1 50); do
  want=$(ask "$DNS_PORT" "host$i.$ZONE" A)
  if ! grep -q "198\.51\.100\.$i$" "$T/parallel.$i" || [ "$(cat "$T/parallel.$i")" != "$want" ]; then
    wrong+=("host$i: $(grep -v '^;' "$T/parallel.$i" | grep . | tr '\n' ' ')")
  fi
done
if [ ${#wrong[@]} = 0 ]; then
  ok "50 parallel queries through the proxies: every answer is dnsmasq's own"
else
  not_ok "50 parallel queries through the proxies: every answer is dnsmasq's own" \
    "${#wrong[@]} wrong or missing:" "${wrong[@]}" "@$T/dtlsproxy-srv.err"
fi

line=$(stats dtlsproxy-srv)
handshakes=$(stat_field "$line" handshakes)
if [ "${handshakes:-0}" -ge 50 ] && [ "$(stat_field "$line" up)" -ge 50 ] &&
  [ "$(stat_field "$line" down)" -ge 50 ]; then
  ok "SIGUSR1: the server side reports its handshakes and datagrams ($line)"
else
  not_ok "SIGUSR1: the server side reports at least 50 handshakes and 50 datagrams each way" \
    "line: ${line:-none}" "@$T/dtlsproxy-srv.err"
fi
line=$(stats dtlsproxy-cli)
# Its peers may have expired already (the queries took longer than --idle
# on a loaded machine): the handshakes are what shows a session per source.
if [ "$(stat_field "$line" handshakes)" -ge 50 ] && [ "$(stat_field "$line" up)" -ge 50 ]; then
  ok "SIGUSR1: the client side reports a session per local source ($line)"
else
  not_ok "SIGUSR1: the client side reports a session per local source" "line: ${line:-none}" \
    "@$T/dtlsproxy-cli.err"
fi

before=$(grep -c '^reloaded$' "$T/dtlsproxy-srv.err")
signal dtlsproxy-srv HUP
if poll "$IL_WAIT" count_lines_above "$T/dtlsproxy-srv.err" '^reloaded$' "$before" &&
  [ "$(ask "$CLIENT_PORT" "alpha.$ZONE" A)" = "$(ask "$DNS_PORT" "alpha.$ZONE" A)" ]; then
  ok "SIGHUP: the server side reloads its certificate and answers a new client"
else
  not_ok "SIGHUP: the server side reloads its certificate and answers a new client" "@$T/dtlsproxy-srv.err"
fi

# Idle: after --idle seconds without traffic both sides forget every peer.
# shellcheck disable=SC2317 # called by poll
both_empty() {
  [ "$(stat_field "$(stats dtlsproxy-srv)" peers)" = 0 ] && [ "$(stat_field "$(stats dtlsproxy-cli)" peers)" = 0 ]
}
if poll $((IDLE + IL_WAIT)) both_empty; then
  line=$(stats dtlsproxy-srv)
  ok "idle peers expire on both sides within ${IDLE}s and a bit (server: $line)"
else
  not_ok "idle peers expire on both sides" "server: $(stats dtlsproxy-srv)" "client: $(stats dtlsproxy-cli)"
fi
if [ "$(ask "$CLIENT_PORT" "note.$ZONE" TXT)" = "$(ask "$DNS_PORT" "note.$ZONE" TXT)" ]; then
  ok "after the expiry a query gets a new session and its answer"
else
  not_ok "after the expiry a query gets a new session and its answer" "@$T/dtlsproxy-cli.err"
fi

for side in dtlsproxy-cli dtlsproxy-srv; do
  if interrupt "$side" && [ "$IL_STATUS" = 0 ]; then
    ok "$side exits with status 0 on SIGINT"
  else
    not_ok "$side exits with status 0 on SIGINT" "status: ${IL_STATUS:-still running}" "@$T/$side.err"
  fi
done
stop dnsmasq
finish

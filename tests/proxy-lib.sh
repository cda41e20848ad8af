#!/bin/bash
# shellcheck shell=bash
# Helpers for the dtlsproxy tests (tests/proxy-*.sh), sourced after
# interop-lib.sh, not run.
#
# They give a test:
#   DTLSPROXY           the dtlsproxy under test
#   proxy_setup         interop-lib's setup, dtlsproxy, fresh certificates
#   start_dns           dnsmasq on 127.0.0.1, a fresh port (DNS_PORT),
#                       serving the zone proxytest.example only (ZONE_NAMES):
#                       host1..host50 A 198.51.100.N, alpha A and AAAA,
#                       note TXT $ZONE_TXT; other names in it NXDOMAIN
#   start_proxies ARGS...  dtlsproxy in front of it (dtlsproxy-srv, port
#                       SERVER_PORT) and dtlsproxy --client towards that one
#                       (dtlsproxy-cli, port CLIENT_PORT), both with ARGS
#   ask PORT NAME TYPE  dig's answer from 127.0.0.1 PORT: header comments
#                       (the query id taken out) and the answer section
#   stats NAME          SIGUSR1 to NAME; its statistics line (bounded wait)
#   stat_field LINE KEY the number after KEY= in LINE

ZONE=proxytest.example
ZONE_TXT="dtlsproxy-zone-marker"
ZONE_AAAA=2001:db8:5ec:7e57::11
# The AAAA address as the bytes on the wire, for searching captures.
# shellcheck disable=SC2034 # for the sourcing script
ZONE_AAAA_HEX="20 01 0d b8 05 ec 7e 57 00 00 00 00 00 00 00 11"

proxy_setup() {
  require_prog dnsmasq
  require_prog dig
  il_setup
  il_find_tool DTLSPROXY dtlsproxy
  make_certs
}

start_dns() {
  local i records=()
  for i in $(seq 1 50); do
    records+=("--host-record=host$i.$ZONE,198.51.100.$i")
  done
  DNS_PORT=$(free_udp_port) || exit 99
  # Foreground, no configuration file, no upstream, no /etc/hosts: the zone
  # alone, on loopback; a name of the zone it lacks is NXDOMAIN.
  spawn dnsmasq dnsmasq -k --conf-file=/dev/null --pid-file= --port="$DNS_PORT" \
    --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --local="/$ZONE/" \
    --host-record="alpha.$ZONE,192.0.2.11,$ZONE_AAAA" --txt-record="note.$ZONE,$ZONE_TXT" "${records[@]}"
  if ! wait_udp_bound "$DNS_PORT"; then
    not_ok "dnsmasq serves the test zone on 127.0.0.1 port $DNS_PORT" "@$IL_TMP/dnsmasq.err"
    finish
  fi
}

# proxy_port NAME DESCRIPTION: the port dtlsproxy NAME announced; a failed
# check and the end of the test if none.
proxy_port() {
  local port
  port=$(listen_port "$1")
  if [ -z "$port" ]; then
    not_ok "$2 starts" "@$IL_TMP/$1.err"
    finish
  fi
  echo "$port"
}

start_proxies() {
  spawn dtlsproxy-srv "$DTLSPROXY" -v -l 127.0.0.1 0 --to 127.0.0.1 "$DNS_PORT" \
    -c "$IL_TMP/chain.pem" -k "$IL_TMP/server.key" "$@"
  SERVER_PORT=$(proxy_port dtlsproxy-srv "dtlsproxy (server side)")
  spawn dtlsproxy-cli "$DTLSPROXY" -v --client -l 127.0.0.1 0 --to 127.0.0.1 "$SERVER_PORT" \
    -C "$IL_TMP/ca.pem" "$@"
  # shellcheck disable=SC2034 # for the sourcing script
  CLIENT_PORT=$(proxy_port dtlsproxy-cli "dtlsproxy --client")
}

ask() {
  timeout 30 dig @127.0.0.1 -p "$1" +time=5 +tries=3 +noall +comments +answer "$2" "$3" |
    sed 's/, id: [0-9]*$//'
}

stats() {
  local before
  before=$(grep -c ' peers=' "$IL_TMP/$1.err")
  signal "$1" USR1
  poll "$IL_WAIT" count_lines_above "$IL_TMP/$1.err" ' peers=' "$before"
  grep ' peers=' "$IL_TMP/$1.err" | tail -n 1
}
# shellcheck disable=SC2317 # called by poll
count_lines_above() { [ "$(grep -c -- "$2" "$1")" -gt "$3" ]; }

stat_field() { printf '%s\n' "$1" | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }

#!/bin/bash
# shellcheck shell=bash
# Helpers for the fleet tests (tests/fleet-*.sh), sourced after
# interop-lib.sh (processes, bounded waits, ports, certificates, checks):
#
#   fleet_setup           il_setup, then ECHO_SERVER and ECHO_CLIENT (the
#                         examples) and IL_TMP/fleet.key, a 32-byte secret
#   start_clients HOST PORT [BASE]   FLEET_CLIENTS continuous echo clients
#                         client1..clientN, one echo every FLEET_INTERVAL ms,
#                         resuming after FLEET_RESUME_AFTER ms of silence;
#                         with BASE (127.0.0.), client i sends from BASE(10+i)
#   wait_connected        bounded wait for every client's first handshake
#   client_server NAME    the certificate subject of NAME's first server
#   client_port NAME      NAME's local port
#   client_sum NAME KEY   a field of NAME's summary line (sent, echoed, lost,
#                         handshakes, resumed, longest_gap_ms)
#   recovery_ms NAME T    how long after T (ms since 1970) NAME's echoes came
#                         back: the end of its first gap that ends after T;
#                         empty if it had none
#   stats FILE N KEY      KEY of the Nth "stats:" line in FILE (1 = first)
#   stop_clients          SIGTERM to every client, bounded wait; CLIENT_STATUS
#                         holds the clients whose exit was not 0
#   now_ms                the system clock, ms since 1970 (as the clients')
#   summarize LIST        "n=.. min=.. median=.. max=.." of numbers
#   check_sanitizers      a failed check for each sanitizer report on stderr
#
# The figures every fleet test uses: 20 clients, an echo every 100 ms,
# a resumption after 1 s without an answer (dtlsplex_config_set_resume_after).

FLEET_CLIENTS=${FLEET_CLIENTS:-20}
FLEET_INTERVAL=${FLEET_INTERVAL:-100}
FLEET_RESUME_AFTER=${FLEET_RESUME_AFTER:-1000}

fleet_setup() {
  il_setup
  local here c
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  for c in ${top_builddir:+"$top_builddir/examples"} "$here/../examples"; do
    if [ -x "$c/echo-server" ] && [ -x "$c/echo-client" ]; then
      ECHO_SERVER=$c/echo-server
      ECHO_CLIENT=$c/echo-client
      break
    fi
  done
  if [ -z "${ECHO_SERVER:-}" ]; then
    echo "ERROR: examples/echo-server and echo-client not found (top_builddir=${top_builddir:-unset}); build them first"
    exit 99
  fi
  head -c 32 /dev/urandom >"$IL_TMP/fleet.key" || exit 99
}

now_ms() {
  local t=${EPOCHREALTIME/[.,]/}
  echo $((t / 1000))
}

start_clients() {
  local host=$1 port=$2 base=${3:-} i bind
  for ((i = 1; i <= FLEET_CLIENTS; i++)); do
    bind=()
    [ -n "$base" ] && bind=(--bind "$base$((10 + i))")
    spawn "client$i" "$ECHO_CLIENT" "$host" "$port" 0 --ca "$IL_TMP/ca.pem" --name localhost \
      --interval "$FLEET_INTERVAL" --resume-after "$FLEET_RESUME_AFTER" "${bind[@]}"
  done
}

# fleet_all_connected: every client has made its first handshake (for poll).
fleet_all_connected() {
  local i
  for ((i = 1; i <= FLEET_CLIENTS; i++)); do
    grep -q ' handshake=1 ' "$IL_TMP/client$i.out" || return 1
  done
}

wait_connected() {
  local i
  poll $((2 * IL_WAIT)) fleet_all_connected && return 0
  for ((i = 1; i <= FLEET_CLIENTS; i++)); do
    grep -q ' handshake=1 ' "$IL_TMP/client$i.out" && continue
    not_ok "client$i connects" "@$IL_TMP/client$i.out" "@$IL_TMP/client$i.err"
  done
  return 1
}

client_server() { sed -n 's/.* handshake=1 .* server=\(.*\)$/\1/p' "$IL_TMP/$1.out" | head -n 1; }
client_port() { sed -n 's/^echo-client: pid=[0-9]* port=\([0-9]*\) .*/\1/p' "$IL_TMP/$1.out" | head -n 1; }
# fleet_field KEY: the value of the KEY=VALUE field of each line (awk).
fleet_field() { awk -v k="$1=" '{ for (i = 1; i <= NF; i++) if (index($i, k) == 1) print substr($i, length(k) + 1) }'; }
client_sum() { grep ' sent=' "$IL_TMP/$1.out" | tail -n 1 | fleet_field "$2"; }

recovery_ms() {
  local to
  to=$(awk -v t="$2" '/ gap_ms=/ { for (i = 1; i <= NF; i++) if ($i ~ /^to=/) { v = substr($i, 4); if (v + 0 > t + 0) { print v; exit } } }' \
    "$IL_TMP/$1.out")
  [ -n "$to" ] && echo $((to - $2))
}

stats() { grep 'echo-server: stats: ' "$1" | sed -n "$2p" | fleet_field "$3"; }

# Waits (bounded) until every client named has been served again since
# kill_ms ($1), then 2 s more, to see it stay served and the others
# undisturbed; then stops the clients.
wait_served_again() {
  back_kill_ms=$1
  shift
  back_clients=("$@")
  poll $((FLEET_BOUND_MS / 1000 + 10)) all_back
  sleep 2
  stop_clients
}

# shellcheck disable=SC2317 # called by poll
all_back() {
  local c
  for c in "${back_clients[@]}"; do
    [ -n "$(recovery_ms "$c" "$back_kill_ms")" ] || return 1
  done
}

stop_clients() {
  local i
  CLIENT_STATUS=
  for ((i = 1; i <= FLEET_CLIENTS; i++)); do
    signal "client$i" TERM 2>/dev/null
  done
  for ((i = 1; i <= FLEET_CLIENTS; i++)); do
    if ! wait_exit "client$i" "$IL_WAIT" || [ "$IL_STATUS" != 0 ]; then
      CLIENT_STATUS="$CLIENT_STATUS client$i(${IL_STATUS:-running})"
    fi
  done
}

summarize() {
  # shellcheck disable=SC2048,SC2086 # a list of numbers, split on purpose
  printf '%s\n' $* | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "n=0"; exit }
    printf "n=%d min=%d median=%d max=%d", NR, v[1], v[int((NR + 1) / 2)], v[NR] }'
}

check_sanitizers() {
  local f
  for f in "$IL_TMP"/*.err; do
    [ -e "$f" ] || continue
    if grep -q -e 'Sanitizer' -e 'runtime error:' "$f"; then
      not_ok "no sanitizer report from ${f##*/}" "@$f"
    fi
  done
}

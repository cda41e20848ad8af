#!/bin/bash
# dtlscat --fleet-secret: two dtlscat servers that share a secret resume
# each other's sessions (openssl s_client saves its session from the first,
# -sess_out, and offers it to the second, -sess_in: "Reused"); a server with
# another secret makes a full handshake ("New").  Also the option's errors:
# a file of the wrong size (status 2), a missing file (status 1), a client
# (status 2).  One line per check; exits 1 if any failed, 77 if openssl is
# missing.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"

il_setup
make_certs
T=$IL_TMP
head -c 32 /dev/urandom >"$T/fleet.key" || exit 99
head -c 32 /dev/urandom >"$T/other.key" || exit 99
head -c 15 /dev/urandom >"$T/short.key" || exit 99

# session NAME PORT ARGS...: an s_client to PORT that sends a line, gets it
# echoed, and is stopped; its stdout shows "New, ..." or "Reused, ...".
session() {
  local name=$1 port=$2 line
  shift 2
  spawn "$name" openssl s_client -dtls1_2 -connect "127.0.0.1:$port" -servername localhost -CAfile "$T/ca.pem" \
    -verify_return_error -verify_hostname localhost "$@"
  line=$(uniq_line "$name")
  feed_line "$name" "$line"
  expect_line "$name" "$line" "$name: s_client verifies the server and gets its line echoed" "@$T/$name.err"
  stop "$name"
}
# handshake NAME: "New" or "Reused", as s_client NAME reported it.
handshake() { sed -n 's/^\(New\|Reused\), .*/\1/p' "$T/$1.out" | head -n 1; }

dtlscat_server dtlscat-a -e --fleet-secret "$T/fleet.key" -c "$T/server.pem" -k "$T/server.key" || finish
PORT_A=$SERVER_PORT
dtlscat_server dtlscat-b -e --fleet-secret "$T/fleet.key" -c "$T/server.pem" -k "$T/server.key" || finish
PORT_B=$SERVER_PORT
dtlscat_server dtlscat-c -e --fleet-secret "$T/other.key" -c "$T/server.pem" -k "$T/server.key" || finish
PORT_C=$SERVER_PORT

session first "$PORT_A" -sess_out "$T/session.pem"
if [ "$(handshake first)" = New ] && [ -s "$T/session.pem" ]; then
  ok "a first s_client makes a full handshake with server A and keeps the session (a ticket)"
else
  not_ok "a first s_client makes a full handshake with server A and keeps the session" "@$T/first.out"
fi
session same-fleet "$PORT_B" -sess_in "$T/session.pem"
if [ "$(handshake same-fleet)" = Reused ]; then
  ok "server B, same --fleet-secret, resumes the session A made"
else
  not_ok "server B, same --fleet-secret, resumes the session A made" "@$T/same-fleet.out" "@$T/dtlscat-b.err"
fi
session other-fleet "$PORT_C" -sess_in "$T/session.pem"
if [ "$(handshake other-fleet)" = New ]; then
  ok "server C, another --fleet-secret, makes a full handshake instead"
else
  not_ok "server C, another --fleet-secret, makes a full handshake instead" "@$T/other-fleet.out"
fi

# expect_refusal DESC STATUS MESSAGE ARGS...: dtlscat ARGS exits with STATUS
# and the one line MESSAGE on stderr.
expect_refusal() {
  local desc=$1 want_status=$2 want=$3 status
  shift 3
  "$DTLSCAT" "$@" >"$T/refusal.out" 2>"$T/refusal.err" </dev/null
  status=$?
  if [ "$status" = "$want_status" ] && [ "$(cat "$T/refusal.err")" = "$want" ]; then
    ok "$desc"
  else
    not_ok "$desc" "expected status $want_status and $(show "$want")" "got status $status" "@$T/refusal.err"
  fi
}
expect_refusal "a 15-byte secret is refused (status 2)" 2 \
  "dtlscat: --fleet-secret $T/short.key: 15 bytes; a fleet secret is 16 to 64 bytes" \
  -l --fleet-secret "$T/short.key" -c "$T/server.pem" -k "$T/server.key" 127.0.0.1 0
expect_refusal "a missing secret file is refused (status 1)" 1 \
  "dtlscat: --fleet-secret $T/none.key: No such file or directory" \
  -l --fleet-secret "$T/none.key" -c "$T/server.pem" -k "$T/server.key" 127.0.0.1 0
expect_refusal "a client refuses --fleet-secret (status 2)" 2 "dtlscat: --fleet-secret is for servers (-l)" \
  --fleet-secret "$T/fleet.key" 127.0.0.1 9
finish

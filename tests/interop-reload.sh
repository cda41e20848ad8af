#!/bin/bash
# Certificate rotation without a restart: a dtlscat server reloads its
# certificate and key files on SIGHUP.  A client connected before keeps its
# session; a new openssl s_client sees the new certificate; a bad file is
# refused, and the certificate in use stays.  One line per check; exits 1 if
# any failed, 77 if openssl is missing.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"

il_setup
make_pki3
T=$IL_TMP
# Certificate A is server3.pem (CN=localhost); B another leaf of the same
# intermediate, for the same names (localhost, 127.0.0.1, ::1).
make_leaf rotated "/CN=rotated.example" 13
SUBJECT_A="CN = localhost"
SUBJECT_B="CN = rotated.example"

# put_live CHAIN KEY: LIVE.pem and LIVE.key, the files the server was started
# with, become copies of CHAIN and KEY (each replaced whole, by a rename).
put_live() {
  cp "$1" "$T/LIVE.pem.new" && mv -f "$T/LIVE.pem.new" "$T/LIVE.pem" || exit 99
  cp "$2" "$T/LIVE.key.new" && mv -f "$T/LIVE.key.new" "$T/LIVE.key" || exit 99
}

# hup TEXT DESCRIPTION: SIGHUP to the server; its stderr must then show TEXT
# once more than before (bounded wait).
hup() {
  local text=$1 desc=$2 before
  before=$(grep -cF -- "$text" "$T/dtlscat-srv.err")
  signal dtlscat-srv HUP
  if poll "$IL_WAIT" count_above "$T/dtlscat-srv.err" "$text" "$before"; then
    ok "$desc"
  else
    not_ok "$desc" "expected the server to print $(show "$text") after SIGHUP" "@$T/dtlscat-srv.err"
  fi
}
# count_above FILE TEXT N: FILE has more than N lines with TEXT (for poll).
# shellcheck disable=SC2317 # called by poll
count_above() { [ "$(grep -cF -- "$2" "$1")" -gt "$3" ]; }

# new_client NAME SUBJECT WHEN: a new openssl s_client, trusting the root
# alone, must verify the server, get a line echoed, and see SUBJECT as that
# of the leaf certificate the server sent.
new_client() {
  local name=$1 want=$2 when=$3 line leaf
  spawn "$name" openssl s_client -dtls1_2 -connect "127.0.0.1:$SERVER_PORT" -servername localhost \
    -showcerts -CAfile "$T/root.pem" -verify_return_error -verify_hostname localhost
  line=$(uniq_line "$name")
  feed_line "$name" "$line"
  expect_line "$name" "$line" "$when: a new s_client verifies the server (root only) and gets its line echoed" \
    "@$T/$name.err" "@$T/dtlscat-srv.err"
  leaf=$(sent_chain "$name" | sed -n 's/^ *0 s://p')
  if [ "$leaf" = "$want" ]; then
    ok "$when: the new s_client got the certificate \"$want\""
  else
    not_ok "$when: the new s_client got the certificate \"$want\"" "got: ${leaf:-no certificate}"
  fi
  stop "$name"
}

# kept_session WHEN: the client connected before any reload gets a new line
# echoed, on the session it has had from the start: it connected once (with
# -v, one "connected to" line) and is still running, and the server's only
# event for its address is the "connected" of the start (no closed, failed,
# expired, replaced, or second connected).
kept_session() {
  local when=$1 line events
  line=$(uniq_line "$when")
  feed_line dtlscat-cli "$line"
  ECHOED+="$line"$'\n' # all the client has been sent back, in order
  expect_output dtlscat-cli "$ECHOED" "$when: the long-lived client gets its line echoed" \
    "@$T/dtlscat-cli.err" "@$T/dtlscat-srv.err"
  # The client's address, as the server names it: its first peer.
  [ -n "$CLIENT_ADDR" ] || CLIENT_ADDR=$(awk '$2 == "connected" { print $1; exit }' "$T/dtlscat-srv.err")
  events=$(awk -v a="$CLIENT_ADDR" '$1 == a' "$T/dtlscat-srv.err")
  if running dtlscat-cli && [ "$(grep -c '^connected to ' "$T/dtlscat-cli.err")" = 1 ] &&
    [ -n "$CLIENT_ADDR" ] && [ "$events" = "$CLIENT_ADDR connected" ]; then
    ok "$when: the long-lived client's line went over its first session (it connected once; the server's only event for $CLIENT_ADDR: connected)"
  else
    not_ok "$when: the long-lived client's line went over its first session" \
      "expected: the client running, one \"connected to\" line from it, and one event, \"${CLIENT_ADDR:-ADDR} connected\", from the server" \
      "client: $(running dtlscat-cli && echo running || echo exited)" "@$T/dtlscat-cli.err" \
      "server's events for ${CLIENT_ADDR:-the client}:" "${events:-none}" "@$T/dtlscat-srv.err"
  fi
}

put_live "$T/server3-chain.pem" "$T/server3.key"
if dtlscat_server dtlscat-srv -e -c "$T/LIVE.pem" -k "$T/LIVE.key"; then
  # The long-lived client: spawn keeps its input open, so it keeps its one
  # session, whatever the wait between lines, until stopped.
  spawn dtlscat-cli "$DTLSCAT" -v -C "$T/root.pem" 127.0.0.1 "$SERVER_PORT"
  ECHOED='' CLIENT_ADDR=''
  kept_session "before any reload"
  if grep -q '^connected to .*, peer /CN=localhost$' "$T/dtlscat-cli.err"; then
    ok "before any reload: the long-lived client verified certificate A (CN=localhost)"
  else
    not_ok "before any reload: the long-lived client verified certificate A (CN=localhost)" "@$T/dtlscat-cli.err"
  fi
  new_client sc-a "$SUBJECT_A" "before any reload"

  put_live "$T/rotated-chain.pem" "$T/rotated.key"
  hup reloaded "SIGHUP after LIVE.pem/LIVE.key became certificate B: the server prints \"reloaded\""
  kept_session "after the reload"
  new_client sc-b "$SUBJECT_B" "after the reload"

  printf 'not a certificate\n' >"$T/LIVE.pem"
  hup "reload failed" "SIGHUP after LIVE.pem became garbage: the server prints \"reload failed\""
  if running dtlscat-srv; then
    ok "after the failed reload: the server is still running"
  else
    not_ok "after the failed reload: the server is still running" "@$T/dtlscat-srv.err"
  fi
  new_client sc-c "$SUBJECT_B" "after the failed reload"
  kept_session "after the failed reload"

  stop dtlscat-cli 2 # its own exit: a sanitizer build checks for leaks then
  stop dtlscat-srv
fi

finish

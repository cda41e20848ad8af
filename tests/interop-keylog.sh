#!/bin/bash
# The key log: tcpdump captures a dtlscat session on the loopback interface,
# and tshark, given the key log our client wrote with --keylog, decrypts the
# capture and finds the line the client sent; without the key log, it finds
# only encrypted records, and the capture does not hold the line in the
# clear.  One line per check; exits 1 if any failed, 77 (outside CI) if
# tcpdump, tshark or root is missing.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"

require_root "tcpdump needs root to capture"
require_prog tcpdump
require_prog tshark
il_setup
make_certs
T=$IL_TMP
KEYLOG=$T/keys.log
CAPTURE=$T/capture.pcap

# dissect NAME KEYLOG FIELD...: tshark's FIELDs (one line a packet, fields
# tab separated) of the capture, UDP port SERVER_PORT decoded as DTLS, with
# the key log KEYLOG (empty: none, whatever tshark's preferences say), to
# NAME.out; tshark's complaints to NAME.err.  Bounded: a stuck tshark fails.
dissect() {
  local name=$1 keylog=$2 fields=() f
  shift 2
  for f in "$@"; do fields+=(-e "$f"); done
  timeout 60 tshark -n -r "$CAPTURE" -o "tls.keylog_file:$keylog" -d "udp.port==$SERVER_PORT,dtls" \
    -T fields "${fields[@]}" >"$T/$name.out" 2>"$T/$name.err"
}

# nonempty FILE: the lines of FILE that are not empty, counted.
nonempty() { grep -c . "$1"; }

if dtlscat_server dtlscat-srv -e -c "$T/server.pem" -k "$T/server.key"; then
  # Each packet handed over at once (--immediate-mode: not in blocks, which
  # the kernel delivers up to a second late) and written at once (-U), so
  # that the file is complete whenever tcpdump is stopped.
  spawn tcpdump tcpdump -i lo -n --immediate-mode -U -w "$CAPTURE" udp port "$SERVER_PORT"
  if ! wait_for "$T/tcpdump.err" "listening on lo"; then
    not_ok "tcpdump captures on lo" "@$T/tcpdump.err"
    stop dtlscat-srv
    finish
  fi

  # umask 000 for the client: the key log's mode must be dtlscat's doing.
  rm -f "$KEYLOG"
  old_umask=$(umask)
  umask 000
  spawn dtlscat-cli "$DTLSCAT" -v --keylog "$KEYLOG" -C "$T/ca.pem" 127.0.0.1 "$SERVER_PORT"
  umask "$old_umask"
  LINE=$(uniq_line keylog)
  feed_line dtlscat-cli "$LINE"
  expect_output dtlscat-cli "$LINE
" "our client (--keylog) gets its line echoed by our server, tcpdump capturing" \
    "@$T/dtlscat-cli.err" "@$T/dtlscat-srv.err"
  stop dtlscat-cli 2 # its own exit, with a close_notify; and a sanitizer's leak check
  if interrupt tcpdump && grep -q '^[1-9][0-9]* packets\{0,1\} captured' "$T/tcpdump.err"; then
    ok "tcpdump stopped on SIGINT: $(grep 'captured' "$T/tcpdump.err")"
  else
    not_ok "tcpdump stops on SIGINT and has captured packets" \
      "$(running tcpdump && echo "still running after ${IL_WAIT}s" || echo "exit status $IL_STATUS")" \
      "@$T/tcpdump.err"
  fi
  stop tcpdump
  stop dtlscat-srv

  mode=$(stat -c %a "$KEYLOG" 2>/dev/null)
  if [ "$mode" = 600 ] && grep -q '^CLIENT_RANDOM [0-9a-f]\{64\} [0-9a-f]\{96\}$' "$KEYLOG"; then
    ok "the key log has mode 0600 (client run with umask 000) and a CLIENT_RANDOM line"
  else
    not_ok "the key log has mode 0600 (client run with umask 000) and a CLIENT_RANDOM line" \
      "mode: ${mode:-no file}" "@$KEYLOG"
  fi

  # The line, newline included, as tshark shows the data of a record.
  WANT=$(hex "$LINE
")
  if dissect decrypted "$KEYLOG" data.data; then
    n=$(grep -cxF -- "$WANT" "$T/decrypted.out")
    if [ "$n" = 2 ]; then
      ok "with the key log, tshark decrypts the line in both records: the client's, and the echo"
    else
      not_ok "with the key log, tshark decrypts the line in both records: the client's, and the echo" \
        "expected 2 packets with data $WANT; got $n" "@$T/decrypted.out" "@$T/decrypted.err"
    fi
  else
    not_ok "tshark reads the capture with the key log" "@$T/decrypted.err"
  fi

  if dissect encrypted "" data.data dtls.app_data; then
    records=$(cut -f 2 "$T/encrypted.out" | nonempty /dev/stdin)
    if [ "$(cut -f 1 "$T/encrypted.out" | nonempty /dev/stdin)" = 0 ] && [ "$records" -ge 2 ] &&
      ! grep -qaF -- "$LINE" "$CAPTURE"; then
      ok "without the key log, tshark finds $records DTLS application records and nothing decrypted; the line is nowhere in the capture in the clear"
    else
      not_ok "without the key log, tshark finds the application records but not the line" \
        "application records: $records (expected at least 2); decrypted data: $(cut -f 1 "$T/encrypted.out" | nonempty /dev/stdin) (expected 0)" \
        "the line in the capture file in the clear: $(grep -qaF -- "$LINE" "$CAPTURE" && echo yes || echo no)" \
        "@$T/encrypted.out"
    fi
  else
    not_ok "tshark reads the capture without the key log" "@$T/encrypted.err"
  fi
fi

finish

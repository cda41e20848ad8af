#!/bin/bash
# Interop with OpenSSL's command line peers: tools/dtlscat against
# "openssl s_client -dtls1_2" and "openssl s_server -dtls1_2 -listen", with
# certificates, PSK, client certificates, a small MTU, and certificate chains
# with an intermediate CA.  One line per check; exits 1 if any failed, 77 if
# openssl is missing.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"

il_setup
make_certs
make_pki3
T=$IL_TMP
PSK_ID=dtlsplex-interop
PSK_KEY=$(openssl rand -hex 16)

# s_client against our server at PORT, verifying it; extra options follow.
s_client() {
  local name=$1 port=$2
  shift 2
  spawn "$name" openssl s_client -dtls1_2 -connect "127.0.0.1:$port" -quiet "$@"
}
VERIFY=(-CAfile "$T/ca.pem" -verify_return_error -verify_hostname localhost)
# Trusting the root of the three-level PKI only: the intermediate must come
# in the handshake.
VERIFY3=(-CAfile "$T/root.pem" -verify_return_error -verify_hostname localhost)

# s_server NAME ARGS...: openssl s_server -listen on 127.0.0.1, a free port,
# in SERVER_PORT; false (and a failed check) if it does not come up.
s_server() {
  local name=$1
  shift
  SERVER_PORT=$(free_udp_port) || exit 99
  spawn "$name" openssl s_server -dtls1_2 -listen -accept "127.0.0.1:$SERVER_PORT" -quiet "$@"
  if ! wait_udp_bound "$SERVER_PORT"; then
    not_ok "openssl s_server $* starts" "@$T/$name.err"
    return 1
  fi
}

# datagram_sizes NAME read|write: the sizes of the datagrams NAME's -debug
# output says it read or wrote, space separated.
datagram_sizes() {
  sed -n "s/^$2 \(from\|to\) .* bytes => \([0-9][0-9]*\) (0x[0-9A-Fa-f]*))\$/\2/p" "$T/$1.out" |
    tr '\n' ' ' | sed 's/ $//'
}

# all_at_most LIMIT SIZES: true if SIZES is not empty and none exceeds LIMIT.
all_at_most() {
  local limit=$1 n seen=0
  for n in $2; do
    [ "$n" -le "$limit" ] || return 1
    seen=1
  done
  [ "$seen" = 1 ]
}

# s_server_exchange SERVER CLIENT WHAT: a line from our client CLIENT must
# show on s_server SERVER's stdout, then a line typed into SERVER on CLIENT's
# stdout; two checks, their descriptions starting with WHAT.
s_server_exchange() {
  local srv=$1 cli=$2 what=$3 up down
  up=$(uniq_line "$cli-to-s_server")
  down=$(uniq_line "s_server-to-$cli")
  feed_line "$cli" "$up"
  if expect_output "$srv" "$up
" "$what: our client's line shows on s_server's stdout" "@$T/$cli.err" "@$T/$srv.err"; then
    feed_line "$srv" "$down"
    expect_output "$cli" "$down
" "$what: s_server's line shows on our client's stdout" "@$T/$cli.err" "@$T/$srv.err"
  else
    not_ok "$what: s_server's line shows on our client's stdout" "(not tried: no session)"
  fi
}

CHAIN_DER=$(der_size "$T/chain.pem")

# all_echoed: true once each sc1-N.out holds at least its line (for poll).
# shellcheck disable=SC2317
all_echoed() {
  local i
  for i in 1 2 3; do
    [ "$(wc -c <"$T/sc1-$i.out")" -gt "${#LINE1[$i]}" ] || return 1
  done
}

# ---- 1. our server, three verifying s_clients at once -----------------------
if dtlscat_server dtlscat-srv1 -e -c "$T/server.pem" -k "$T/server.key"; then
  for i in 1 2 3; do
    s_client "sc1-$i" "$SERVER_PORT" "${VERIFY[@]}"
  done
  declare -A LINE1=()
  for i in 1 2 3; do
    LINE1[$i]=$(uniq_line "s_client-$i")
    feed_line "sc1-$i" "${LINE1[$i]}"
  done
  # One bounded wait for the three, then each is checked.
  poll "$IL_WAIT" all_echoed
  for i in 1 2 3; do
    IL_WAIT=1 expect_output "sc1-$i" "${LINE1[$i]}
" "s_client $i of 3 at once verifies our server (CA, hostname localhost) and gets its line echoed" \
      "@$T/sc1-$i.err" "@$T/dtlscat-srv1.err"
  done
  for i in 1 2 3; do stop "sc1-$i"; done
  stop dtlscat-srv1
fi

# ---- 2. our client, openssl s_server ---------------------------------------
if s_server ssrv2 -cert "$T/server.pem" -key "$T/server.key"; then
  spawn dtlscat-cli2 "$DTLSCAT" -v -4 -C "$T/ca.pem" localhost "$SERVER_PORT"
  up=$(uniq_line "dtlscat-to-s_server")
  down=$(uniq_line "s_server-to-dtlscat")
  feed_line dtlscat-cli2 "$up"
  if expect_output ssrv2 "$up
" "our client verifies s_server (CA, hostname localhost); our line shows on s_server's stdout" \
    "@$T/dtlscat-cli2.err" "@$T/ssrv2.err"; then
    feed_line ssrv2 "$down"
    expect_output dtlscat-cli2 "$down
" "a line typed into s_server shows on our client's stdout" "@$T/dtlscat-cli2.err" "@$T/ssrv2.err"
  else
    not_ok "a line typed into s_server shows on our client's stdout" "(not tried: no session)"
  fi
  stop dtlscat-cli2 2 # its own exit: a sanitizer build checks for leaks then
  stop ssrv2
fi

# ---- 3. PSK, both directions -------------------------------------------------
if dtlscat_server dtlscat-srv3 -e --psk "$PSK_ID:$PSK_KEY"; then
  s_client sc3 "$SERVER_PORT" -psk "$PSK_KEY" -psk_identity "$PSK_ID" -cipher PSK-AES128-GCM-SHA256
  line=$(uniq_line "psk-s_client")
  feed_line sc3 "$line"
  expect_output sc3 "$line
" "PSK: s_client (PSK-AES128-GCM-SHA256) gets its line echoed by our PSK-only server" \
    "@$T/sc3.err" "@$T/dtlscat-srv3.err"
  stop sc3
  stop dtlscat-srv3
fi

if s_server ssrv3 -nocert -psk "$PSK_KEY" -psk_identity "$PSK_ID" -cipher ECDHE-PSK-CHACHA20-POLY1305; then
  spawn dtlscat-cli3 "$DTLSCAT" -v --psk "$PSK_ID:$PSK_KEY" 127.0.0.1 "$SERVER_PORT"
  up=$(uniq_line "psk-dtlscat-to-s_server")
  down=$(uniq_line "psk-s_server-to-dtlscat")
  feed_line dtlscat-cli3 "$up"
  if expect_output ssrv3 "$up
" "PSK: our client's line shows on s_server's stdout (ECDHE-PSK-CHACHA20-POLY1305)" \
    "@$T/dtlscat-cli3.err" "@$T/ssrv3.err"; then
    feed_line ssrv3 "$down"
    expect_output dtlscat-cli3 "$down
" "PSK: s_server's line shows on our client's stdout" "@$T/dtlscat-cli3.err" "@$T/ssrv3.err"
  fi
  if grep -q "connected to .*ECDHE-PSK-CHACHA20-POLY1305, peer $PSK_ID\$" "$T/dtlscat-cli3.err"; then
    ok "PSK: our client reports the suite s_server insisted on (ECDHE-PSK-CHACHA20-POLY1305) and identity $PSK_ID"
  else
    not_ok "PSK: our client reports the suite s_server insisted on (ECDHE-PSK-CHACHA20-POLY1305) and identity $PSK_ID" \
      "@$T/dtlscat-cli3.err"
  fi
  stop dtlscat-cli3 2 # its own exit: a sanitizer build checks for leaks then
  stop ssrv3
fi

# ---- 4. mutual authentication ----------------------------------------------
if dtlscat_server dtlscat-srv4 -e --verify -C "$T/ca.pem" -c "$T/server.pem" -k "$T/server.key"; then
  s_client sc4a "$SERVER_PORT" "${VERIFY[@]}" -cert "$T/client.pem" -key "$T/client.key"
  line=$(uniq_line "mutual-with-cert")
  feed_line sc4a "$line"
  expect_output sc4a "$line
" "mutual auth: s_client with a client certificate gets its line echoed by our --verify server" \
    "@$T/sc4a.err" "@$T/dtlscat-srv4.err"
  stop sc4a

  s_client sc4b "$SERVER_PORT" "${VERIFY[@]}"
  line=$(uniq_line "mutual-without-cert")
  feed_line sc4b "$line"
  if wait_exit sc4b && [ "$IL_STATUS" != 0 ] && ! grep -qF -- "$line" "$T/sc4b.out"; then
    alert=$(grep -o 'alert [a-z ]*' "$T/sc4b.err" | head -n 1)
    ok "mutual auth: s_client without a client certificate is refused (s_client exit $IL_STATUS, ${alert:-no alert}, nothing echoed)"
  else
    not_ok "mutual auth: s_client without a client certificate is refused" \
      "expected: s_client exits non-zero, nothing echoed" \
      "got: $(running sc4b && echo "s_client still running after ${IL_WAIT}s" || echo "s_client exit $IL_STATUS")" \
      "@$T/sc4b.out" "@$T/sc4b.err" "@$T/dtlscat-srv4.err"
  fi
  stop sc4b

  s_client sc4c "$SERVER_PORT" "${VERIFY[@]}" -cert "$T/client.pem" -key "$T/client.key"
  line=$(uniq_line "mutual-after-refusal")
  feed_line sc4c "$line"
  if running dtlscat-srv4; then
    expect_output sc4c "$line
" "mutual auth: our server stays up after the refusal and serves the next client" \
      "@$T/sc4c.err" "@$T/dtlscat-srv4.err"
  else
    not_ok "mutual auth: our server stays up after the refusal" "@$T/dtlscat-srv4.err"
  fi
  stop sc4c
  stop dtlscat-srv4
fi

# ---- 5. small MTU: the certificate flight goes in fragments ------------------
# chain.pem (server + CA certificates, CHAIN_DER bytes of DER) cannot fit in
# one 500-byte datagram, so the Certificate message must be fragmented.
if dtlscat_server dtlscat-srv5 -e --mtu 500 -c "$T/chain.pem" -k "$T/server.key"; then
  s_client sc5 "$SERVER_PORT" "${VERIFY[@]}" -mtu 500 -debug
  line=$(uniq_line "small-mtu-s_client")
  feed_line sc5 "$line"
  expect_line sc5 "$line" "small MTU: s_client -mtu 500 gets its line echoed by our --mtu 500 server (chain of $CHAIN_DER bytes)" \
    "@$T/sc5.err" "@$T/dtlscat-srv5.err"
  sizes=$(datagram_sizes sc5 read)
  if [ "$CHAIN_DER" -gt 500 ] && [ "$(echo "$sizes" | wc -w)" -ge 3 ] && all_at_most 500 "$sizes"; then
    ok "small MTU: our server sent its certificate flight in fragments, no datagram over 500 bytes ($sizes)"
  else
    not_ok "small MTU: our server sent its certificate flight in fragments, no datagram over 500 bytes" \
      "chain: $CHAIN_DER bytes of DER; expected at least 3 datagrams, none over 500 bytes" \
      "datagrams s_client read: ${sizes:-none}"
  fi
  stop sc5
  stop dtlscat-srv5
fi

if s_server ssrv5 -mtu 500 -debug -cert "$T/server.pem" -cert_chain "$T/ca.pem" -key "$T/server.key"; then
  spawn dtlscat-cli5 "$DTLSCAT" -v --mtu 500 -C "$T/ca.pem" 127.0.0.1 "$SERVER_PORT"
  up=$(uniq_line "small-mtu-dtlscat-to-s_server")
  down=$(uniq_line "small-mtu-s_server-to-dtlscat")
  feed_line dtlscat-cli5 "$up"
  if expect_line ssrv5 "$up" "small MTU: our --mtu 500 client's line shows on s_server -mtu 500's stdout" \
    "@$T/dtlscat-cli5.err" "@$T/ssrv5.err"; then
    feed_line ssrv5 "$down"
    expect_output dtlscat-cli5 "$down
" "small MTU: s_server's line shows on our client's stdout" "@$T/dtlscat-cli5.err" "@$T/ssrv5.err"
  fi
  wrote=$(datagram_sizes ssrv5 write)
  read=$(datagram_sizes ssrv5 read)
  if [ "$(echo "$wrote" | wc -w)" -ge 3 ] && all_at_most 500 "$wrote" && grep -qxF -- "$up" "$T/ssrv5.out"; then
    ok "small MTU: our client took s_server's certificate flight in fragments ($wrote)"
  else
    not_ok "small MTU: our client took s_server's certificate flight in fragments" \
      "expected: a session after at least 3 datagrams from s_server, none over 500 bytes" \
      "s_server wrote: ${wrote:-none}"
  fi
  if all_at_most 500 "$read"; then
    ok "small MTU: no datagram from our client over 500 bytes ($read)"
  else
    not_ok "small MTU: no datagram from our client over 500 bytes" "s_server read: ${read:-none}"
  fi
  stop dtlscat-cli5 2 # its own exit: a sanitizer build checks for leaks then
  stop ssrv5
fi

# ---- 6. certificate chains: leaf, then an intermediate CA --------------------
# As with any public CA: the peers trust root.pem alone, so each side must
# send the intermediate (inter.pem) after its leaf, or the other cannot
# verify it.  Our side gets the chain from its certificate file
# (server3-chain.pem, client3-chain.pem: leaf, then intermediate).
INTER_SUBJECT="CN = dtlsplex interop test intermediate CA"

if dtlscat_server dtlscat-srv6 -e -c "$T/server3-chain.pem" -k "$T/server3.key"; then
  # Not -quiet: -showcerts lists the chain as received, and the verdict.
  spawn sc6 openssl s_client -dtls1_2 -connect "127.0.0.1:$SERVER_PORT" -servername localhost \
    -showcerts "${VERIFY3[@]}"
  line=$(uniq_line "chain-s_client")
  feed_line sc6 "$line"
  expect_line sc6 "$line" "chain: s_client trusting the root alone verifies our server (-c server3-chain.pem) and gets its line echoed" \
    "@$T/sc6.err" "@$T/dtlscat-srv6.err"
  if grep -qxF 'Verification: OK' "$T/sc6.out" && grep -qF 'Verify return code: 0 (ok)' "$T/sc6.out" &&
    grep -q '^New, TLSv1.2, Cipher is [A-Z]' "$T/sc6.out"; then
    ok "chain: s_client completed the handshake and verified our server's chain (Verify return code: 0)"
  else
    not_ok "chain: s_client completed the handshake and verified our server's chain (Verify return code: 0)" \
      "expected on s_client's stdout: Verification: OK, Verify return code: 0 (ok), a cipher" \
      "$(grep -E '^(Verification|New,)|Verify return code' "$T/sc6.out")" "@$T/sc6.err"
  fi
  chain=$(sent_chain sc6)
  if [ "$(printf '%s\n' "$chain" | grep -c .)" = 2 ] && printf '%s\n' "$chain" | grep -qxF " 1 s:$INTER_SUBJECT"; then
    ok "chain: our server sent 2 certificates, leaf then intermediate ($(printf '%s\n' "$chain" | sed 's/^ *//' | paste -sd ';' | sed 's/;/; /g'))"
  else
    not_ok "chain: our server sent 2 certificates, leaf then intermediate" \
      "expected in s_client -showcerts: \" 0 s:CN = localhost\" and \" 1 s:$INTER_SUBJECT\"" \
      "got: ${chain:-no certificate chain}"
  fi
  stop sc6
  stop dtlscat-srv6
fi

if s_server ssrv6 -cert "$T/server3.pem" -cert_chain "$T/inter.pem" -key "$T/server3.key"; then
  spawn dtlscat-cli6 "$DTLSCAT" -v -4 -C "$T/root.pem" localhost "$SERVER_PORT"
  s_server_exchange ssrv6 dtlscat-cli6 "chain: our client trusting the root alone verifies s_server -cert_chain inter.pem"
  stop dtlscat-cli6 2 # its own exit: a sanitizer build checks for leaks then
  stop ssrv6
fi

# Mutual authentication, a chain each way.
if dtlscat_server dtlscat-srv7 -e --verify -C "$T/root.pem" -c "$T/server3-chain.pem" -k "$T/server3.key"; then
  s_client sc7 "$SERVER_PORT" "${VERIFY3[@]}" -cert "$T/client3.pem" -cert_chain "$T/inter.pem" -key "$T/client3.key"
  line=$(uniq_line "chain-mutual-s_client")
  feed_line sc7 "$line"
  expect_output sc7 "$line
" "chain, mutual auth: s_client with -cert_chain inter.pem and our --verify -C root.pem server (-c server3-chain.pem) verify each other; line echoed" \
    "@$T/sc7.err" "@$T/dtlscat-srv7.err"
  stop sc7
  stop dtlscat-srv7
fi

if s_server ssrv7 -cert "$T/server3.pem" -cert_chain "$T/inter.pem" -key "$T/server3.key" \
  -Verify 1 -verify_return_error -CAfile "$T/root.pem"; then
  spawn dtlscat-cli7 "$DTLSCAT" -v -4 -C "$T/root.pem" -c "$T/client3-chain.pem" -k "$T/client3.key" localhost "$SERVER_PORT"
  s_server_exchange ssrv7 dtlscat-cli7 "chain, mutual auth: s_server -Verify 1 trusting the root alone verifies our client (-c client3-chain.pem)"
  stop dtlscat-cli7 2 # its own exit: a sanitizer build checks for leaks then
  stop ssrv7
fi

# ---- 7. many records: past the takeover from libssl's record layer ---------
# After 16 application records a session's AEAD records are sealed and
# opened by lib/records.c, not libssl: 40 lines from s_client, one datagram
# each, echoed by our server on each suite it takes; and our client's 40
# lines to s_server, whose 40 come back.
# feed_lines NAME PREFIX COUNT: COUNT lines, one write (one datagram) each.
feed_lines() {
  local i
  for ((i = 1; i <= $3; i++)); do
    feed_line "$1" "$2 $i"
    sleep 0.02
  done
}
expected_lines() {
  local i
  for ((i = 1; i <= $2; i++)); do printf '%s %s\n' "$1" "$i"; done
}
for suite in ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305; do
  if dtlscat_server dtlscat-srv7 -e -c "$T/server.pem" -k "$T/server.key"; then
    s_client sc7 "$SERVER_PORT" "${VERIFY[@]}" -cipher "$suite"
    prefix=$(uniq_line "sc7-$suite")
    feed_lines sc7 "$prefix" 40
    expect_output sc7 "$(expected_lines "$prefix" 40)
" "$suite: s_client's 40 lines are echoed by our server, past its takeover of the records" \
      "@$T/sc7.err" "@$T/dtlscat-srv7.err"
    stop sc7
    stop dtlscat-srv7
  fi
done
if s_server ssrv7 -cert "$T/server.pem" -key "$T/server.key"; then
  spawn dtlscat-cli7 "$DTLSCAT" -v -4 -C "$T/ca.pem" localhost "$SERVER_PORT"
  up=$(uniq_line "dtlscat-to-s_server-40")
  down=$(uniq_line "s_server-to-dtlscat-40")
  feed_lines dtlscat-cli7 "$up" 40
  if expect_output ssrv7 "$(expected_lines "$up" 40)
" "our client's 40 lines show on s_server's stdout" "@$T/dtlscat-cli7.err" "@$T/ssrv7.err"; then
    feed_lines ssrv7 "$down" 40
    expect_output dtlscat-cli7 "$(expected_lines "$down" 40)
" "s_server's 40 lines show on our client's stdout" "@$T/dtlscat-cli7.err" "@$T/ssrv7.err"
  else
    not_ok "s_server's 40 lines show on our client's stdout" "(not tried: no session)"
  fi
  stop dtlscat-cli7 2
  stop ssrv7
fi

finish

#!/bin/bash
# Interop with GnuTLS's command line peers: tools/dtlscat against
# "gnutls-cli --udp" and "gnutls-serv --udp --echo", with certificates, PSK,
# a client certificate, a small MTU, and certificate chains with an
# intermediate CA.  One line per check; exits 1 if any failed, 77 if
# gnutls-bin (or openssl, for the certificates) is missing.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"

require_prog gnutls-cli
require_prog gnutls-serv
il_setup
make_certs
make_pki3
T=$IL_TMP
PSK_ID=dtlsplex-interop
PSK_KEY=$(openssl rand -hex 16)
printf '%s:%s\n' "$PSK_ID" "$PSK_KEY" >"$T/psk.passwd"
DTLS12=NORMAL:-VERS-ALL:+VERS-DTLS1.2
# gnutls-cli takes plain PSK only: as a client with an ECDHE-PSK suite,
# gnutls-cli 3.7.9 crashes printing the session (it calls
# gnutls_psk_server_get_username on its client session), whoever the server.
CLI_PSK_PRIORITY=$DTLS12:-KX-ALL:+PSK
SERV_PSK_PRIORITY=$DTLS12:+ECDHE-PSK:+PSK

# gnutls_cli NAME PORT ARGS...: gnutls-cli to 127.0.0.1 PORT; its chatter to
# NAME.log (written when it exits: stop it with a grace period), data to
# NAME.out.
gnutls_cli() {
  local name=$1 port=$2
  shift 2
  spawn "$name" gnutls-cli --udp --logfile "$T/$name.log" -p "$port" "$@" 127.0.0.1
}
VERIFY=(--x509cafile "$T/ca.pem" --verify-hostname localhost)
# Trusting the root of the three-level PKI only: the intermediate must come
# in the handshake.
VERIFY3=(--x509cafile "$T/root.pem" --verify-hostname localhost)

# gnutls_serv NAME ARGS...: gnutls-serv --udp --echo on a free port, in
# SERVER_PORT; false (and a failed check) if it does not come up.  It has no
# option to choose its address: it binds the wildcard, and only our client
# on 127.0.0.1 talks to it.
gnutls_serv() {
  local name=$1
  shift
  SERVER_PORT=$(free_udp_port) || exit 99
  spawn "$name" gnutls-serv --udp --echo -p "$SERVER_PORT" "$@"
  if ! wait_for "$T/$name.err" "listening on IPv4" || ! wait_udp_bound "$SERVER_PORT"; then
    not_ok "gnutls-serv $* starts" "@$T/$name.out" "@$T/$name.err"
    return 1
  fi
}

# round_trip CLIENT DESCRIPTION [EVIDENCE...]: a line into CLIENT's stdin
# must come back on its stdout, byte for byte.
round_trip() {
  local name=$1 desc=$2 line
  shift 2
  line=$(uniq_line "$name")
  feed_line "$name" "$line"
  if expect_output "$name" "$line
" "$desc" "$@"; then
    return 0
  fi
  case $name in
  gc*) # gnutls-cli writes its log on exit: let it, then show it.
    stop "$name" 3
    il_show_file "$T/$name.log"
    ;;
  esac
  return 1
}

# fragments FILE MESSAGE: how many fragments of handshake MESSAGE a -d 4/6
# GnuTLS debug log shows received, then sent.
fragments_received() { grep -c "HSK.*: $2 ([0-9]*) was received\. .*frag offset" "$1"; }
fragments_sent() { grep -c "DTLS.*: Sending Packet\[[0-9]*\] fragment $2([0-9]*) with length" "$1"; }

# ---- our server, gnutls-cli ------------------------------------------------
if dtlscat_server dtlscat-srv1 -e -c "$T/server.pem" -k "$T/server.key"; then
  gnutls_cli gc1 "$SERVER_PORT" "${VERIFY[@]}" --priority "$DTLS12"
  round_trip gc1 "gnutls-cli verifies our server (CA, hostname localhost) and gets its line echoed" \
    "@$T/gc1.err" "@$T/dtlscat-srv1.err"
  stop gc1 3
  if grep -q 'The certificate is trusted' "$T/gc1.log"; then
    ok "gnutls-cli reports our server's certificate trusted"
  else
    not_ok "gnutls-cli reports our server's certificate trusted" "@$T/gc1.log" "@$T/gc1.err"
  fi
  stop dtlscat-srv1
fi

if dtlscat_server dtlscat-srv2 -e --psk "$PSK_ID:$PSK_KEY"; then
  gnutls_cli gc2 "$SERVER_PORT" --pskusername "$PSK_ID" --pskkey "$PSK_KEY" --priority "$CLI_PSK_PRIORITY"
  round_trip gc2 "PSK: gnutls-cli gets its line echoed by our PSK-only server" \
    "@$T/gc2.err" "@$T/dtlscat-srv2.err"
  stop gc2
  stop dtlscat-srv2
fi

# ---- our client, gnutls-serv --echo -----------------------------------------
if gnutls_serv gs3 --x509certfile "$T/server.pem" --x509keyfile "$T/server.key" --priority "$DTLS12"; then
  spawn dtlscat-cli3 "$DTLSCAT" -v -4 -C "$T/ca.pem" localhost "$SERVER_PORT"
  round_trip dtlscat-cli3 "our client verifies gnutls-serv (CA, hostname localhost) and gets its line echoed" \
    "@$T/dtlscat-cli3.err" "@$T/gs3.err"
  stop dtlscat-cli3 2 # its own exit: a sanitizer build checks for leaks then
  stop gs3
fi

if gnutls_serv gs4 --pskpasswd "$T/psk.passwd" --priority "$SERV_PSK_PRIORITY"; then
  spawn dtlscat-cli4 "$DTLSCAT" -v --psk "$PSK_ID:$PSK_KEY" 127.0.0.1 "$SERVER_PORT"
  round_trip dtlscat-cli4 "PSK: our client gets its line echoed by gnutls-serv" \
    "@$T/dtlscat-cli4.err" "@$T/gs4.err"
  if grep -q "connected to .*PSK.*, peer $PSK_ID\$" "$T/dtlscat-cli4.err"; then
    ok "PSK: our client reports a PSK suite and identity $PSK_ID"
  else
    not_ok "PSK: our client reports a PSK suite and identity $PSK_ID" "@$T/dtlscat-cli4.err"
  fi
  stop dtlscat-cli4 2 # its own exit: a sanitizer build checks for leaks then
  stop gs4
fi

# ---- mutual authentication -------------------------------------------------
if dtlscat_server dtlscat-srv5 -e --verify -C "$T/ca.pem" -c "$T/server.pem" -k "$T/server.key"; then
  gnutls_cli gc5a "$SERVER_PORT" "${VERIFY[@]}" --x509certfile "$T/client.pem" --x509keyfile "$T/client.key"
  round_trip gc5a "mutual auth: gnutls-cli with a client certificate gets its line echoed by our --verify server" \
    "@$T/gc5a.err" "@$T/dtlscat-srv5.err"
  stop gc5a

  gnutls_cli gc5b "$SERVER_PORT" "${VERIFY[@]}"
  line=$(uniq_line gc5b)
  feed_line gc5b "$line"
  if wait_exit gc5b && [ "$IL_STATUS" != 0 ] && ! grep -qF -- "$line" "$T/gc5b.out"; then
    ok "mutual auth: gnutls-cli without a client certificate is refused (gnutls-cli exit $IL_STATUS, nothing echoed)"
  else
    not_ok "mutual auth: gnutls-cli without a client certificate is refused" \
      "expected: gnutls-cli exits non-zero, nothing echoed" \
      "got: $(running gc5b && echo "gnutls-cli still running after ${IL_WAIT}s" || echo "gnutls-cli exit $IL_STATUS")" \
      "@$T/gc5b.out" "@$T/gc5b.err" "@$T/gc5b.log" "@$T/dtlscat-srv5.err"
  fi
  stop gc5b
  if running dtlscat-srv5; then
    ok "mutual auth: our server stays up after the refusal"
  else
    not_ok "mutual auth: our server stays up after the refusal" "@$T/dtlscat-srv5.err"
  fi
  stop dtlscat-srv5
fi

# ---- small MTU: the certificate flight goes in fragments ------------------
# chain.pem (server + CA certificates) cannot fit in one 500-byte datagram.
CHAIN_DER=$(der_size "$T/chain.pem")
if dtlscat_server dtlscat-srv6 -e --mtu 500 -c "$T/chain.pem" -k "$T/server.key"; then
  gnutls_cli gc6 "$SERVER_PORT" "${VERIFY[@]}" --mtu 500 -d 4
  round_trip gc6 "small MTU: gnutls-cli --mtu 500 gets its line echoed by our --mtu 500 server (chain of $CHAIN_DER bytes)" \
    "@$T/dtlscat-srv6.err"
  n=$(fragments_received "$T/gc6.err" CERTIFICATE)
  if [ "$CHAIN_DER" -gt 500 ] && [ "$n" -ge 2 ] && grep -q 'FINISHED (20) was received' "$T/gc6.err"; then
    ok "small MTU: our server sent its Certificate in $n fragments, and gnutls-cli completed the handshake"
  else
    not_ok "small MTU: our server sent its Certificate in fragments, and gnutls-cli completed the handshake" \
      "chain: $CHAIN_DER bytes of DER; fragments gnutls-cli received: $n" \
      "$(grep -E '(CERTIFICATE|FINISHED) \([0-9]+\) was received' "$T/gc6.err")"
  fi
  stop gc6
  stop dtlscat-srv6
fi

if gnutls_serv gs7 --mtu 500 -d 6 --x509certfile "$T/chain.pem" --x509keyfile "$T/server.key"; then
  spawn dtlscat-cli7 "$DTLSCAT" -v --mtu 500 -C "$T/ca.pem" 127.0.0.1 "$SERVER_PORT"
  if round_trip dtlscat-cli7 "small MTU: our --mtu 500 client gets its line echoed by gnutls-serv --mtu 500" \
    "@$T/dtlscat-cli7.err" "@$T/gs7.err"; then
    n=$(fragments_sent "$T/gs7.err" CERTIFICATE)
    if [ "$n" -ge 2 ]; then
      ok "small MTU: our client took gnutls-serv's Certificate in $n fragments"
    else
      not_ok "small MTU: our client took gnutls-serv's Certificate in fragments" \
        "fragments gnutls-serv sent: $n" "@$T/gs7.err"
    fi
  fi
  stop dtlscat-cli7 2 # its own exit: a sanitizer build checks for leaks then
  stop gs7
fi

# ---- certificate chains: leaf, then an intermediate CA --------------------
# gnutls-cli trusts root.pem alone: it verifies our server only if our server
# sends the intermediate after its leaf, as server3-chain.pem holds them.

# log_says CLIENT TEXT DESCRIPTION: gnutls-cli CLIENT's log (complete once it
# has exited) has TEXT.
log_says() {
  if grep -qF -- "$2" "$T/$1.log"; then
    ok "$3"
  else
    not_ok "$3" "expected in $1's log: $(show "$2")" \
      "got: $(grep -E 'certificate list|Status:|\*\*\*' "$T/$1.log" "$T/$1.err" | sed 's/^[^:]*://')"
  fi
}

if dtlscat_server dtlscat-srv8 -e -c "$T/server3-chain.pem" -k "$T/server3.key"; then
  gnutls_cli gc8 "$SERVER_PORT" "${VERIFY3[@]}" --priority "$DTLS12"
  round_trip gc8 "chain: gnutls-cli trusting the root alone verifies our server (-c server3-chain.pem) and gets its line echoed" \
    "@$T/gc8.err" "@$T/dtlscat-srv8.err"
  stop gc8 3
  log_says gc8 "Got a certificate list of 2 certificates." "chain: our server sent gnutls-cli 2 certificates, leaf and intermediate"
  log_says gc8 "The certificate is trusted" "chain: gnutls-cli reports our server's chain trusted"
  stop dtlscat-srv8
fi

# Mutual authentication, a chain each way: gnutls-cli reads its chain from
# one file too.
if dtlscat_server dtlscat-srv9 -e --verify -C "$T/root.pem" -c "$T/server3-chain.pem" -k "$T/server3.key"; then
  gnutls_cli gc9 "$SERVER_PORT" "${VERIFY3[@]}" --priority "$DTLS12" \
    --x509certfile "$T/client3-chain.pem" --x509keyfile "$T/client3.key"
  round_trip gc9 "chain, mutual auth: gnutls-cli (client3-chain.pem) and our --verify -C root.pem server (-c server3-chain.pem) verify each other; line echoed" \
    "@$T/gc9.err" "@$T/dtlscat-srv9.err"
  stop gc9 3
  stop dtlscat-srv9
fi

finish

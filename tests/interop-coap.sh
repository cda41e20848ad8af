#!/bin/bash
# Interop with a real CoAP stack: libcoap's coap-client (Debian's
# libcoap3-bin: coap-client-gnutls and coap-client-openssl) against a
# dtlscat echo server offering only the cipher suites RFC 7252 makes
# mandatory for CoAP over DTLS: TLS_PSK_WITH_AES_128_CCM_8 (with a PSK) and
# TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (with an ECDSA certificate).
#
# The echo server sends coap-client's request back to it, and coap-client
# takes its own echoed GET for a request to it ("request for unknown
# resource"): proof that the request went through the DTLS session both
# ways.  The suite: our server accepts that one suite only (checked with our
# own client offering another one), and coap-client-gnutls's debug log
# names the suite selected.  One line per check; exits 1 if any failed, 77
# (outside CI) if coap-client-gnutls or coap-client-openssl is missing.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"

BACKENDS="gnutls openssl"
for b in $BACKENDS; do require_prog "coap-client-$b"; done
il_setup
make_pki3
make_certs # only for ca.pem: a CA that did not sign our server's certificate
T=$IL_TMP
PSK_ID=coap-device
# coap-client's -k takes the key's bytes as text: printable ones, then.
PSK_KEY=$(openssl rand -hex 8)
PSK_HEX=$(hex "$PSK_KEY")

# coap_get NAME BACKEND ARGS...: coap-client-BACKEND sends one GET to
# coaps://127.0.0.1:SERVER_PORT/x, with ARGS, its log (-v 9: GnuTLS's
# handshake messages too) in NAME.out and NAME.err; bounded by -B and
# timeout(1), for it may wait for a response that never comes.  Its exit
# status in COAP_STATUS.
coap_get() {
  local name=$1 backend=$2
  shift 2
  timeout 20 "coap-client-$backend" -v 9 -B 5 "$@" "coaps://127.0.0.1:$SERVER_PORT/x" \
    </dev/null >"$T/$name.out" 2>"$T/$name.err"
  COAP_STATUS=$?
}

# coap_log_has NAME TEXT: coap-client NAME's log has TEXT.
coap_log_has() { cat "$T/$1.out" "$T/$1.err" | grep -qF -- "$2"; }

# coap_session NAME BACKEND WHAT GNUTLS_SUITE ARGS...: coap-client-BACKEND,
# with ARGS, against the dtlscat server dtlscat-NAME (started for it): the
# handshake completes, our server echoes the CoAP request back to it, and
# (GnuTLS) its log names GNUTLS_SUITE as the suite selected.
coap_session() {
  local name=$1 backend=$2 what=$3 suite=$4 desc
  shift 4
  coap_get "$name" "$backend" "$@"
  desc="$what: coap-client-$backend completes the DTLS handshake with our server (-v: connected)"
  if wait_for "$T/dtlscat-$name.err" " connected" 2; then
    ok "$desc"
  else
    not_ok "$desc" "coap-client exit $COAP_STATUS" "@$T/dtlscat-$name.err" "@$T/$name.out" "@$T/$name.err"
  fi
  desc="$what: coap-client-$backend's request went through our echo server and came back to it"
  if coap_log_has "$name" "request for unknown resource 'x'"; then
    ok "$desc"
  else
    not_ok "$desc" "expected in coap-client's log: request for unknown resource 'x' (its echoed GET /x)" \
      "$(grep -hE 'DTLS: (session|sent|received)|v:1 ' "$T/$name.out" "$T/$name.err" | tail -n 12)"
  fi
  [ "$backend" = gnutls ] || return 0
  desc="$what: coap-client-gnutls reports the suite selected: $suite"
  if coap_log_has "$name" "Selected cipher suite: $suite"; then
    ok "$desc"
  else
    not_ok "$desc" "got: $(grep -h 'Selected cipher suite' "$T/$name.out" "$T/$name.err")"
  fi
}

# only_suite NAME WHAT OTHER ARGS...: the server dtlscat-NAME refuses our
# client offering another suite, OTHER, with ARGS: CCM8 was not chosen over
# a better suite, it was the only one.
only_suite() {
  local name=$1 what=$2 other=$3 status
  shift 3
  timeout 20 "$DTLSCAT" -v --ciphers "$other" "$@" 127.0.0.1 "$SERVER_PORT" </dev/null \
    >"$T/dtlscat-$name-other.out" 2>"$T/dtlscat-$name-other.err"
  status=$?
  if [ "$status" = 1 ] && grep -q 'handshake .* failed: Connection refused$' "$T/dtlscat-$name-other.err"; then
    ok "$what: our server refuses a client offering $other only (it takes CCM8 only)"
  else
    not_ok "$what: our server refuses a client offering $other only" "our client's exit: $status" \
      "@$T/dtlscat-$name-other.err" "@$T/dtlscat-$name.err"
  fi
}

# ---- PSK: TLS_PSK_WITH_AES_128_CCM_8 -----------------------------------------
for b in $BACKENDS; do
  if dtlscat_server "dtlscat-psk-$b" -e --psk "$PSK_ID:$PSK_HEX" --ciphers PSK-AES128-CCM8; then
    coap_session "psk-$b" "$b" "PSK" GNUTLS_PSK_AES_128_CCM_8 -u "$PSK_ID" -k "$PSK_KEY"
    only_suite "psk-$b" PSK PSK-AES128-GCM-SHA256 --psk "$PSK_ID:$PSK_HEX"
    stop "dtlscat-psk-$b"
  fi
done

# The wrong key: our server answered (a HelloVerifyRequest), but no session,
# no echo; or the checks above would prove nothing.
if dtlscat_server dtlscat-psk-wrong -e --psk "$PSK_ID:$PSK_HEX" --ciphers PSK-AES128-CCM8; then
  coap_get psk-wrong gnutls -u "$PSK_ID" -k "x${PSK_KEY#?}"
  if coap_log_has psk-wrong "HELLO VERIFY REQUEST (3) was received" && ! grep -q ' connected$' "$T/dtlscat-psk-wrong.err" &&
    ! coap_log_has psk-wrong "request for unknown resource"; then
    ok "PSK: coap-client-gnutls with a wrong key reaches our server but gets no session and no echo"
  else
    not_ok "PSK: coap-client-gnutls with a wrong key reaches our server but gets no session and no echo" \
      "@$T/dtlscat-psk-wrong.err" "$(grep -hE 'HSK.*was received|unknown resource' "$T/psk-wrong.out" "$T/psk-wrong.err")"
  fi
  stop dtlscat-psk-wrong
fi

# ---- certificates: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 ------------------------
# server3-chain.pem: an ECDSA P-256 leaf and its intermediate; coap-client
# trusts root.pem alone (-R).
CERT=(-c "$T/server3-chain.pem" -k "$T/server3.key")
for b in $BACKENDS; do
  if dtlscat_server "dtlscat-cert-$b" -e "${CERT[@]}" --ciphers ECDHE-ECDSA-AES128-CCM8; then
    coap_session "cert-$b" "$b" "ECDSA certificate" GNUTLS_ECDHE_ECDSA_AES_128_CCM_8 -R "$T/root.pem"
    only_suite "cert-$b" "ECDSA certificate" ECDHE-ECDSA-AES128-GCM-SHA256 -C "$T/root.pem"
    stop "dtlscat-cert-$b"
  fi

  # Trusting another CA, coap-client must refuse our server (with an alert:
  # our server reports the handshake failed): it does verify.
  if dtlscat_server "dtlscat-cert-$b-untrusted" -e "${CERT[@]}" --ciphers ECDHE-ECDSA-AES128-CCM8; then
    coap_get "cert-$b-untrusted" "$b" -R "$T/ca.pem"
    if wait_for "$T/dtlscat-cert-$b-untrusted.err" " failed: " 2 &&
      ! grep -q ' connected$' "$T/dtlscat-cert-$b-untrusted.err" &&
      ! coap_log_has "cert-$b-untrusted" "request for unknown resource"; then
      ok "ECDSA certificate: coap-client-$b trusting another CA refuses our server ($(grep -o 'failed: .*' "$T/dtlscat-cert-$b-untrusted.err" | head -n 1); no request sent)"
    else
      not_ok "ECDSA certificate: coap-client-$b trusting another CA refuses our server" \
        "@$T/dtlscat-cert-$b-untrusted.err" "@$T/cert-$b-untrusted.out"
    fi
    stop "dtlscat-cert-$b-untrusted"
  fi
done

finish

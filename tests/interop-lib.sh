#!/bin/bash
# shellcheck shell=bash
# Helpers for the interop tests (tests/interop-*.sh), sourced, not run.
#
# They give a test:
#   DTLSCAT             the dtlscat under test (a libtool wrapper is fine);
#                       il_find_tool VAR NAME finds another tool so
#   IL_TMP              a private temporary directory, removed on exit
#   ca.pem server.pem server.key chain.pem client.pem client.key in IL_TMP:
#                       an ECDSA P-256 CA and two certificates it signed,
#                       made fresh each run (make_certs)
#   root.pem inter.pem server3.pem server3.key server3-chain.pem client3.pem
#   client3.key client3-chain.pem in IL_TMP: a three-level PKI, root,
#                       intermediate, leaves (make_pki3)
#   spawn NAME CMD...   CMD in the background: stdin from a pipe that stays
#                       open (feed NAME TEXT writes to it, close_input NAME
#                       closes it), stdout to IL_TMP/NAME.out, stderr to
#                       IL_TMP/NAME.err; killed on exit whatever happens
#   feed NAME TEXT / feed_line NAME TEXT / close_input NAME
#   running NAME / stop NAME [GRACE] / signal NAME SIG / interrupt NAME [SECS]
#   expect_output NAME TEXT DESC [EVIDENCE...]  NAME's stdout is exactly TEXT
#   expect_line NAME LINE DESC [EVIDENCE...]    NAME's stdout has LINE
#   wait_for FILE TEXT [SECS]     bounded wait for TEXT to show in FILE
#   poll SECS CMD...              bounded wait for CMD to succeed
#   wait_exit NAME [SECS]         bounded wait for NAME to exit; IL_STATUS
#   free_udp_port / wait_udp_bound PORT / listen_port NAME
#   require_prog NAME             skip (77) when NAME is missing
#   require_root WHY              skip (77) when not root
#                                 (both fail instead in CI: il_strict)
#   sent_chain NAME               the chain an "s_client -showcerts" saw
#   make_leaf NAME SUBJECT SERIAL another server certificate of make_pki3's
#   hex TEXT                      TEXT's bytes in lowercase hex
#   ok / not_ok / finish          one "ok - ..." / "not ok - ..." line per
#                                 check; finish exits 1 if any failed
#
# Our side listens on and talks to 127.0.0.1 (or ::1) only, and every wait
# gives up after a bounded time (IL_WAIT seconds unless told).  Set
# DTLSPLEX_KEEP_TMP=1 to keep the directory with every program's output.

IL_NAME=$(basename "$0" .sh)
IL_FAILED=0
IL_PIDS=()
declare -A IL_FD=() IL_PID=()
IL_STATUS=

# The default bound of a wait, in seconds: generous for a loaded machine,
# small next to the whole script's budget.
IL_WAIT=${IL_WAIT:-8}

il_cleanup() {
  local status=$? pid fd
  trap - EXIT INT TERM HUP
  for fd in "${IL_FD[@]}"; do
    exec {fd}>&- 2>/dev/null
  done
  if [ ${#IL_PIDS[@]} -gt 0 ]; then
    kill -TERM "${IL_PIDS[@]}" 2>/dev/null
    # Give them a moment to go, then make sure.
    local deadline alive
    deadline=$(il_deadline 1)
    for (( ; ; )); do
      alive=0
      for pid in "${IL_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
          alive=1
          break
        fi
      done
      [ "$alive" = 0 ] && break
      il_past "$deadline" && break
      sleep 0.1
    done
    kill -KILL "${IL_PIDS[@]}" 2>/dev/null
    wait 2>/dev/null
  fi
  if [ -n "${IL_TMP:-}" ] && [ -d "$IL_TMP" ]; then
    if [ -n "${DTLSPLEX_KEEP_TMP:-}" ]; then
      echo "# kept $IL_TMP" >&2
    else
      rm -rf "$IL_TMP"
    fi
  fi
  exit "$status"
}

# il_strict: true where a skip would hide a gap: in CI (CI=true, as CI
# services set it) or with DTLSPLEX_REQUIRE_INTEROP=1 (.ci/run), where
# .ci/setup has installed every peer program.
il_strict() { [ "${DTLSPLEX_REQUIRE_INTEROP:-0}" = 1 ] || [ "${CI:-}" = true ]; }

# il_cannot REASON: the test cannot run here: it skips (exit 77), or fails
# under il_strict.
il_cannot() {
  if il_strict; then
    echo "ERROR: $1, and this is CI (CI=${CI:-unset}, DTLSPLEX_REQUIRE_INTEROP=${DTLSPLEX_REQUIRE_INTEROP:-unset})"
    exit 1
  fi
  echo "SKIP: $1"
  exit 77
}

# require_prog NAME: a test needs NAME.  Missing, it skips (exit 77), or fails
# under il_strict.
require_prog() {
  command -v "$1" >/dev/null 2>&1 || il_cannot "$1 not installed"
}

# require_root WHY: a test needs root (to capture packets, say).  Otherwise it
# skips (exit 77), or fails under il_strict.
require_root() {
  [ "$(id -u)" = 0 ] || il_cannot "not root, and $1"
}

# il_find_tool VAR NAME: the tool NAME under test, in VAR: the build tree's,
# or next to this script's tree when run by hand.
il_find_tool() {
  local here c
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  for c in ${top_builddir:+"$top_builddir/tools/$2"} "$here/../tools/$2"; do
    if [ -x "$c" ]; then
      printf -v "$1" '%s' "$c"
      return 0
    fi
  done
  echo "ERROR: tools/$2 not found (top_builddir=${top_builddir:-unset}); build it first"
  exit 99
}

il_find_dtlscat() { il_find_tool DTLSCAT dtlscat; }

il_setup() {
  require_prog openssl
  il_find_dtlscat
  IL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dtlsplex-$IL_NAME.XXXXXX") || exit 99
  trap il_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  # For the closing "# NAME: N s" line.
  IL_START=$(date +%s)
}

# ---- results ---------------------------------------------------------------

ok() { printf 'ok - %s\n' "$1"; }

# not_ok DESCRIPTION [EVIDENCE-LINE...]: the check failed; each evidence line
# is printed indented, and a line "@FILE" prints the tail of FILE.
not_ok() {
  IL_FAILED=1
  printf 'not ok - %s\n' "$1"
  shift
  local line
  for line in "$@"; do
    if [ "${line#@}" != "$line" ]; then
      il_show_file "${line#@}"
    else
      printf '%s\n' "$line" | sed 's/^/#   /'
    fi
  done
}

# il_show_file FILE: FILE's last lines, indented, non-printing bytes visible.
il_show_file() {
  local f=$1
  if [ ! -e "$f" ]; then
    printf '#   --- %s: (missing)\n' "${f#"$IL_TMP"/}"
  elif [ ! -s "$f" ]; then
    printf '#   --- %s: (empty)\n' "${f#"$IL_TMP"/}"
  else
    printf '#   --- %s (last 25 lines):\n' "${f#"$IL_TMP"/}"
    tail -n 25 "$f" | cat -v | sed 's/^/#   | /'
  fi
}

# show TEXT: TEXT quoted for an evidence line, bytes made visible.
show() { printf '%q' "$1"; }

# finish: sanitizer reports from our own processes count as failures; then
# exit 1 if any check failed, else 0.
finish() {
  local f
  for f in "$IL_TMP"/dtlscat-*.err "$IL_TMP"/dtlsproxy-*.err; do
    [ -e "$f" ] || continue
    if grep -q -e 'Sanitizer' -e 'runtime error:' "$f"; then
      not_ok "no sanitizer report from ${f##*/}" "@$f"
    fi
  done
  printf '# %s: %s s\n' "$IL_NAME" "$(($(date +%s) - IL_START))"
  if [ "$IL_FAILED" != 0 ]; then
    exit 1
  fi
  exit 0
}

# expect_output NAME TEXT DESCRIPTION [EVIDENCE...]: NAME's stdout must
# become exactly TEXT, byte for byte (bounded wait for enough bytes first).
expect_output() {
  local name=$1 want=$2 desc=$3 got
  shift 3
  # Stop waiting early if NAME has gone: no more output will come.
  poll "$IL_WAIT" il_has_or_gone "$name" "$(printf '%s' "$want" | wc -c)"
  got=$(cat "$IL_TMP/$name.out" && echo x)
  got=${got%x}
  if [ "$got" = "$want" ]; then
    ok "$desc"
    return 0
  fi
  not_ok "$desc" "expected on $name's stdout: $(show "$want")" "got: $(show "$got")" "$@"
  return 1
}

# expect_line NAME LINE DESCRIPTION [EVIDENCE...]: NAME's stdout must get
# LINE as a whole line, byte for byte, among other output.
expect_line() {
  local name=$1 want=$2 desc=$3
  shift 3
  poll "$IL_WAIT" il_line_or_gone "$name" "$want"
  if grep -qxF -- "$want" "$IL_TMP/$name.out"; then
    ok "$desc"
    return 0
  fi
  not_ok "$desc" "expected the line $(show "$want") on $name's stdout" "@$IL_TMP/$name.out" "$@"
  return 1
}

il_has_or_gone() { [ "$(wc -c <"$IL_TMP/$1.out")" -ge "$2" ] || ! running "$1"; }
il_line_or_gone() { grep -qxF -- "$2" "$IL_TMP/$1.out" || ! running "$1"; }

# ---- processes -------------------------------------------------------------

# spawn NAME CMD...: run CMD in the background (see the top).  Its stdin is a
# FIFO this shell keeps open for writing, so CMD sees EOF only on close_input.
spawn() {
  local name=$1 fifo fd
  shift
  fifo=$IL_TMP/$name.in
  rm -f "$fifo" "$IL_TMP/$name.out" "$IL_TMP/$name.err"
  mkfifo "$fifo" || exit 99
  : >"$IL_TMP/$name.out"
  : >"$IL_TMP/$name.err"
  # The child must not hold other children's input pipes open: close them.
  (
    for fd in "${IL_FD[@]}"; do
      exec {fd}>&-
    done
    exec "$@"
  ) <"$fifo" >"$IL_TMP/$name.out" 2>"$IL_TMP/$name.err" &
  IL_PID[$name]=$!
  IL_PIDS+=("$!")
  # Read-write open: never blocks, whether or not the child has opened it yet.
  exec {fd}<>"$fifo"
  IL_FD[$name]=$fd
}

# feed NAME TEXT: write TEXT to NAME's stdin; feed_line adds a newline.
feed() {
  local fd=${IL_FD[$1]}
  printf '%s' "$2" >&"$fd"
}
feed_line() { feed "$1" "$2
"; }

# close_input NAME: end of input for NAME.
close_input() {
  local fd=${IL_FD[$1]:-}
  if [ -n "$fd" ]; then
    exec {fd}>&-
    unset "IL_FD[$1]"
  fi
}

# running NAME: true while NAME's process lives.
running() { kill -0 "${IL_PID[$1]}" 2>/dev/null; }

# stop NAME [GRACE]: end NAME: close its input, give it GRACE seconds (0 by
# default) to exit by itself (and flush its logs), then kill it.
stop() {
  close_input "$1"
  [ "${2:-0}" -gt 0 ] && poll "$2" il_gone "$1"
  kill -TERM "${IL_PID[$1]}" 2>/dev/null
  poll 2 il_gone "$1" || kill -KILL "${IL_PID[$1]}" 2>/dev/null
  wait "${IL_PID[$1]}" 2>/dev/null
  return 0
}
il_gone() { ! running "$1"; }

# signal NAME SIG: send SIG (HUP, INT, ...) to NAME.
signal() { kill -s "$2" "${IL_PID[$1]}"; }

# interrupt NAME [SECS]: SIGINT to NAME (a capture ends cleanly on it), then
# wait up to SECS for it to exit; true if it did, its status in IL_STATUS.
interrupt() {
  signal "$1" INT 2>/dev/null
  wait_exit "$1" "${2:-$IL_WAIT}"
}

# wait_exit NAME [SECS]: wait up to SECS for NAME to exit.  True if it did,
# with its exit status in IL_STATUS; false (IL_STATUS empty) if still running.
wait_exit() {
  local pid=${IL_PID[$1]} deadline
  deadline=$(il_deadline "${2:-$IL_WAIT}")
  IL_STATUS=
  while kill -0 "$pid" 2>/dev/null; do
    il_past "$deadline" && return 1
    sleep 0.1
  done
  wait "$pid" 2>/dev/null
  # shellcheck disable=SC2034 # for the sourcing script
  IL_STATUS=$?
  return 0
}

# ---- bounded waits -----------------------------------------------------------

# Deadlines in tenths of a second of this shell's life.
il_now() {
  if [ -n "${EPOCHREALTIME:-}" ]; then
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 100000))
  else
    echo $(($(date +%s) * 10))
  fi
}
il_deadline() { local s=$1; echo $(($(il_now) + ${s%%.*} * 10)); }
il_past() { [ "$(il_now)" -ge "$1" ]; }

# poll SECS CMD...: run CMD every 0.1 s until it succeeds, at most SECS
# seconds.  True if it did.
poll() {
  local deadline
  deadline=$(il_deadline "$1")
  shift
  until "$@"; do
    il_past "$deadline" && return 1
    sleep 0.1
  done
  return 0
}

# wait_for FILE TEXT [SECS]: poll until FILE contains TEXT (a fixed string),
# at most SECS seconds.  True if it showed up.
wait_for() { poll "${3:-$IL_WAIT}" grep -qF -- "$2" "$1"; }

# ---- ports -------------------------------------------------------------------

# il_udp_ports_in_use: local UDP ports bound on this host, decimal, one a line.
il_udp_ports_in_use() {
  local f
  for f in /proc/net/udp /proc/net/udp6; do
    [ -r "$f" ] || continue
    # local_address is ADDR:PORT in hex, the 2nd field.
    awk 'NR > 1 { split($2, a, ":"); print a[2] }' "$f"
  done | while read -r hex; do
    echo $((16#$hex))
  done
}

# free_udp_port: a UDP port nothing is bound to, below the kernel's ephemeral
# range so that no client socket takes it meanwhile.
free_udp_port() {
  local used port i
  used=" $(il_udp_ports_in_use | tr '\n' ' ') "
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    case $used in
    *" $port "*) continue ;;
    esac
    echo "$port"
    return 0
  done
  echo "ERROR: no free UDP port found" >&2
  return 1
}

# wait_udp_bound PORT [SECS]: poll until something is bound to UDP PORT.
wait_udp_bound() {
  local port=$1 deadline
  deadline=$(il_deadline "${2:-$IL_WAIT}")
  if [ ! -r /proc/net/udp ]; then
    sleep 1 # no way to look: give the server a moment
    return 0
  fi
  until il_udp_ports_in_use | grep -qx -- "$port"; do
    il_past "$deadline" && return 1
    sleep 0.1
  done
  return 0
}

# listen_port NAME [SECS]: the port a "dtlscat -l ... 0" named NAME reports
# ("listening on ADDR PORT" on stderr); empty if it did not say in time.
listen_port() {
  local err=$IL_TMP/$1.err
  if wait_for "$err" "listening on " "${2:-$IL_WAIT}"; then
    sed -n 's/^listening on [^ ]* \([0-9][0-9]*\)$/\1/p' "$err" | head -n 1
  fi
}

# ---- certificates ------------------------------------------------------------

# il_openssl_cnf: IL_TMP/openssl.cnf, the extensions of every certificate
# made here, one section per kind.
il_openssl_cnf() {
  [ -e "$IL_TMP/openssl.cnf" ] && return 0
  cat >"$IL_TMP/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[inter]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
}

# il_key NAME: a fresh ECDSA P-256 key in IL_TMP/NAME.key.
il_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$IL_TMP/$1.key" \
    2>>"$IL_TMP/certs.log" || il_cert_error
}

# il_self_signed NAME SUBJECT: NAME.key and a self-signed CA certificate
# NAME.pem (section [ca]).
il_self_signed() {
  il_key "$1"
  openssl req -config "$IL_TMP/openssl.cnf" -new -x509 -key "$IL_TMP/$1.key" -subj "$2" \
    -days 2 -sha256 -extensions ca -out "$IL_TMP/$1.pem" 2>>"$IL_TMP/certs.log" || il_cert_error
}

# il_issue NAME SUBJECT ISSUER SECTION SERIAL: NAME.key and NAME.pem, a
# certificate for SUBJECT with the extensions of SECTION, signed by ISSUER
# (ISSUER.pem and ISSUER.key).
il_issue() {
  local d=$IL_TMP name=$1 subj=$2 issuer=$3 section=$4 serial=$5
  il_key "$name"
  openssl req -config "$d/openssl.cnf" -new -key "$d/$name.key" -subj "$subj" \
    -out "$d/$name.csr" 2>>"$d/certs.log" || il_cert_error
  openssl x509 -req -in "$d/$name.csr" -CA "$d/$issuer.pem" -CAkey "$d/$issuer.key" -set_serial "$serial" \
    -days 2 -sha256 -extfile "$d/openssl.cnf" -extensions "$section" -out "$d/$name.pem" \
    2>>"$d/certs.log" || il_cert_error
}

# make_certs: a CA, a server certificate for localhost / 127.0.0.1 / ::1, and
# a client certificate, all ECDSA P-256, in IL_TMP; chain.pem is the server
# certificate followed by the CA's (more than 500 bytes on the wire).
make_certs() {
  local d=$IL_TMP
  il_openssl_cnf
  il_self_signed ca "/CN=dtlsplex interop test CA"
  il_issue server "/CN=localhost" ca server 2
  il_issue client "/CN=dtlsplex interop client" ca client 3
  cat "$d/server.pem" "$d/ca.pem" >"$d/chain.pem"
  openssl verify -CAfile "$d/ca.pem" "$d/server.pem" "$d/client.pem" >>"$d/certs.log" 2>&1 || il_cert_error
}

# make_pki3: a three-level PKI, as a public CA's, all ECDSA P-256, in IL_TMP:
#   root.pem           a root CA, the only trust anchor a peer is given
#   inter.pem          an intermediate CA (pathlen:0) the root signed
#   server3.pem/.key   a server certificate the intermediate signed, for
#                      localhost / 127.0.0.1 / ::1
#   client3.pem/.key   a client certificate the intermediate signed
#   server3-chain.pem, client3-chain.pem   the leaf, then the intermediate:
#                      what a certificate file holds
# A peer that trusts root.pem alone verifies a leaf only if the intermediate
# comes with it in the handshake.
make_pki3() {
  local d=$IL_TMP
  il_openssl_cnf
  il_self_signed root "/CN=dtlsplex interop test root CA"
  il_issue inter "/CN=dtlsplex interop test intermediate CA" root inter 10
  il_issue server3 "/CN=localhost" inter server 11
  il_issue client3 "/CN=dtlsplex interop client3" inter client 12
  cat "$d/server3.pem" "$d/inter.pem" >"$d/server3-chain.pem"
  cat "$d/client3.pem" "$d/inter.pem" >"$d/client3-chain.pem"
  openssl verify -CAfile "$d/root.pem" "$d/inter.pem" >>"$d/certs.log" 2>&1 || il_cert_error
  openssl verify -CAfile "$d/root.pem" -untrusted "$d/inter.pem" -purpose sslserver "$d/server3.pem" \
    >>"$d/certs.log" 2>&1 || il_cert_error
  openssl verify -CAfile "$d/root.pem" -untrusted "$d/inter.pem" -purpose sslclient "$d/client3.pem" \
    >>"$d/certs.log" 2>&1 || il_cert_error
  # Without the intermediate the leaves must not verify (the errors logged
  # next are expected), or the checks that
  # the intermediate is sent would prove nothing.
  local leaf
  for leaf in server3 client3; do
    if openssl verify -CAfile "$d/root.pem" "$d/$leaf.pem" >>"$d/certs.log" 2>&1; then
      echo "$leaf.pem verifies without its intermediate" >>"$d/certs.log"
      il_cert_error
    fi
  done
}

# make_leaf NAME SUBJECT SERIAL: after make_pki3, another server certificate
# the intermediate signed, for SUBJECT and the same names as server3.pem
# (localhost, 127.0.0.1, ::1): NAME.pem, NAME.key and NAME-chain.pem (leaf,
# then intermediate).
make_leaf() {
  local d=$IL_TMP
  il_issue "$1" "$2" inter server "$3"
  cat "$d/$1.pem" "$d/inter.pem" >"$d/$1-chain.pem"
  openssl verify -CAfile "$d/root.pem" -untrusted "$d/inter.pem" -purpose sslserver "$d/$1.pem" \
    >>"$d/certs.log" 2>&1 || il_cert_error
}

il_cert_error() {
  echo "ERROR: could not make the test certificates with openssl"
  sed 's/^/#   /' "$IL_TMP/certs.log"
  exit 99
}

# der_size PEMFILE: the total DER size of the certificates in PEMFILE.
der_size() {
  local total=0 n f
  local tmp=$IL_TMP/der.split
  rm -rf "$tmp" && mkdir "$tmp"
  awk -v dir="$tmp" '/-BEGIN CERTIFICATE-/ { n++ } n { print > (dir "/" n ".pem") }' "$1"
  for f in "$tmp"/*.pem; do
    n=$(openssl x509 -in "$f" -outform DER | wc -c)
    total=$((total + n))
  done
  echo "$total"
}

# sent_chain NAME: the subjects of the certificates the server sent, as the
# "Certificate chain" of s_client -showcerts NAME lists them, one a line
# (" 0 s:CN = localhost").
sent_chain() {
  sed -n '/^Certificate chain$/,/^---$/ { /^ *[0-9][0-9]* s:/p; }' "$IL_TMP/$1.out"
}

# hex TEXT: the bytes of TEXT in lowercase hex, nothing between them.
hex() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }

# uniq_line LABEL: a line nobody else sends, starting with a lowercase letter
# (openssl's s_client/s_server read lines starting Q, R, k, K, B as commands).
uniq_line() { printf 'dtlsplex %s %s-%s' "$1" "$$" "$RANDOM"; }

# dtlscat_server NAME ARGS...: our server on 127.0.0.1, a fresh port, in
# SERVER_PORT; false (and a failed check) if it does not come up.
dtlscat_server() {
  local name=$1
  shift
  spawn "$name" "$DTLSCAT" -l -v "$@" 127.0.0.1 0
  SERVER_PORT=$(listen_port "$name")
  if [ -z "$SERVER_PORT" ]; then
    not_ok "dtlscat -l $* starts" "@$IL_TMP/$name.err"
    return 1
  fi
}

#!/bin/bash
# dtlsplex-run: unmodified programs with DTLS on their UDP sockets.  A
# Python socketserver.UDPServer echo server (it answers in capitals) under
# dtlsplex-run against a Python client under dtlsplex-run, openssl
# s_client -dtls1_2 and gnutls-cli --udp; socat as server and client; nc -u
# as a client of dtlscat; a client whose CA does not know the server gets an
# error in the program.  As root, tcpdump captures every run on lo, and no
# line sent appears in the clear.  One line per check; exits 1 if any
# failed, 77 (outside CI) if a program is missing.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"

PY=/usr/bin/python3 # Debian's, not a shim script: the program itself runs preloaded
require_prog "$PY"
require_prog socat
require_prog nc
require_prog gnutls-cli
il_setup
make_certs
T=$IL_TMP
RUN_BIN=${top_builddir:-$(dirname "$0")/..}/tools/dtlsplex-run
export DTLSPLEX_PRELOAD=${top_builddir:-$(dirname "$0")/..}/lib/.libs/libdtlsplex-preload.so
[ -x "$RUN_BIN" ] && [ -r "$DTLSPLEX_PRELOAD" ] || { echo "ERROR: build tools/dtlsplex-run first"; exit 99; }
# In an AddressSanitizer build the runtime must be loaded before the preload
# library in a program that was not built with it; the program's own leaks
# (Python's) are not the library's, whose leaks the C tests check.
ASAN_RT=$(ldd "$DTLSPLEX_PRELOAD" | awk '/libasan/ { print $3 }')
if [ -n "$ASAN_RT" ]; then
  RUN=(env LD_PRELOAD="$ASAN_RT" ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" "$RUN_BIN")
else
  RUN=("$RUN_BIN")
fi
SERVE=(-c "$T/server.pem" -k "$T/server.key")
TRUST=(-C "$T/ca.pem" --name localhost)
SENT=("never in the clear") # every line sent: none may show in the capture

cat >"$T/server.py" <<'EOF'
import socketserver, sys
class Upper(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data.upper(), self.client_address)
print("listening on 127.0.0.1", sys.argv[1], file=sys.stderr, flush=True)
with socketserver.UDPServer(("127.0.0.1", int(sys.argv[1])), Upper) as server:
    server.serve_forever()
EOF
# The client waits for each answer in a blocking recvfrom ("blocking"), or
# with its socket non-blocking in select, poll or epoll, then reads once:
# a wait that woke for a handshake record would make that read fail.
cat >"$T/client.py" <<'EOF'
import select, selectors, socket, sys
port, count, tag, wait = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if wait == "blocking":
    s.settimeout(10)
else:
    s.setblocking(False)
    chosen = {"poll": selectors.PollSelector, "epoll": selectors.EpollSelector}.get(wait)
    if chosen is not None:
        selector = chosen()
        selector.register(s, selectors.EVENT_READ)
for i in range(count):
    line = ("%s %d" % (tag, i)).encode()
    s.sendto(line, ("127.0.0.1", port))
    if wait == "select":
        ready = select.select([s], [], [], 10)[0]
    elif wait != "blocking":
        ready = selector.select(10)
    if wait != "blocking" and not ready:
        sys.exit("no answer within 10 s")
    data, addr = s.recvfrom(2048)
    if data != line.upper() or addr != ("127.0.0.1", port):
        sys.exit("unexpected answer %r from %r" % (data, addr))
print("echoed", count)
EOF
# A client of a server it cannot verify: the error must reach the program.
# Blocking, the first sendto completes the handshake and fails; with a
# timeout (Python then makes the socket non-blocking) the sendto is queued,
# no answer comes, and the next sendto reports the failure.
cat >"$T/bad_client.py" <<'EOF'
import errno, socket, sys
port, timeout = int(sys.argv[1]), sys.argv[2] == "timeout"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if timeout:
    s.settimeout(3)
try:
    s.sendto(b"never in the clear", ("127.0.0.1", port))
    if timeout:
        try:
            s.recvfrom(2048)
        except TimeoutError:
            pass
        s.sendto(b"never in the clear", ("127.0.0.1", port))
except OSError as e:
    print(type(e).__name__, errno.errorcode[e.errno])
    sys.exit(3)
print("sent")
EOF

CAPTURE=$T/capture.pcap
CAPTURING=0
if [ "$(id -u)" = 0 ] && command -v tcpdump >/dev/null; then
  spawn tcpdump tcpdump -i lo -n --immediate-mode -U -w "$CAPTURE" udp
  if wait_for "$T/tcpdump.err" "listening on lo"; then
    CAPTURING=1
  else
    not_ok "tcpdump captures on lo" "@$T/tcpdump.err"
  fi
elif il_strict; then
  not_ok "tcpdump captures on lo (needs root and tcpdump)"
else
  echo "# not root, or no tcpdump: the capture check is skipped"
fi

# ---- 1. the Python server against a Python client, s_client, gnutls-cli -----
PORT=$(free_udp_port)
spawn py-srv "${RUN[@]}" "${SERVE[@]}" -- "$PY" "$T/server.py" "$PORT"
if listen_port py-srv >/dev/null && wait_udp_bound "$PORT"; then
  for wait in blocking select poll epoll; do
    TAG=$(uniq_line "python-$wait")
    SENT+=("$TAG")
    spawn "py-cli-$wait" "${RUN[@]}" "${TRUST[@]}" -- "$PY" "$T/client.py" "$PORT" 20 "$TAG" "$wait"
    expect_output "py-cli-$wait" "echoed 20
" "a Python UDP client under dtlsplex-run ($wait wait) gets 20 answers from a Python socketserver under dtlsplex-run" \
      "@$T/py-cli-$wait.err" "@$T/py-srv.err"
  done

  LINE=$(uniq_line sclient)
  SENT+=("$LINE")
  spawn sc openssl s_client -dtls1_2 -connect "127.0.0.1:$PORT" -quiet -CAfile "$T/ca.pem" \
    -verify_return_error -verify_hostname localhost
  feed_line sc "$LINE"
  expect_output sc "${LINE^^}
" "openssl s_client -dtls1_2 verifies the Python server under dtlsplex-run and gets its answer" \
    "@$T/sc.err" "@$T/py-srv.err"
  stop sc

  LINE=$(uniq_line gnutls)
  SENT+=("$LINE")
  spawn gc gnutls-cli --udp --logfile "$T/gc.log" -p "$PORT" --x509cafile "$T/ca.pem" \
    --verify-hostname localhost 127.0.0.1
  feed_line gc "$LINE"
  expect_output gc "${LINE^^}
" "gnutls-cli --udp verifies the Python server under dtlsplex-run and gets its answer" \
    "@$T/gc.err" "@$T/py-srv.err"
  stop gc 3

  # ---- 2. a client that cannot verify the server: an error in the program ---
  il_self_signed other "/CN=another CA"
  for mode in blocking timeout; do
    spawn "py-bad-$mode" "${RUN[@]}" -C "$T/other.pem" --name localhost -- "$PY" "$T/bad_client.py" "$PORT" "$mode"
    if wait_exit "py-bad-$mode" 20 && [ "$IL_STATUS" = 3 ] && [ "$(cat "$T/py-bad-$mode.out")" = "PermissionError EACCES" ]; then
      ok "a Python client ($mode socket) whose CA does not know the server gets PermissionError (EACCES)"
    else
      not_ok "a Python client ($mode socket) whose CA does not know the server gets PermissionError (EACCES)" \
        "status: ${IL_STATUS:-still running}" "@$T/py-bad-$mode.out" "@$T/py-bad-$mode.err"
    fi
  done
  stop py-srv
else
  not_ok "the Python server under dtlsplex-run binds port $PORT" "@$T/py-srv.err"
fi

# ---- 3. socat as server and as client ----------------------------------------
PORT=$(free_udp_port)
spawn socat-srv "${RUN[@]}" "${SERVE[@]}" -- socat "UDP-LISTEN:$PORT,bind=127.0.0.1" PIPE
if wait_udp_bound "$PORT"; then
  LINE=$(uniq_line socat)
  SENT+=("$LINE")
  spawn socat-cli "${RUN[@]}" "${TRUST[@]}" -- socat -t 5 - "UDP:127.0.0.1:$PORT"
  feed_line socat-cli "$LINE"
  expect_output socat-cli "$LINE
" "socat UDP client under dtlsplex-run gets its line echoed by a socat UDP-LISTEN server under dtlsplex-run" \
    "@$T/socat-cli.err" "@$T/socat-srv.err"
  stop socat-cli
else
  not_ok "socat under dtlsplex-run binds port $PORT" "@$T/socat-srv.err"
fi
stop socat-srv

# ---- 4. nc -u as a client of dtlscat ----------------------------------------
if dtlscat_server dtlscat-srv -e "${SERVE[@]}"; then
  LINE=$(uniq_line netcat)
  SENT+=("$LINE")
  spawn nc-cli "${RUN[@]}" "${TRUST[@]}" -- nc -u -w 5 127.0.0.1 "$SERVER_PORT"
  feed_line nc-cli "$LINE"
  expect_output nc-cli "$LINE
" "nc -u under dtlsplex-run gets its line echoed by dtlscat -l -e" "@$T/nc-cli.err" "@$T/dtlscat-srv.err"
  stop nc-cli
  stop dtlscat-srv
fi

# ---- 5. call shapes that once let plaintext through --------------------------
# Two plain UDP sinks record what reaches them; the probe's datagrams are
# marked PLAINTEXT-n and must arrive, if at all, only inside DTLS.
cat >"$T/sink.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("listening on 127.0.0.1", sys.argv[1], file=sys.stderr, flush=True)
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536) + b"\n")
EOF
PROBE=${top_builddir:-$(dirname "$0")/..}/tests/preload-probe
SINK=$(free_udp_port)
OTHER=$(free_udp_port)
BOUND=$(free_udp_port)
spawn sink "$PY" "$T/sink.py" "$SINK" "$T/sink.bin"
spawn sink-other "$PY" "$T/sink.py" "$OTHER" "$T/sink-other.bin"
if listen_port sink >/dev/null && listen_port sink-other >/dev/null; then
  spawn probe "${RUN[@]}" --insecure --ports "$SINK,$BOUND" -- "$PROBE" "$SINK" "$OTHER" "$BOUND"
  if wait_exit probe 30 && [ "$IL_STATUS" = 0 ]; then
    ok "the probe's checks under dtlsplex-run pass ($(grep -c '^ok' "$T/probe.out") checks)"
  else
    not_ok "the probe's checks under dtlsplex-run pass" "status: ${IL_STATUS:-still running}" "@$T/probe.out" "@$T/probe.err"
  fi
  sleep 1
  if [ -s "$T/sink.bin" ] && ! grep -aq PLAINTEXT "$T/sink.bin" "$T/sink-other.bin"; then
    ok "the sinks got DTLS records and none of the probe's datagrams in the clear"
  else
    not_ok "the sinks got DTLS records and none of the probe's datagrams in the clear" \
      "sink: $(wc -c <"$T/sink.bin" 2>/dev/null) bytes; in the clear: $(grep -aho 'PLAINTEXT-[0-9]' "$T/sink.bin" "$T/sink-other.bin" | tr '\n' ' ')"
  fi
fi
stop sink
stop sink-other

# ---- 6. nothing in the clear -------------------------------------------------
if [ "$CAPTURING" = 1 ]; then
  if interrupt tcpdump && grep -q '^[1-9][0-9]* packets\{0,1\} captured' "$T/tcpdump.err"; then
    found=()
    for line in "${SENT[@]}"; do
      grep -aqF -e "$line" -e "${line^^}" "$CAPTURE" && found+=("$line")
    done
    if [ ${#found[@]} = 0 ]; then
      ok "no line sent (${#SENT[@]}, and their answers) appears in the clear in the capture ($(grep captured "$T/tcpdump.err"))"
    else
      not_ok "no line sent appears in the clear in the capture" "in the clear: ${found[*]}"
    fi
  else
    not_ok "tcpdump stopped with packets captured" "@$T/tcpdump.err"
  fi
fi
finish

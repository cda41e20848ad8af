#!/bin/bash
# dtlsproxy's server side towards a backend: --proxy-protocol puts a PROXY
# protocol v2 header with the client's real address before each datagram
# (a Python backend parses it and answers with what it read), over IPv4
# and IPv6; each peer reaches the backend from a source port of its own;
# a backend that does not answer leaves the proxy running; options that
# cannot work are refused.  One line per check; exits 1 if any failed, 77
# (outside CI) without python3.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"

require_prog python3
il_setup
il_find_tool DTLSPROXY dtlsproxy
make_certs
T=$IL_TMP

# The backend: one line per datagram back to its sender, "SEEN PORT" (the
# source port it saw), then for a PROXY v2 header "pp2 FAMILY SRC DST" (or
# "no header"), then the payload.
cat >"$T/backend.py" <<'PY'
import ipaddress, socket, struct, sys
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
def header(d):
    if not d.startswith(SIG) or d[12] != 0x21:
        return "no header", d
    fam, length = d[13], struct.unpack("!H", d[14:16])[0]
    body, rest = d[16:16 + length], d[16 + length:]
    if fam == 0x12:
        src, dst = ipaddress.ip_address(body[0:4]), ipaddress.ip_address(body[4:8])
        sp, dp = struct.unpack("!HH", body[8:12])
        return "pp2 UDP4 %s:%d %s:%d" % (src, sp, dst, dp), rest
    if fam == 0x22:
        src, dst = ipaddress.ip_address(body[0:16]), ipaddress.ip_address(body[16:32])
        sp, dp = struct.unpack("!HH", body[32:36])
        return "pp2 UDP6 [%s]:%d [%s]:%d" % (src, sp, dst, dp), rest
    return "pp2 family %#x" % fam, rest
while True:
    d, a = s.recvfrom(65535)
    h, payload = header(d)
    s.sendto(("SEEN %d %s " % (a[1], h)).encode() + payload, a)
PY
spawn backend python3 "$T/backend.py"
poll "$IL_WAIT" grep -q . "$T/backend.out"
BACKEND_PORT=$(head -n 1 "$T/backend.out")

# proxy NAME ARGS...: dtlsproxy -l on every address (dual stack) towards
# ARGS..., its port in PROXY_PORT.
proxy() {
  local name=$1
  shift
  spawn "$name" "$DTLSPROXY" -v -l 0 -c "$T/chain.pem" -k "$T/server.key" "$@"
  PROXY_PORT=$(listen_port "$name")
  [ -n "$PROXY_PORT" ] || not_ok "$name starts" "@$T/$name.err"
}

# client NAME ADDR SRCPORT: dtlscat from SRCPORT to ADDR PROXY_PORT.
client() { spawn "$1" "$DTLSCAT" -C "$T/ca.pem" -p "$3" "$2" "$PROXY_PORT"; }

# seen_port NAME N: the backend source port in NAME's Nth reply.
seen_port() { sed -n "$2s/^SEEN \([0-9]*\) .*/\1/p" "$T/$1.out"; }

# reply NAME TEXT DESCRIPTION [EVIDENCE...]: NAME's output gets the line
# "SEEN PORT TEXT", PORT whatever the backend saw.
reply() {
  local name=$1 want=$2 desc=$3 pattern
  shift 3
  pattern="SEEN [0-9]* $(printf '%s' "$want" | sed 's/[][\\.*^$]/\\&/g')"
  if poll "$IL_WAIT" grep -qx -- "$pattern" "$T/$name.out"; then
    ok "$desc"
  else
    not_ok "$desc" "expected a line $(show "SEEN PORT $want") on $name's stdout" "@$T/$name.out" "$@"
  fi
}

proxy dtlsproxy-pp --to 127.0.0.1 "$BACKEND_PORT" --proxy-protocol
P4=$(free_udp_port) && P6=$(free_udp_port) && P4B=$(free_udp_port) || exit 99
client dtlscat-4 127.0.0.1 "$P4"
client dtlscat-6 ::1 "$P6"
client dtlscat-4b 127.0.0.1 "$P4B"
feed_line dtlscat-4 "first"
reply dtlscat-4 "pp2 UDP4 127.0.0.1:$P4 127.0.0.1:$PROXY_PORT first" \
  "--proxy-protocol, IPv4: the backend reads the client's address and port, and the proxy's" \
  "@$T/dtlsproxy-pp.err" "@$T/backend.err"
feed_line dtlscat-6 "sixth"
reply dtlscat-6 "pp2 UDP6 [::1]:$P6 [::1]:$PROXY_PORT sixth" \
  "--proxy-protocol, IPv6: the backend reads the client's address and port, and the proxy's" \
  "@$T/dtlsproxy-pp.err" "@$T/backend.err"
feed_line dtlscat-4 "second"
feed_line dtlscat-4b "other"
reply dtlscat-4 "pp2 UDP4 127.0.0.1:$P4 127.0.0.1:$PROXY_PORT second" "a peer's second datagram gets its answer"
if [ -n "$(seen_port dtlscat-4 2)" ] && [ "$(seen_port dtlscat-4 2)" = "$(seen_port dtlscat-4 1)" ]; then
  ok "a peer's second datagram reaches the backend from the same source port"
else
  not_ok "a peer's second datagram reaches the backend from the same source port" "@$T/dtlscat-4.out"
fi
reply dtlscat-4b "pp2 UDP4 127.0.0.1:$P4B 127.0.0.1:$PROXY_PORT other" \
  "another peer's datagram is answered back into its own session"
ports=$(printf '%s\n' "$(seen_port dtlscat-4 1)" "$(seen_port dtlscat-6 1)" "$(seen_port dtlscat-4b 1)" |
  grep . | sort -u | wc -l)
if [ "$ports" = 3 ]; then
  ok "three peers reach the backend from three source ports"
else
  not_ok "three peers reach the backend from three source ports" "distinct ports: $ports" "@$T/backend.err"
fi
stop dtlscat-4
stop dtlscat-6
stop dtlscat-4b

proxy dtlsproxy-plain --to 127.0.0.1 "$BACKEND_PORT"
client dtlscat-plain 127.0.0.1 "$(free_udp_port)"
feed_line dtlscat-plain "bare"
reply dtlscat-plain "no header bare" \
  "without --proxy-protocol the backend gets the datagram as the client sent it"
stop dtlscat-plain

# A backend port nobody listens on: ICMP errors come back, and the proxy
# goes on (and counts what it could not pass on).
DEAD_PORT=$(free_udp_port) || exit 99
proxy dtlsproxy-dead --to 127.0.0.1 "$DEAD_PORT"
client dtlscat-dead 127.0.0.1 "$(free_udp_port)"
for i in 1 2 3 4; do
  feed_line dtlscat-dead "into the void $i"
  sleep 0.2
done
signal dtlsproxy-dead USR1
if wait_for "$T/dtlsproxy-dead.err" "dropped=" && running dtlsproxy-dead &&
  grep -q ' up=[0-9]* down=0 dropped=[1-9]' "$T/dtlsproxy-dead.err"; then
  ok "an unreachable backend: the proxy keeps running and counts the datagrams it lost"
else
  not_ok "an unreachable backend: the proxy keeps running and counts the datagrams it lost" \
    "@$T/dtlsproxy-dead.err"
fi
stop dtlscat-dead

# refused DESCRIPTION MESSAGE ARGS...: dtlsproxy ARGS exits 2 with MESSAGE.
refused() {
  local desc=$1 want=$2 got status
  shift 2
  got=$("$DTLSPROXY" "$@" 2>&1 >/dev/null)
  status=$?
  if [ "$status" = 2 ] && [ "$(printf '%s\n' "$got" | head -n 1)" = "$want" ]; then
    ok "$desc"
  else
    not_ok "$desc" "expected status 2 and $(show "$want")" "got status $status and $(show "$got")"
  fi
}
refused "without --to: refused" "dtlsproxy: --to HOST PORT is missing: where to pass the datagrams on to" \
  -l 0 -c "$T/chain.pem" -k "$T/server.key"
refused "--proxy-protocol with --client: refused" \
  "dtlsproxy: --proxy-protocol is for the server side (without --client)" \
  --client -l 0 --to 127.0.0.1 1 --proxy-protocol
refused "the server side without a certificate or PSK: refused" "dtlsproxy: the server side needs -c/-k or --psk" \
  -l 0 --to 127.0.0.1 1
refused "--verify on the client side: refused" \
  "dtlsproxy: --verify is for the server side (without --client) and needs -C CAFILE" \
  --client -l 0 --to 127.0.0.1 1 --verify -C "$T/ca.pem"
refused "--idle 0: refused" "dtlsproxy: --idle: '0' is not a number from 1 to 86400" \
  -l 0 --to 127.0.0.1 1 --idle 0 -c "$T/chain.pem" -k "$T/server.key"

stop dtlsproxy-pp
stop dtlsproxy-plain
stop dtlsproxy-dead
stop backend
finish

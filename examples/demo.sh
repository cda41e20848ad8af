#!/bin/sh
# The demo: one echo server socket, eight concurrent DTLS clients, a test CA.
# Usage: demo.sh [DIR-WITH-EXAMPLES [SERVER]]
#   SERVER: echo-server (a blocking loop, the default) or echo-server-epoll
set -eu
bin=${1:-examples}
server=${2:-echo-server}
clients=8
dir=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# A CA and a server certificate for localhost, made for this run only.
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 $ec -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 1 -subj "/CN=dtlsplex demo CA" 2>/dev/null
openssl req $ec -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$dir/ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -extfile "$dir/ext" -out "$dir/server.pem" -days 1 2>/dev/null

"$bin/$server" 0 --cert "$dir/server.pem" --key "$dir/server.key" --exit-after $clients \
  > "$dir/server.log" 2>&1 &
server_pid=$!
port=
for _ in $(seq 50); do
  port=$(sed -n 's/^echo-server: listening on port \([0-9]*\).*/\1/p' "$dir/server.log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$dir/server.log"; echo "demo: the server did not start" >&2; exit 1; }
echo "== $server on UDP port $port; starting $clients clients at once, 20 messages each"

pids=
for i in $(seq $clients); do
  "$bin/echo-client" 127.0.0.1 "$port" 20 --ca "$dir/ca.pem" --name localhost > "$dir/client$i.log" 2>&1 &
  pids="$pids $!"
done
failed=0
for pid in $pids; do wait "$pid" || failed=$((failed + 1)); done
cat "$dir"/client*.log
wait "$server_pid" || true
server_pid=
echo "== server log"
cat "$dir/server.log"
sockets=$(sed -n 's/.*(server socket fd \([0-9]*\),.*/\1/p' "$dir/server.log" | sort -u | wc -l)
connected=$(grep -c ' connected (' "$dir/server.log" || true)
echo "== $connected clients connected through $sockets server socket; $failed client(s) failed"
[ "$failed" -eq 0 ] && [ "$connected" -eq "$clients" ] && [ "$sockets" -eq 1 ]

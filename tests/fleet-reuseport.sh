#!/bin/bash
# A fleet on one machine without a balancer: "echo-server --workers 3", three
# processes with a socket each on one port (SO_REUSEPORT), sharing a fleet
# secret.  Twenty clients echo continuously and resume after 1 s without an
# answer; the worker with the most clients is killed with kill -9.  The
# kernel then hashes the clients over the two sockets left: the dead
# worker's clients move, and so may some of a survivor's, since the hash
# picks a socket by its place in the group and the dead one's place goes to
# the last socket (none of them moved when the middle socket died, up to
# about half of them otherwise, in our runs).  The test counts the full and
# resumed handshakes of the peers that moved, and checks:
#   - every client that lost its server is served again within
#     FLEET_BOUND_MS of the kill
#   - every handshake after the kill resumed (the workers' dtlsplex_stats,
#     before and after, and their "connected" lines)
#   - the clients that did not move saw nothing
#   - the parent reports the dead worker, the others exit 0 on SIGTERM,
#     and no process is left.
# make check-long runs it.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"
# shellcheck source=tests/fleet-lib.sh
. "$(dirname "$0")/fleet-lib.sh"

# The bound on "served again": as for tests/fleet-nginx.sh (resume-after,
# one interval, one abbreviated handshake), measured 0.91 to 1.11 s (12 runs,
# 150 moved clients); the bound, 2 s, adds 0.9 s of headroom.
FLEET_BOUND_MS=${FLEET_BOUND_MS:-$((FLEET_RESUME_AFTER + FLEET_INTERVAL + 900))}
WORKERS=3

fleet_setup
T=$IL_TMP
make_certs

spawn server "$ECHO_SERVER" 0 --cert "$T/server.pem" --key "$T/server.key" --fleet-secret "$T/fleet.key" \
  --workers "$WORKERS"
# workers_up: every worker has said it listens (for poll).
# shellcheck disable=SC2317 # called by poll
workers_up() { [ "$(grep -c '^worker [0-9]*: echo-server: listening' "$T/server.out")" = "$WORKERS" ]; }
if ! poll "$IL_WAIT" workers_up || ! PORT=$(sed -n 's/^echo-server: listening on port \([0-9]*\), .*/\1/p' \
  "$T/server.out") || [ -z "$PORT" ]; then
  not_ok "echo-server --workers $WORKERS starts" "@$T/server.out" "@$T/server.err"
  finish
fi
mapfile -t worker_pids < <(sed -n 's/^worker \([0-9]*\): echo-server: listening on port '"$PORT"',.*/\1/p' \
  "$T/server.out")
IL_PIDS+=("${worker_pids[@]}") # killed on exit too, should the parent be killed
ok "$WORKERS workers listen on port $PORT: ${worker_pids[*]}"

start_clients 127.0.0.1 "$PORT"
wait_connected || finish
sleep 2 # steady echoing

# The worker of each client: the one whose "connected" line has its port.
# worker_of PORT [N]: the pid of the worker that logged PORT's Nth connection.
worker_of() {
  sed -n 's/^worker \([0-9]*\): \[[^]]*\]:'"$1"' connected.*/\1/p' "$T/server.out" | sed -n "${2:-1}p"
}
declare -A first=() count=()
for ((i = 1; i <= FLEET_CLIENTS; i++)); do
  w=$(worker_of "$(client_port "client$i")")
  first[client$i]=$w
  count[$w]=$((${count[$w]:-0} + 1))
done
victim='' spread=''
for w in "${worker_pids[@]}"; do
  spread="$spread $w=${count[$w]:-0}"
  if [ -z "$victim" ] || [ "${count[$w]:-0}" -gt "${count[$victim]:-0}" ]; then victim=$w; fi
done
echo "# clients per worker:$spread; killing $victim"
if [ "${count[$victim]}" -eq "$FLEET_CLIENTS" ]; then
  not_ok "the kernel spreads the clients over the workers" "all $FLEET_CLIENTS on $victim"
  finish
fi

# The workers' statistics just before the kill (the parent passes SIGUSR1 on).
signal server USR1
# shellcheck disable=SC2317 # called by poll
stats_printed() { [ "$(grep -c 'echo-server: stats:' "$T/server.out")" = "$WORKERS" ]; }
poll "$IL_WAIT" stats_printed || not_ok "the workers print their statistics on SIGUSR1" "@$T/server.out"
before_lines=$(wc -l <"$T/server.out")

kill_ms=$(now_ms)
kill -KILL "$victim"
orphaned=()
for ((i = 1; i <= FLEET_CLIENTS; i++)); do
  [ "${first[client$i]}" = "$victim" ] && orphaned+=("client$i")
done

# Clients the rehash moved between survivors come back as fast as the dead
# worker's, and the rest must stay undisturbed.
wait_served_again "$kill_ms" "${orphaned[@]}"

# Who moved: a client with a handshake after the kill, or a gap across it.
moved=() stayed=() rehashed=() times=() late=() bad=() lost_moved=()
for ((i = 1; i <= FLEET_CLIENTS; i++)); do
  c=client$i
  r=$(recovery_ms "$c" "$kill_ms")
  if [ -z "$r" ] && [ "$(client_sum "$c" handshakes)" = 1 ] && [ "${first[$c]}" != "$victim" ]; then
    stayed+=("$c")
    continue
  fi
  moved+=("$c")
  [ "${first[$c]}" != "$victim" ] && rehashed+=("$c")
  lost_moved+=("$(client_sum "$c" lost)")
  if [ -z "$r" ]; then
    late+=("$c: never")
  else
    times+=("$r")
    [ "$r" -le "$FLEET_BOUND_MS" ] || late+=("$c: $r ms")
  fi
  [ "$(client_sum "$c" handshakes)" = 2 ] && [ "$(client_sum "$c" resumed)" = 1 ] ||
    bad+=("$c: $(grep ' sent=' "$T/$c.out")")
done
echo "# moved: ${#moved[@]} clients, ${#orphaned[@]} of the dead worker and ${#rehashed[@]} of a survivor" \
  "(the kernel's hash over two sockets instead of three)"
echo "# served again after the kill, ms: $(summarize "${times[@]}")"
echo "# echoes the moved clients lost: $(summarize "${lost_moved[@]}")"
if [ ${#late[@]} -eq 0 ]; then
  ok "the ${#moved[@]} clients that moved were served again within $FLEET_BOUND_MS ms of the kill"
else
  not_ok "the ${#moved[@]} clients that moved were served again within $FLEET_BOUND_MS ms of the kill" "${late[@]}"
fi
if [ ${#bad[@]} -eq 0 ]; then
  ok "each client that moved made one handshake after the kill, and it resumed"
else
  not_ok "each client that moved made one handshake after the kill, and it resumed" "${bad[@]}"
fi

# The moved peers' handshakes as the surviving workers logged them.
full=0 resumed=0
for c in "${moved[@]}"; do
  line=$(tail -n +$((before_lines + 1)) "$T/server.out" | grep -E "\]:$(client_port "$c") connected" | head -n 1)
  case $line in
  *"connected, resumed"*) resumed=$((resumed + 1)) ;;
  *connected*) full=$((full + 1)) ;;
  esac
done
echo "# handshakes of the moved peers on the surviving workers: $full full, $resumed resumed"
if [ "$full" = 0 ] && [ "$resumed" = ${#moved[@]} ]; then
  ok "the surviving workers logged a resumed handshake, and no full one, for each moved peer"
else
  not_ok "the surviving workers logged a resumed handshake, and no full one, for each moved peer" \
    "full: $full, resumed: $resumed, moved: ${#moved[@]}"
fi

bad=()
for c in "${stayed[@]}"; do
  [ "$(client_sum "$c" lost)" = 0 ] && ! grep -q ' gap_ms=' "$T/$c.out" ||
    bad+=("$c: $(grep -e ' sent=' -e ' gap_ms=' "$T/$c.out")")
done
if [ ${#bad[@]} -eq 0 ]; then
  ok "the ${#stayed[@]} clients that did not move saw nothing: no echo lost, no gap, no handshake"
else
  not_ok "the ${#stayed[@]} clients that did not move saw nothing" "${bad[@]}"
fi
if [ -n "$CLIENT_STATUS" ]; then
  not_ok "every client exits 0 on SIGTERM, with its summary" "$CLIENT_STATUS"
else
  ok "every client exits 0 on SIGTERM, with its summary"
fi

# The parent passes SIGTERM on; the workers print their statistics again.
signal server TERM
wait_exit server
if grep -q "^echo-server: worker $victim killed by signal 9$" "$T/server.out" && [ "$IL_STATUS" = 1 ] &&
  [ "$(grep -c '^echo-server: worker [0-9]* exited with status 0$' "$T/server.out")" = $((WORKERS - 1)) ]; then
  ok "the parent reports the killed worker, the others exit 0 on SIGTERM, and so does it (status 1: one was killed)"
else
  not_ok "the parent reports the killed worker and the others exit 0 on SIGTERM" "status ${IL_STATUS:-(running)}" \
    "@$T/server.out" "@$T/server.err"
fi
# From the statistics: handshakes after the kill, full and resumed.
f=0 r=0
for w in "${worker_pids[@]}"; do
  [ "$w" = "$victim" ] && continue
  file=$T/worker-$w.stats
  grep "^worker $w: echo-server: stats:" "$T/server.out" >"$file"
  f=$((f + $(stats "$file" 2 handshakes_ok) - $(stats "$file" 1 handshakes_ok)))
  r=$((r + $(stats "$file" 2 handshakes_resumed) - $(stats "$file" 1 handshakes_resumed)))
done
echo "# the surviving workers' statistics after the kill: $((f - r)) full handshakes, $r resumed"
if [ $((f - r)) = 0 ] && [ "$r" = ${#moved[@]} ]; then
  ok "the surviving workers' statistics count ${#moved[@]} resumed handshakes after the kill and no full one"
else
  not_ok "the surviving workers' statistics count ${#moved[@]} resumed handshakes after the kill and no full one" \
    "full: $((f - r)), resumed: $r"
fi

left=()
for pid in "${IL_PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null && left+=("$pid: $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)")
done
if [ ${#left[@]} -eq 0 ]; then
  ok "no process left: clients, workers and their parent all gone"
else
  not_ok "no process left" "${left[@]}"
fi
check_sanitizers
finish

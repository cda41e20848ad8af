#!/bin/sh
# The example servers under load: the demo (eight concurrent clients, 20
# echoes each, one server socket) against the blocking echo-server, the
# edge-triggered epoll one and the libevent one, which wait on
# dtlsplex_event_fd alone.  The libevent example is built when libevent is
# found: without it the run skips it, except in CI, where it fails.
set -u
: "${top_builddir:=.}" "${top_srcdir:=.}"
failed=0
servers="echo-server echo-server-epoll"
if [ -x "$top_builddir/examples/echo-server-libevent" ]; then
  servers="$servers echo-server-libevent"
elif [ "${CI:-}" = true ] || [ "${DTLSPLEX_REQUIRE_INTEROP:-}" = 1 ]; then
  echo "not ok - echo-server-libevent was not built (libevent-dev missing?); this is CI"
  failed=1
else
  echo "ok - echo-server-libevent # SKIP libevent not found"
fi
for server in $servers; do
  if timeout 120 sh "$top_srcdir/examples/demo.sh" "$top_builddir/examples" "$server" > "examples-$server.out" 2>&1; then
    echo "ok - $server: $(tail -n 1 "examples-$server.out")"
  else
    echo "not ok - $server:"
    sed 's/^/#   /' "examples-$server.out"
    failed=1
  fi
  rm -f "examples-$server.out"
done
exit $failed

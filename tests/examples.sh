#!/bin/sh
# The example servers under load: the demo (eight concurrent clients, 20
# echoes each, one server socket) against the blocking echo-server and the
# edge-triggered epoll one, which waits on dtlsplex_event_fd alone.
set -u
: "${top_builddir:=.}" "${top_srcdir:=.}"
failed=0
for server in echo-server echo-server-epoll; do
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

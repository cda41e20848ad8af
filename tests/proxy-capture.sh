#!/bin/bash
# No plaintext between the two proxies: tcpdump captures loopback while
# dig asks through dtlsproxy --client and dtlsproxy in front of dnsmasq.
# The DTLS leg (the server proxy's port) must carry none of the test zone's
# names, TXT data or AAAA address bytes; the backend leg (dnsmasq's port),
# the control, carries them all.  One line per check; exits 1 if any
# failed, 77 (outside CI) without root, tcpdump, dnsmasq or dig.
# shellcheck source=tests/interop-lib.sh
. "$(dirname "$0")/interop-lib.sh"
# shellcheck source=tests/proxy-lib.sh
. "$(dirname "$0")/proxy-lib.sh"

require_root "tcpdump needs root to capture"
require_prog tcpdump
proxy_setup
start_dns
# shellcheck disable=SC2119 # the proxies' defaults: no options to add
start_proxies
T=$IL_TMP

spawn tcpdump tcpdump -i lo -n --immediate-mode -U -w "$T/all.pcap" \
  "udp port $SERVER_PORT or udp port $DNS_PORT"
if ! wait_for "$T/tcpdump.err" "listening on lo"; then
  not_ok "tcpdump captures on lo" "@$T/tcpdump.err"
  finish
fi
answered=0
for q in "alpha.$ZONE A" "alpha.$ZONE AAAA" "note.$ZONE TXT" "host1.$ZONE A" "host2.$ZONE A"; do
  read -r name type <<<"$q"
  ask "$CLIENT_PORT" "$name" "$type" | grep -q -v '^;' && answered=$((answered + 1))
done
if [ "$answered" = 5 ]; then
  ok "5 queries answered through the proxies while tcpdump captures"
else
  not_ok "5 queries answered through the proxies while tcpdump captures" "answered: $answered" \
    "@$T/dtlsproxy-cli.err" "@$T/dtlsproxy-srv.err"
fi
if ! interrupt tcpdump; then
  not_ok "tcpdump stops on SIGINT" "@$T/tcpdump.err"
  finish
fi
tcpdump -n -r "$T/all.pcap" -w "$T/dtls.pcap" "udp port $SERVER_PORT" 2>/dev/null
tcpdump -n -r "$T/all.pcap" -w "$T/backend.pcap" "udp port $DNS_PORT" 2>/dev/null

# holds FILE: what of the zone FILE holds, as words: its names (the label
# "proxytest"), the TXT data, the AAAA address's 16 bytes.
holds() {
  local found=()
  grep -qaF proxytest "$1" && found+=(names)
  grep -qaF "$ZONE_TXT" "$1" && found+=(txt)
  # Bytes as " xx" each, so that a match starts on a byte.
  od -An -v -tx1 "$1" | tr -s ' \n' '  ' | grep -qF " $ZONE_AAAA_HEX " && found+=(aaaa)
  echo "${found[*]}"
}
packets() { tcpdump -n -r "$1" 2>/dev/null | wc -l; }

n=$(packets "$T/dtls.pcap")
leak=$(holds "$T/dtls.pcap")
if [ "$n" -ge 10 ] && [ -z "$leak" ]; then
  ok "the DTLS leg ($n packets) holds none of the zone's names, TXT data or address bytes"
else
  not_ok "the DTLS leg holds none of the zone's names, TXT data or address bytes" \
    "packets: $n (expected at least 10)" "found in the clear: ${leak:-nothing}"
fi
n=$(packets "$T/backend.pcap")
seen=$(holds "$T/backend.pcap")
if [ "$seen" = "names txt aaaa" ]; then
  ok "control: the backend leg ($n packets) holds them all in the clear"
else
  not_ok "control: the backend leg holds the zone's names, TXT data and address bytes" \
    "found: ${seen:-nothing}" "packets: $n"
fi
stop dtlsproxy-cli 2
stop dtlsproxy-srv 2
stop dnsmasq
finish

#!/usr/bin/env bash
# ttm demo: a full-NAT LB hides each client's address; the server still
# sees it. Everything runs in two network namespaces and a cgroup of this
# script's own, and is removed on exit, even on failure or Ctrl-C.
#
#   client netns (the "LB", 198.18.0.2 / fd00:7474::2)
#        |  veth: every connection's 3rd ACK carries the real client,
#        |  put there by `ttmctl simulate` as a full-NAT LB would
#   server netns (198.18.0.1 / fd00:7474::1)
#        an unmodified Python server (the vendor's example, ported to
#        Python 3), running as nobody, in a cgroup where `ttmctl load`
#        attached ttm's eBPF programs
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates namespaces and loads eBPF)" >&2; exit 1; }
. scripts/lib/topo.sh
[ -x "$TTMCTL" ] || cargo build -q -p ttmctl
PORT=8080

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say "topology: client/LB netns <-veth-> server netns, a cgroup for each"
topo_up ttmdemo
echo "   $NS_C (198.18.0.2, fd00:7474::2)  <->  $NS_S (198.18.0.1, fd00:7474::1), cgroups in $CG"

say "ttmctl load: attach ttm to the server's cgroup only"
"$TTMCTL" load --cgroup "$CG/server" --pin-dir "$PIN" --trust 198.18.0.2/32 --trust fd00:7474::2/128

say "the vendor's Python example, unmodified logic, as user nobody, listening on AF_INET 0.0.0.0:$PORT"
OUT=$(mktemp); chmod 644 "$OUT"
run_in "$NS_S" "$CG/server" setpriv --reuid nobody --regid nogroup --clear-groups \
  "$PY" -u examples/python/server.py 0.0.0.0 "$PORT" >"$OUT" 2>&1 &
for _ in $(seq 50); do grep -q READY "$OUT" 2>/dev/null && break; sleep 0.1; done

connect() { # claim, description
  say "LB forwards a client $2: it claims $1"
  "$TTMCTL" simulate start --cgroup "$CG/client" --pin-dir "$PIN_LB" --client "$1" >/dev/null
  run_in "$NS_C" "$CG/client" "$PY" -c '
import socket
s = socket.create_connection(("198.18.0.1", '"$PORT"'), timeout=5)
s.sendall(b"hello\n"); s.recv(100); s.close()'
  sleep 0.3
  tail -n +1 "$OUT" | grep -v READY | tail -n 6 | sed 's/^/   server| /'
  : > "$OUT"
}
connect 203.0.113.7:4242 "over IPv4 (4to4)"
connect '[2001:db8::7]:4343' "over IPv6 (6to4: IPv6 client, IPv4 between LB and server)"

say "what the kernel side counted"
"$TTMCTL" status --pin-dir "$PIN"
say "done; tearing everything down"

#!/usr/bin/env bash
# Per-connection cost of ttm's sockops parser against a do-nothing sockops
# program attached to the same cgroup, priced by bpf_stats on the same
# connections in the same run. Prints one table.
#   scripts/bench-bpf.sh [CONNECTIONS]   (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-bpf: run as root" >&2; exit 1; }
N=${1:-5000}
. scripts/lib/topo.sh
[ -x "$TTMCTL" ] || cargo build -q -p ttmctl

WORK=$(mktemp -d)
OLD_STATS=$(sysctl -n kernel.bpf_stats_enabled)
bench_down() {
  sysctl -qw kernel.bpf_stats_enabled="$OLD_STATS"
  [ -n "${NOOP_PIN:-}" ] && { bpftool cgroup detach "$CG/server" sock_ops pinned "$NOOP_PIN" 2>/dev/null; rm -f "$NOOP_PIN"; }
  topo_down
  rm -rf "$WORK"
}
topo_up ttmbench
trap bench_down EXIT

clang -O2 -g -target bpf -I/usr/include/"$(uname -m)"-linux-gnu -c bpf/bench_noop.bpf.c -o "$WORK/noop.o"
"$TTMCTL" load --cgroup "$CG/server" --pin-dir "$PIN" >/dev/null
NOOP_PIN=$PIN-noop
bpftool prog load "$WORK/noop.o" "$NOOP_PIN" type sockops
bpftool cgroup attach "$CG/server" sock_ops pinned "$NOOP_PIN" multi
"$TTMCTL" simulate start --cgroup "$CG/client" --pin-dir "$PIN_LB" --client 203.0.113.7 >/dev/null

run_in "$NS_S" "$CG/server" "$PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.0.1", 9000)); s.listen(1024); print("READY", flush=True)
for _ in range('"$N"'):
    c, _ = s.accept(); c.close()
' > "$WORK/server.out" &
SERVER=$!
for _ in $(seq 50); do grep -q READY "$WORK/server.out" && break; sleep 0.1; done

sysctl -qw kernel.bpf_stats_enabled=1
run_in "$NS_C" "$CG/client" "$PY" -c '
import socket
for _ in range('"$N"'):
    s = socket.create_connection(("198.18.0.1", 9000), timeout=5); s.recv(1); s.close()
'
wait "$SERVER"
sysctl -qw kernel.bpf_stats_enabled=0

prog_stats() { # prog id -> "run_cnt run_time_ns"
  bpftool prog show id "$1" --json | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d.get("run_cnt",0), d.get("run_time_ns",0))'
}
PARSE_ID=$("$TTMCTL" status --pin-dir "$PIN" --json | "$PY" -c 'import json,sys; print([p["id"] for p in json.load(sys.stdin)["programs"] if p["name"]=="ttm_parse"][0])')
NOOP_ID=$(bpftool prog show pinned "$NOOP_PIN" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
FOUND=$("$TTMCTL" status --pin-dir "$PIN" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["counters"]["found_v4"])')
read -r P_CNT P_NS <<<"$(prog_stats "$PARSE_ID")"
read -r N_CNT N_NS <<<"$(prog_stats "$NOOP_ID")"

"$PY" - "$N" "$FOUND" "$P_CNT" "$P_NS" "$N_CNT" "$N_NS" <<'PYEOF'
import sys
n, found, pc, pns, nc, nns = map(int, sys.argv[1:])
print(f"\nsockops cost, {n} connections (options parsed and stored: {found}); kernel.bpf_stats_enabled=1")
print(f"{'program':<22}{'runs':>8}{'runs/conn':>11}{'ns/run':>9}{'ns/conn':>9}")
for name, c, ns in (("ttm_parse", pc, pns), ("do-nothing sockops", nc, nns)):
    print(f"{name:<22}{c:>8}{c/n:>11.2f}{ns/max(c,1):>9.0f}{ns/n:>9.0f}")
print(f"ratio ttm_parse / do-nothing, per connection: {pns/max(nns,1):.2f}x (target <= 2x)")
PYEOF

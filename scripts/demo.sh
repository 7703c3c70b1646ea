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
  "$PY" -u examples/python/server.py 0.0.0.0 "$PORT" >>"$OUT" 2>&1 &
for _ in $(seq 50); do grep -q "listening on" "$OUT" 2>/dev/null && break; sleep 0.1; done

# claim PORT_ON_SERVER: the LB's next connections claim CLAIM
claim() { "$TTMCTL" simulate start --cgroup "$CG/client" --pin-dir "$PIN_LB" --client "$1" >/dev/null; }
# request PORT [HTTP]: one connection from the client side
request() {
  run_in "$NS_C" "$CG/client" "$PY" -c '
import socket, sys
s = socket.create_connection(("198.18.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GET / HTTP/1.0\r\n\r\n" if len(sys.argv) > 2 else b"hello\n")
print(s.recv(200).decode(errors="replace").strip().splitlines()[-1]); s.close()' "$@"
}
show() { sleep 0.3; grep -av "listening on" "$1" | sed 's/^/   server| /'; : > "$1"; }

say "4to4: the LB forwards IPv4 client 203.0.113.7:4242"
claim 203.0.113.7:4242; request "$PORT" >/dev/null; show "$OUT"
echo "   -> accept(), getpeername() and the vendor's getsockopt all give the real client, in-kernel"

say "6to4: IPv6 client [2001:db8::7]:4343, IPv4 between LB and server"
claim '[2001:db8::7]:4343'; request "$PORT" >/dev/null; show "$OUT"
echo "   -> an AF_INET sockaddr cannot hold IPv6: accept() keeps the LB address; getsockopt 1345 has the client"

say "stock nginx (Debian's, unpatched), one dual-stack listener, \$remote_addr in its log"
NGX=$(mktemp -d); chmod 755 "$NGX"
cat > "$NGX/nginx.conf" <<NGINX
daemon off; master_process off; pid $NGX/nginx.pid; error_log $NGX/error.log;
events { worker_connections 64; }
http {
  access_log $NGX/access.log;
  client_body_temp_path $NGX; proxy_temp_path $NGX; fastcgi_temp_path $NGX; uwsgi_temp_path $NGX; scgi_temp_path $NGX;
  server { listen [::]:8081 ipv6only=off; location / { return 200 "nginx saw \$remote_addr\n"; } }
}
NGINX
run_in "$NS_S" "$CG/server" /usr/sbin/nginx -c "$NGX/nginx.conf" -e "$NGX/error.log" &
for _ in $(seq 50); do request 8081 http >/dev/null 2>&1 && break; sleep 0.1; done
: > "$NGX/access.log"
for c in 203.0.113.7:4242 '[2001:db8::7]:4343'; do
  claim "$c"; printf '   client| %s -> ' "$c"; request 8081 http
done
sleep 0.2; sed 's/^/   nginx access.log| /' "$NGX/access.log"
echo "   -> no module, no shim: the dual-stack socket lets the kernel give nginx both clients"

LIBTTM=${LIBTTM:-$PWD/target/debug/libttm.so}
if [ -e "$LIBTTM" ]; then
  say "the C example on an AF_INET listener, preloaded with libttm.so: 6to4 widened to sockaddr_in6"
  gcc -O2 -Wall -Iinclude -o "$NGX/server" examples/c/server.c -ldl
  COUT=$NGX/c.out; : > "$COUT"
  run_in "$NS_S" "$CG/server" env LD_PRELOAD="$LIBTTM" TTM_BPF_MAP="$PIN/ttm_peers" \
    "$NGX/server" -b 0.0.0.0 -n 1 8082 >>"$COUT" 2>&1 &
  claim '[2001:db8::7]:4343'
  for _ in $(seq 50); do request 8082 >/dev/null 2>&1 && break; sleep 0.1; done
  show "$COUT"
fi

say "what the kernel side counted"
"$TTMCTL" status --pin-dir "$PIN"
say "done; tearing everything down"
rm -rf "$NGX" "$OUT"

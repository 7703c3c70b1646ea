#!/usr/bin/env bash
# What ttm costs per connection, side by side with no ttm. `make bench`.
#
# Everything runs in the netns/cgroup topology of scripts/lib/topo.sh: the
# client ("LB", 198.18.0.2) connects through veth to the server
# (198.18.0.1), and `ttmctl simulate` writes the real client into every
# third ACK, as a full-NAT LB does, in EVERY mode (the LB is always there;
# only ttm comes and goes). Modes, measured in the same run, round-robin
# (each repetition starts one mode later: every mode takes every position):
#   base      no ttm: nothing loaded on the server side, no preload
#   lib-none  libttm.so preloaded, nothing installed (backend "none")
#   kernel    ttmctl load on the server cgroup
#   lib-kmod  kernel side + libttm.so, TTM_BACKEND=kmod (getsockopt 1345)
#   lib-bpf   kernel side + libttm.so, TTM_BACKEND=bpf (asks getsockopt 1345 too)
# Phases, in this order (the exact, low-noise ones first, so that the time
# limit can only trim repetitions of the long throughput ones):
#   bpf     ns per connection of every ttm program (bpf_stats), next to a
#           do-nothing sockops (bpf/bench_noop.bpf.c); ttm_parse's halves
#           apart (bpf/bench_parts.bpf.c)
#   hook    one hooked call timed: getpeername() in a tight loop
#   sys     syscalls per accepted connection (strace), TCP and AF_UNIX
#   mem     kernel memory per open connection, 50 000 held; SK_STORAGE
#           left after they close (bpf_iter, bpf/bench_count.bpf.c)
#   accept  accept loop: bench/accept_server.c (accept4 + sockaddr_storage,
#           close) driven by bench/connect_client.c, 1 and 8 threads:
#           conn/s and CPU time per connection
#   nginx   Debian's nginx (own config, AF_INET) + wrk: Connection: close
#           and keep-alive, req/s and CPU time per request; also with the
#           kernel side loaded without ttm_deferred (kernel-nodefer)
#   estab   established traffic: one long iperf3 stream (Debian's iperf3),
#           Gbit/s and CPU per GB, base / kernel / kernel-nodefer; then
#           ttm_deferred's bpf_stats per received segment, bulk and
#           keep-alive
#   variants  other designs of the per-connection work, side by side with
#           ttm_parse in the accept loop and in bpf_stats (issue 13):
#           var-core (ttm_parse + getsockopt only), var-hash (sockops, a
#           preallocated hash by socket cookie instead of SK_STORAGE),
#           var-fexit (fexit on tcp_v4/v6_syn_recv_sock + SK_STORAGE);
#           bpf/bench_variants.bpf.c
# Prints ONE table (markdown) on stdout, from bench/report.py; progress goes
# to stderr. Cleans up everything on any exit (topo_down, pins, sysctl).
#
#   scripts/bench.sh            full run, < 20 min
#   QUICK=1 scripts/bench.sh    smoke run, ~2 min
#
# Knobs (environment; defaults full / QUICK):
#   BENCH_N=20000/2000        short connections per accept-loop run
#   BENCH_CONC=8              client threads of the concurrent accept loop
#   BENCH_REPS=5/3            repetitions of every mode
#   BENCH_NGINX_SECS=4/1      wrk duration per run
#   BENCH_ESTAB_SECS=4/1      iperf3 duration per run
#   BENCH_WRK_CONNS=16        wrk connections (1 wrk thread; nginx has 1 worker)
#   BENCH_BPF_N=5000/1000     connections per bpf_stats pass
#   BENCH_BPF_REPS=3/1        bpf_stats passes of each kind
#   BENCH_SYS_N=2000/300      connections counted under strace
#   BENCH_MEM_CONNS=50000/5000 connections held open for the memory figure
#   BENCH_MEM_REPS=2/1
#   BENCH_HOOK_CONNS=10/5     connections per hooked-call run, each timing
#   BENCH_HOOK_LOOPS=20000/5000  that many getpeername() calls (BENCH_REPS runs)
#   BENCH_PHASES="accept nginx bpf hook sys mem estab variants"  which phases to run
#   BENCH_NICE=0              nice value for servers and clients
#   BENCH_CPUS=<last CPU>     taskset CPU list for servers and clients ("" = none)
#   BENCH_KEEP=1              keep the work directory (raw results)
#   BENCH_TIME_LIMIT=1200/300 seconds; later repetitions are skipped past
#                             90% of it, everything is killed at 100%
#   BENCH_OUT=FILE            also write the table there
#   TTMCTL=PATH LIBTTM=PATH   use these binaries (no cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (namespaces, cgroups, eBPF)" >&2; exit 1; }

QUICK=${QUICK:-0}
q() { if [ "$QUICK" = 1 ]; then echo "$2"; else echo "$1"; fi; }
N=${BENCH_N:-$(q 20000 2000)}
CONC=${BENCH_CONC:-8}
REPS=${BENCH_REPS:-$(q 5 3)}
NGINX_SECS=${BENCH_NGINX_SECS:-$(q 4 1)}
ESTAB_SECS=${BENCH_ESTAB_SECS:-$(q 4 1)}
WRK_CONNS=${BENCH_WRK_CONNS:-16}
BPF_N=${BENCH_BPF_N:-$(q 5000 1000)}
BPF_REPS=${BENCH_BPF_REPS:-$(q 3 1)}
SYS_N=${BENCH_SYS_N:-$(q 2000 300)}
MEM_CONNS=${BENCH_MEM_CONNS:-$(q 50000 5000)}
MEM_REPS=${BENCH_MEM_REPS:-$(q 2 1)}
HOOK_CONNS=${BENCH_HOOK_CONNS:-$(q 10 5)}
HOOK_LOOPS=${BENCH_HOOK_LOOPS:-$(q 20000 5000)}
LIMIT=${BENCH_TIME_LIMIT:-$(q 1200 300)}
NICE=${BENCH_NICE:-0}
# Servers and clients share one CPU: a connection's whole cost (both ends,
# softirqs included) lands on it, with no cross-CPU wakeups (IPIs, costly
# and erratic in a VM) whose number would depend on where the scheduler
# happened to put the two ends. Empty: no pinning.
CPUS=${BENCH_CPUS-$(($(nproc) - 1))}
PHASES=" ${BENCH_PHASES:-accept nginx bpf hook sys mem estab variants} "
phase() { [[ $PHASES == *" $1 "* ]]; }
SOFT=$((LIMIT * 9 / 10))
PY=/usr/bin/python3
START=$SECONDS

say() { printf 'bench: [%4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
fail() { echo "bench: $*" >&2; exit 1; }
for tool in gcc clang bpftool nsenter ss strace wrk iperf3 /usr/sbin/nginx; do
  command -v "$tool" >/dev/null || fail "$tool missing: run scripts/deps.sh (scripts/deps/bench.list)"
done

# ---- build -----------------------------------------------------------------
if [ -z "${TTMCTL:-}" ] || [ -z "${LIBTTM:-}" ]; then
  say "cargo build --release (ttmctl, libttm.so)"
  cargo build --release --quiet -p ttmctl -p ttm
  TD=$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  TTMCTL=${TTMCTL:-$TD/release/ttmctl}
  LIBTTM=${LIBTTM:-$TD/release/libttm.so}
fi
TTMCTL=$(realpath "$TTMCTL") LIBTTM=$(realpath "$LIBTTM")
[ -x "$TTMCTL" ] && [ -f "$LIBTTM" ] || fail "no $TTMCTL or $LIBTTM"

WORK=$(mktemp -d /tmp/ttm-bench.XXXXXX)
chmod 755 "$WORK"
say "compiling the bench programs into $WORK"
gcc -O2 -Wall -o "$WORK/accept_server" bench/accept_server.c -ldl
gcc -O2 -Wall -pthread -o "$WORK/connect_client" bench/connect_client.c
ARCH_INC=/usr/include/$(gcc -dumpmachine)
clang -O2 -g -target bpf -I"$ARCH_INC" -c bpf/bench_noop.bpf.c -o "$WORK/noop.bpf.o"
clang -O2 -g -target bpf -I"$ARCH_INC" -c bpf/bench_noop_skb.bpf.c -o "$WORK/noop_skb.bpf.o"
clang -O2 -g -target bpf -I"$ARCH_INC" -Ibpf -c bpf/bench_parts.bpf.c -o "$WORK/parts.bpf.o"
clang -O2 -g -target bpf -I"$ARCH_INC" -c bpf/bench_count.bpf.c -o "$WORK/count.bpf.o"
# tcp_v4_syn_recv_sock's argument count on this kernel (an fexit program's
# return value comes after its arguments).
bpftool btf dump file /sys/kernel/btf/vmlinux format raw >"$WORK/vmlinux.btf" 2>/dev/null || :
proto=$(sed -n "s/.*FUNC 'tcp_v4_syn_recv_sock' type_id=\([0-9]*\).*/\1/p" "$WORK/vmlinux.btf" | head -1)
SYN_RECV_ARGS=$(sed -n "s/^\[${proto:-x}\] FUNC_PROTO .* vlen=\([0-9]*\).*/\1/p" "$WORK/vmlinux.btf")
rm -f "$WORK/vmlinux.btf"
for v in FEXIT HASH; do
  clang -O2 -g -target bpf -I"$ARCH_INC" -Ibpf -DBENCH_$v -DSYN_RECV_ARGS="${SYN_RECV_ARGS:-6}" \
    -c bpf/bench_variants.bpf.c -o "$WORK/variant_${v,,}.bpf.o"
done

# ---- topology and teardown --------------------------------------------------
. scripts/lib/topo.sh
OLD_STATS=$(sysctl -n kernel.bpf_stats_enabled)
XPIN= WATCHDOG= ATTACHED=() TABLE_DONE=0 RES= META=
bench_down() {
  set +e
  sysctl -qw kernel.bpf_stats_enabled="$OLD_STATS"
  if [ -n "$WATCHDOG" ]; then
    kill $(ps -o pid= --ppid "$WATCHDOG") "$WATCHDOG" 2>/dev/null
  fi
  for p in "${ATTACHED[@]}"; do bpftool cgroup detach "$CG/server" "${p%%:*}" pinned "${p#*:}" 2>/dev/null; done
  topo_down
  [ -n "$XPIN" ] && rm -rf "$XPIN"
  # Stopped early (time limit, signal, error): still show what was measured.
  if [ "$TABLE_DONE" = 0 ] && [ -s "${RES:-}" ]; then
    meta skipped "everything after $((SECONDS - START)) s: the run was stopped"
    "$PY" bench/report.py "$RES" "$META" | tee "${BENCH_OUT:-/dev/null}"
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap bench_down EXIT
say "topology up"
topo_up ttmb
trap bench_down EXIT # topo_up installs topo_down; ours calls it
XPIN=$PIN-extra
mkdir -p "$XPIN"

# Hard limit: kill what runs in our cgroups (unblocks any wait), then us.
# (Past the limit already, after a slow build: at once. sleep refuses a
# negative time, and the watchdog would never fire.)
(
  left=$((LIMIT - (SECONDS - START)))
  sleep "$((left > 0 ? left : 0))"
  echo "bench: time limit (${LIMIT}s) reached; stopping" >&2
  topo_kill 2>/dev/null
  kill -TERM $$
) &
WATCHDOG=$!

# "${IN_SRV[@]}" CMD... &: run_in as a plain command, so that $! is the
# command's own pid (a backgrounded shell function would be a subshell).
RUN=(nice -n "$NICE")
[ -z "$CPUS" ] || RUN+=(taskset -c "$CPUS")
IN_SRV=(sh -c 'cg=$0 ns=$1; shift; echo $$ > "$cg/cgroup.procs" && exec nsenter --net="/run/netns/$ns" -- "$@"' "$CG/server" "$NS_S" "${RUN[@]}")
IN_CLI=(sh -c 'cg=$0 ns=$1; shift; echo $$ > "$cg/cgroup.procs" && exec nsenter --net="/run/netns/$ns" -- "$@"' "$CG/client" "$NS_C" "${RUN[@]}")
in_s() { nsenter --net="/run/netns/$NS_S" -- "$@"; }
in_c() { nsenter --net="/run/netns/$NS_C" -- "$@"; }
# More client addresses (each has its own ephemeral ports) and a wider range.
SRCS=198.18.0.2
for i in 3 4 5 6; do ip -n "$NS_C" addr add "198.18.0.$i/24" dev "$VETH_C"; SRCS=$SRCS,198.18.0.$i; done
in_c sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
"$TTMCTL" simulate start --cgroup "$CG/client" --pin-dir "$PIN_LB" --client 203.0.113.7 >/dev/null

RES=$WORK/results.tsv META=$WORK/meta.tsv
: >"$RES"
: >"$META"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
# rec KIND KEY MODE REP VALUE [NOTE]
rec() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >>"$RES"; }
FAILED=0
bad() { echo "bench: FAILED: $*" >&2; FAILED=$((FAILED + 1)); }
soft_ok() { [ $((SECONDS - START)) -lt "$SOFT" ]; }
skipped() { meta skipped "$1 (time limit)"; say "time: skipping $1"; }

# What is loaded: 0 nothing, 1 the kernel side as packaged, nodefer
# without ttm_deferred, core with only ttm_parse and ttm_getsockopt.
KLOADED=0
set_kernel() {
  [ "$1" = "$KLOADED" ] && return
  local flags=()
  case $1 in
    0) "$TTMCTL" unload --pin-dir "$PIN" >/dev/null; KLOADED=0; return ;;
    nodefer) flags=(--no-defer-accept) ;;
    core) flags=(--no-defer-accept --no-rewrite) ;;
  esac
  # A load on a loaded pin dir replaces the set.
  "$TTMCTL" load --cgroup "$CG/server" --pin-dir "$PIN" "${flags[@]}" >/dev/null
  KLOADED=$1
}
MODES=(base lib-none kernel lib-kmod lib-bpf)
mode_kernel() {
  case $1 in
    kernel | lib-kmod | lib-bpf) echo 1 ;;
    kernel-nodefer) echo nodefer ;;
    var-core) echo core ;;
    *) echo 0 ;;
  esac
}
expect_backend() { case $1 in lib-none) echo none ;; lib-kmod) echo kmod ;; lib-bpf) echo bpf ;; *) echo - ;; esac; }
# ENVV: the server's environment for a mode.
set_env() {
  case $1 in
    base | kernel | kernel-nodefer | var-*) ENVV=() ;;
    # Nothing loaded: auto finds no map (our pin dir is empty), no module.
    lib-none) ENVV=("LD_PRELOAD=$LIBTTM" "TTM_BPF_MAP=$PIN/ttm_peers") ;;
    lib-kmod) ENVV=("LD_PRELOAD=$LIBTTM" TTM_BACKEND=kmod) ;;
    lib-bpf) ENVV=("LD_PRELOAD=$LIBTTM" TTM_BACKEND=bpf "TTM_BPF_MAP=$PIN/ttm_peers") ;;
    *) fail "unknown mode $1" ;;
  esac
}
order() { # order REP [MODE...]: the modes (default MODES), rotated by
  # REP (a Latin square over as many repetitions as modes: every mode
  # takes every position once, so slow swings in the machine's load do
  # not favour one mode)
  local rep=$1; shift
  local modes=("$@")
  [ $# -gt 0 ] || modes=("${MODES[@]}")
  local i n=${#modes[@]}
  for ((i = 0; i < n; i++)); do echo "${modes[$(((i + rep) % n))]}"; done
}
wait_line() { # FILE REGEX SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
wait_exit() { # PID SECONDS: its status, or 124 after killing it
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null && return 0 || return $?; }
    sleep 0.1
  done
  kill "$1" 2>/dev/null; wait "$1" 2>/dev/null
  return 124
}
PORT=10000
# start_server OUT ARGS...: accept_server in the server netns+cgroup, env ENVV; sets SPID
start_server() {
  local out=$1; shift
  "${IN_SRV[@]}" env "${ENVV[@]}" "$WORK/accept_server" "$@" >"$out" 2>&1 &
  SPID=$!
  wait_line "$out" '^READY' 15 || { kill "$SPID" 2>/dev/null; return 1; }
}
# CPU time (usec) used so far by everything in our two cgroups: the
# scheduler's own count, so time spent waiting for a CPU that other
# tenants hold is not in it (softirq work done in our tasks' context is).
cpu_us() { echo $(($(awk '/^usage_usec/{print $2}' "$CG/server/cpu.stat") + $(awk '/^usage_usec/{print $2}' "$CG/client/cpu.stat"))); }
client() { "${IN_CLI[@]}" "$WORK/connect_client" "$@"; }

meta cpu "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
meta nproc "$(nproc)"
meta kernel "$(uname -srm)"
meta load "$(cut -d' ' -f1-3 /proc/loadavg)"
meta params "N=$N conc=$CONC reps=$REPS nginx_secs=$NGINX_SECS wrk_conns=$WRK_CONNS bpf_n=$BPF_N x$BPF_REPS hook=${HOOK_CONNS}x$HOOK_LOOPS sys_n=$SYS_N mem_conns=$MEM_CONNS x$MEM_REPS nice=$NICE cpus=${CPUS:-all} quick=$QUICK"
meta versions "$("$TTMCTL" --version); $(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //'); $(wrk --version 2>&1 | awk 'NR==1{print $1, $2}')"

# ---- 1. accept loop -----------------------------------------------------------
accept_run() { # MODE CONC REP [KIND]: recorded as KIND (accept) and KINDcpu
  local mode=$1 conc=$2 rep=$3 kind=${4:-accept} out res rate errors
  PORT=$((PORT + 1)); out=$WORK/accept.$PORT
  set_kernel "$(mode_kernel "$mode")"; set_env "$mode"
  start_server "$out" -a 198.18.0.1 -p "$PORT" -n "$N" -t 180 || { bad "accept server ($mode) did not start: $(cat "$out")"; return; }
  local backend; backend=$(sed -n 's/^READY backend=//p' "$out")
  [ "$backend" = "$(expect_backend "$mode")" ] || bad "mode $mode: libttm backend is '$backend', expected '$(expect_backend "$mode")'"
  local cpu0; cpu0=$(cpu_us)
  res=$(client -a 198.18.0.1 -p "$PORT" -n "$N" -c "$conc" -t 180) || true
  wait_exit "$SPID" 15 || bad "accept server ($mode, c=$conc) did not finish: $(tail -1 "$out")"
  rec "${kind}cpu" "c$conc" "$mode" "$rep" "$(awk -v a="$cpu0" -v b="$(cpu_us)" -v n="$N" 'BEGIN{printf "%.2f", (b - a) / n}')"
  rate=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' <<<"$res"); errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$res")
  if [ -z "$rate" ] || [ "${errors:-1}" != 0 ]; then bad "accept client ($mode, c=$conc): '$res'"; rate=${rate:-nan}; fi
  rec "$kind" "c$conc" "$mode" "$rep" "$rate" "backend=$backend errors=${errors:-?}"
}
run_accept() {
  for ((rep = 0; rep < REPS; rep++)); do
    phase accept || break
    if [ "$rep" -gt 0 ] && ! soft_ok; then skipped "accept reps $rep.."; break; fi
    say "accept loop, repetition $((rep + 1))/$REPS ($N connections, 1 and $CONC client threads)"
    for mode in $(order "$rep"); do
      accept_run "$mode" 1 "$rep"
      accept_run "$mode" "$CONC" "$rep"
    done
  done
}

# ---- 2. nginx + wrk ----------------------------------------------------------------
# nginx_start MODE: Debian's nginx in the server namespace and cgroup, as
# MODE wants the kernel side and environment; sets NGX_PID, NGX_PORT.
nginx_start() {
  local mode=$1 d
  PORT=$((PORT + 1)); NGX_PORT=$PORT; d=$WORK/nginx.$PORT; mkdir -p "$d"
  set_kernel "$(mode_kernel "$mode")"; set_env "$mode"
  cat >"$d/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $d/nginx.pid; error_log $d/error.log error;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d; uwsgi_temp_path $d; scgi_temp_path $d;
  keepalive_requests 1000000;
  server { listen 198.18.0.1:$PORT backlog=4096; location / { return 200 "ok\n"; } }
}
NGINX
  "${IN_SRV[@]}" env "${ENVV[@]}" /usr/sbin/nginx -c "$d/nginx.conf" -e "$d/error.log" >"$d/out" 2>&1 &
  NGX_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do in_s ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
  if ! kill -0 "$NGX_PID" 2>/dev/null || [ "$i" = 100 ]; then bad "nginx ($mode) did not start: $(cat "$d/out" "$d/error.log" 2>/dev/null)"; kill "$NGX_PID" 2>/dev/null; return 1; fi
  if [ "${#ENVV[@]}" -gt 0 ] && ! grep -q libttm "/proc/$NGX_PID/maps"; then bad "nginx ($mode): libttm.so not mapped"; fi
}
nginx_stop() { kill -QUIT "$NGX_PID" 2>/dev/null; wait_exit "$NGX_PID" 10 || true; }
# wrk_run KIND: wrk against the running nginx for NGINX_SECS, KIND close
# (Connection: close) or keepalive; sets WRK_OUT.
wrk_run() {
  local hdr=()
  [ "$1" = close ] && hdr=(-H "Connection: close")
  WRK_OUT=$("${IN_CLI[@]}" timeout $((NGINX_SECS + 30)) wrk -t1 -c"$WRK_CONNS" -d"${NGINX_SECS}s" "${hdr[@]}" "http://198.18.0.1:$NGX_PORT/" 2>&1) || true
}
nginx_run() { # MODE REP
  local mode=$1 rep=$2
  nginx_start "$mode" || return
  local kind out rps errs
  for kind in close keepalive; do
    local cpu0; cpu0=$(cpu_us)
    wrk_run "$kind"; out=$WRK_OUT
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
    errs=$(awk '/Socket errors:/{gsub(",",""); print $4+$6+$8+$10} /Non-2xx/{print "non2xx:"$NF}' <<<"$out" | paste -sd' ')
    [ -n "$rps" ] || { bad "wrk ($mode, $kind): $out"; rps=nan; }
    rec nginx "$kind" "$mode" "$rep" "$rps" "${errs:+socket errors $errs}"
    local reqs; reqs=$(awk '/requests in/{print $1}' <<<"$out")
    [ -n "$reqs" ] && rec nginxcpu "$kind" "$mode" "$rep" "$(awk -v a="$cpu0" -v b="$(cpu_us)" -v n="$reqs" 'BEGIN{printf "%.2f", (b - a) / n}')"
  done
  nginx_stop
}
run_nginx() {
  for ((rep = 0; rep < REPS; rep++)); do
    phase nginx || break
    if [ "$rep" -gt 0 ] && ! soft_ok; then skipped "nginx reps $rep.."; break; fi
    say "nginx + wrk, repetition $((rep + 1))/$REPS (${NGINX_SECS}s Connection: close, ${NGINX_SECS}s keep-alive per mode)"
    for mode in $(order "$rep" "${MODES[@]}" kernel-nodefer); do nginx_run "$mode" "$rep"; done
  done
}

# ---- 3. BPF program cost (bpf_stats) ---------------------------------------
if phase bpf; then
  bpftool prog load "$WORK/noop.bpf.o" "$XPIN/noop" type sockops
  bpftool prog loadall "$WORK/parts.bpf.o" "$XPIN/parts" type sockops
fi
attach() { # PIN [ATTACH_TYPE, default sock_ops]
  local t=${2:-sock_ops}
  bpftool cgroup attach "$CG/server" "$t" pinned "$1" multi; ATTACHED+=("$t:$1")
}
detach_all() {
  local p
  for p in "${ATTACHED[@]}"; do bpftool cgroup detach "$CG/server" "${p%%:*}" pinned "${p#*:}"; done
  ATTACHED=()
}
stats() { # "name run_cnt run_time_ns" for every program of interest
  if [ "$KLOADED" != 0 ]; then
    "$TTMCTL" status --pin-dir "$PIN" --json | "$PY" -c '
import json, sys
for p in json.load(sys.stdin)["programs"]:
    print(p["name"], p.get("run_cnt") or 0, p.get("run_time_ns") or 0)'
  fi
  local p
  for p in "$XPIN/noop" "$XPIN/parts/bench_parse_only" "$XPIN/parts/bench_storage_only" "$XPIN/noop_skb"; do
    [ -e "$p" ] || continue
    bpftool prog show pinned "$p" --json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(sys.argv[1], d.get("run_cnt", 0), d.get("run_time_ns", 0))' "$(basename "$p")"
  done
}
bpf_pass() { # ttm|parts REP
  local pass=$1 rep=$2 out res
  PORT=$((PORT + 1)); out=$WORK/bpf.$PORT
  if [ "$pass" = ttm ]; then
    set_kernel 1; set_env lib-kmod # kmod: one getsockopt per accept, so ttm_getsockopt runs too
    attach "$XPIN/noop"
  else
    set_kernel 0; set_env base
    attach "$XPIN/noop"; attach "$XPIN/parts/bench_parse_only"; attach "$XPIN/parts/bench_storage_only"
  fi
  start_server "$out" -a 198.18.0.1 -p "$PORT" -n "$BPF_N" -t 120 || { bad "bpf server did not start"; detach_all; return; }
  stats >"$WORK/stats.before"
  sysctl -qw kernel.bpf_stats_enabled=1
  res=$(client -a 198.18.0.1 -p "$PORT" -n "$BPF_N" -c 1 -t 120) || bad "bpf client: $res"
  sysctl -qw kernel.bpf_stats_enabled="$OLD_STATS"
  wait_exit "$SPID" 15 || bad "bpf server did not finish"
  stats >"$WORK/stats.after"
  detach_all
  "$PY" - "$WORK/stats.before" "$WORK/stats.after" "$BPF_N" "$pass" "$rep" >>"$RES" <<'PYEOF'
import sys
before = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1]) if l.strip()}
after = {l.split()[0]: l.split()[1:] for l in open(sys.argv[2]) if l.strip()}
n, pas, rep = int(sys.argv[3]), sys.argv[4], sys.argv[5]
for name, (c1, t1) in after.items():
    c0, t0 = before.get(name, ("0", "0"))
    cnt, ns = int(c1) - int(c0), int(t1) - int(t0)
    if cnt <= 0:
        continue
    print(f"bpf\t{pas}\t{name}\t{rep}\t{ns / n:.1f}\truns/conn={cnt / n:.2f}")
PYEOF
}
run_bpf() {
  for ((rep = 0; rep < BPF_REPS; rep++)); do
    phase bpf || break
    if [ "$rep" -gt 0 ] && ! soft_ok; then skipped "bpf_stats reps $rep.."; break; fi
    say "bpf_stats, repetition $((rep + 1))/$BPF_REPS ($BPF_N connections per pass)"
    if [ $((rep % 2)) = 0 ]; then bpf_pass ttm "$rep"; bpf_pass parts "$rep"; else bpf_pass parts "$rep"; bpf_pass ttm "$rep"; fi
  done
}

# ---- 4. one hooked call, timed: getpeername() in a tight loop ---------------
hook_run() { # MODE REP
  local mode=$1 rep=$2 out res
  PORT=$((PORT + 1)); out=$WORK/hook.$PORT
  set_kernel "$(mode_kernel "$mode")"; set_env "$mode"
  start_server "$out" -a 198.18.0.1 -p "$PORT" -n "$HOOK_CONNS" -g "$HOOK_LOOPS" -t 120 || { bad "hook server ($mode) did not start"; return; }
  res=$(client -a 198.18.0.1 -p "$PORT" -n "$HOOK_CONNS" -c 1 -t 120) || bad "hook client ($mode): $res"
  wait_exit "$SPID" 30 || bad "hook server ($mode) did not finish"
  local line; line=$(grep '^GETPEERNAME' "$out") || { bad "hook ($mode): no timing: $(cat "$out")"; return; }
  rec hook getpeername "$mode" "$rep" "$(sed 's/.*min_ns=\([0-9.]*\).*/\1/' <<<"$line")" "median ${line##*median_ns=} ns"
}
run_hook() {
  for ((rep = 0; rep < REPS; rep++)); do
    phase hook || break
    if [ "$rep" -gt 0 ] && ! soft_ok; then skipped "hooked-call reps $rep.."; break; fi
    say "hooked call, repetition $((rep + 1))/$REPS ($HOOK_CONNS connections x $HOOK_LOOPS getpeername calls)"
    for mode in $(order "$rep"); do hook_run "$mode" "$rep"; done
  done
}

# ---- 5. syscalls per accepted connection (strace) ---------------------------
sys_case() { # KEY FAMILY MODE
  local key=$1 fam=$2 mode=$3 out tr res
  PORT=$((PORT + 1)); out=$WORK/sys.$PORT; tr=$WORK/strace.$PORT
  set_kernel 1
  [ "$mode" = lib-none ] && set_kernel 0
  set_env "$mode"
  local addr=(-a 198.18.0.1 -p "$PORT") e=()
  [ "$fam" = unix ] && addr=(-u "$WORK/unix.$PORT")
  for v in "${ENVV[@]}"; do e+=(-E "$v"); done
  "${IN_SRV[@]}" strace -f -qq -o "$tr" "${e[@]}" "$WORK/accept_server" "${addr[@]}" -n "$SYS_N" -t 120 >"$out" 2>&1 &
  SPID=$!
  wait_line "$out" '^READY' 20 || { bad "strace server ($key) did not start: $(cat "$out")"; kill "$SPID"; return; }
  res=$(client "${addr[@]}" -n "$SYS_N" -c 1 -t 120) || bad "syscall client ($key): $res"
  wait_exit "$SPID" 30 || bad "strace server ($key) did not finish"
  local backend; backend=$(sed -n 's/^READY backend=//p' "$out")
  "$PY" - "$tr" "$SYS_N" "$key" "$backend" >>"$RES" <<'PYEOF'
import re, sys, collections
path, n, key, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
calls, inside = collections.Counter(), False
for line in open(path, errors="replace"):
    m = re.match(r"^\d+\s+(\w+)\((.*)", line)
    if not m:
        continue
    name, rest = m.groups()
    if name == "write" and rest.startswith('1, "READY'):
        inside = True
        continue
    if name == "write" and rest.startswith('1, "DONE'):
        break
    if inside:
        calls[name] += 1
total = sum(calls.values())
detail = ", ".join(f"{k} {v / n:.2f}" for k, v in calls.most_common())
print(f"sys\t{key}\t{key}\t0\t{total / n:.3f}\tbackend={backend}; {detail}")
PYEOF
}
run_sys() {
  if ! phase sys; then :
  elif soft_ok; then
    say "syscalls per accepted connection: strace over $SYS_N connections per case"
    sys_case tcp-nolib tcp base
    sys_case tcp-lib-none tcp lib-none
    sys_case tcp-lib-bpf tcp lib-bpf
    sys_case tcp-lib-kmod tcp lib-kmod
    sys_case unix-nolib unix base
    sys_case unix-lib-bpf unix lib-bpf
    sys_case unix-lib-kmod unix lib-kmod
  else skipped syscalls; fi
}

# ---- 6. kernel memory per open connection --------------------------------------
snap() { cat /proc/slabinfo >"$1.slab"; cat /proc/meminfo >"$1.mem"; }
# Held connections per process pair: up to RLIMIT_NOFILE's hard limit
# (raising it needs CAP_SYS_RESOURCE, which a container may not have).
HARD=$(ulimit -Hn)
PER_PROC=${BENCH_MEM_PER_PROC:-$MEM_CONNS}
[ "$HARD" = unlimited ] || [ "$PER_PROC" -le $((HARD - 100)) ] || PER_PROC=$((HARD - 100))
mem_run() { # base|kernel REP
  local mode=$1 rep=$2 rel s k i n left=$MEM_CONNS first=$((PORT + 1))
  k=$(((MEM_CONNS + PER_PROC - 1) / PER_PROC))
  PORT=$((PORT + k)); rel=$WORK/release.$first s=$WORK/snap.$first
  set_kernel "$(mode_kernel "$mode")"; set_env base
  # ttm's live SK_STORAGE elements, counted by a bpf_iter over ttm_peers.
  local iter=$XPIN/count_$first e0=- e1=- e2=-
  elements() { sed -n 's/^elements //p' "$iter"; }
  if [ "$KLOADED" != 0 ]; then
    bpftool iter pin "$WORK/count.bpf.o" "$iter" map pinned "$PIN/ttm_peers"
    e0=$(elements)
  fi
  sleep 1
  snap "$s.0"
  local pids=() outs=()
  for ((i = 0; i < k; i++)); do
    n=$((left < PER_PROC ? left : PER_PROC)); left=$((left - n))
    start_server "$WORK/memsrv.$first.$i" -a 198.18.0.1 -p $((first + i)) -n "$n" -H -R "$rel" -t 300 ||
      { bad "memory server did not start: $(cat "$WORK/memsrv.$first.$i")"; break; }
    pids+=("$SPID"); outs+=("$WORK/memsrv.$first.$i")
    "${IN_CLI[@]}" "$WORK/connect_client" -a 198.18.0.1 -p $((first + i)) -n "$n" -H -R "$rel" -s "$SRCS" -t 300 >"$WORK/memcli.$first.$i" 2>&1 &
    pids+=($!); outs+=("$WORK/memcli.$first.$i")
  done
  local ok=1 o
  [ "${#outs[@]}" = $((2 * k)) ] || ok=0
  for o in "${outs[@]}"; do [ "$ok" = 1 ] && { wait_line "$o" '^HELD' 240 || ok=0; }; done
  if [ "$ok" = 1 ]; then
    sleep 1
    snap "$s.1"
    [ "$KLOADED" != 0 ] && e1=$(elements)
  else
    bad "memory ($mode): connections not all open: $(cat "${outs[@]}")"
  fi
  local omem
  omem=$(in_s ss -tmnH state established | "$PY" -c '
import re, sys
vals = [int(m.group(1)) for m in re.finditer(r"skmem:\([^)]*?,o(\d+)", sys.stdin.read())]
print(f"{sum(vals) / max(len(vals), 1):.1f} {len(vals)}")')
  touch "$rel"
  for o in "${pids[@]}"; do wait_exit "$o" 60 || { bad "memory: a holder did not close"; ok=0; }; done
  sleep 3 # RCU frees sockets (and their SK_STORAGE) after a grace period
  snap "$s.2"
  if [ "$KLOADED" != 0 ]; then e2=$(elements); rm -f "$iter"; fi
  [ "$ok" = 1 ] || return 0
  rec mem open "$mode" "$rep" "$s" "$MEM_CONNS"
  [ "$KLOADED" != 0 ] && rec mem storage "$mode" "$rep" "$e1" "before=$e0 after=$e2"
  rec mem omem "$mode" "$rep" "${omem% *}" "over ${omem#* } sockets"
}
run_mem() {
  for ((rep = 0; rep < MEM_REPS; rep++)); do
    phase mem || break
    if ! soft_ok; then skipped "memory reps $rep.."; break; fi
    say "kernel memory, repetition $((rep + 1))/$MEM_REPS ($MEM_CONNS connections held open)"
    if [ $((rep % 2)) = 0 ]; then mem_run base "$rep"; mem_run kernel "$rep"; else mem_run kernel "$rep"; mem_run base "$rep"; fi
  done
}
# ---- 7. established traffic ----------------------------------------------------
ESTAB_MODES=(base kernel kernel-nodefer)
# Segments the server's namespace received (/proc/net/snmp Tcp InSegs).
in_segs() { in_s awk '$1 == "Tcp:" && $2 ~ /^[0-9]/ {print $11}' /proc/net/snmp; }
# iperf_run MODE: one iperf3 stream, client to server, ESTAB_SECS long;
# sets IPERF_GBPS, IPERF_MS_GB (CPU of both cgroups per GB received) and
# IPERF_SEGS (segments the server received; with TSO over veth one can
# carry up to 64 KiB).
iperf_run() {
  local mode=$1 out res
  PORT=$((PORT + 1)); out=$WORK/iperf.$PORT
  set_kernel "$(mode_kernel "$mode")"; set_env "$mode"
  "${IN_SRV[@]}" iperf3 -s -1 -B 198.18.0.1 -p "$PORT" >"$out" 2>&1 &
  local spid=$! i
  for ((i = 0; i < 100; i++)); do in_s ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
  [ "$i" != 100 ] || { bad "iperf3 server ($mode) did not start: $(cat "$out")"; kill "$spid"; return 1; }
  local cpu0 segs0 cpu1 segs1 bytes
  cpu0=$(cpu_us); segs0=$(in_segs)
  res=$("${IN_CLI[@]}" iperf3 -c 198.18.0.1 -p "$PORT" -t "$ESTAB_SECS" -J 2>&1) || true
  cpu1=$(cpu_us); segs1=$(in_segs)
  wait_exit "$spid" 15 || bad "iperf3 server ($mode) did not finish"
  bytes=$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])' <<<"$res" 2>/dev/null) ||
    { bad "iperf3 client ($mode): $res"; return 1; }
  IPERF_SEGS=$((segs1 - segs0)) IPERF_BYTES=$bytes
  IPERF_GBPS=$(awk -v b="$bytes" -v t="$ESTAB_SECS" 'BEGIN{printf "%.2f", b * 8 / t / 1e9}')
  IPERF_MS_GB=$(awk -v c=$((cpu1 - cpu0)) -v b="$bytes" 'BEGIN{printf "%.1f", c / 1000 / (b / 1e9)}')
}
# prog_delta BEFORE AFTER NAME: "runs ns" of NAME between two stats files.
prog_delta() {
  awk -v p="$3" 'FNR == 1 {f++} $1 == p {c[f] += $2; t[f] += $3} END{print c[2] - c[1], t[2] - t[1]}' "$1" "$2"
}
# ttm_deferred's bpf_stats over one run of KIND (bulk: iperf3; keepalive:
# nginx + wrk), per segment the server received, beside a do-nothing
# cgroup_skb program on the same segments.
deferred_pass() { # KIND
  local kind=$1 segs0 segs1 runs ns nruns nns
  set_kernel 1
  [ -e "$XPIN/noop_skb" ] || bpftool prog load "$WORK/noop_skb.bpf.o" "$XPIN/noop_skb" type cgroup/skb
  attach "$XPIN/noop_skb" ingress
  if [ "$kind" = keepalive ]; then nginx_start kernel || { detach_all; return; }; fi
  stats >"$WORK/stats.before"; segs0=$(in_segs)
  sysctl -qw kernel.bpf_stats_enabled=1
  if [ "$kind" = keepalive ]; then wrk_run keepalive; else iperf_run kernel || true; fi
  sysctl -qw kernel.bpf_stats_enabled="$OLD_STATS"
  stats >"$WORK/stats.after"; segs1=$(in_segs)
  if [ "$kind" = keepalive ]; then nginx_stop; fi
  detach_all
  read -r runs ns < <(prog_delta "$WORK/stats.before" "$WORK/stats.after" ttm_deferred)
  read -r nruns nns < <(prog_delta "$WORK/stats.before" "$WORK/stats.after" noop_skb)
  [ "${runs:-0}" -gt 0 ] && [ "${nruns:-0}" -gt 0 ] || { bad "ttm_deferred or the do-nothing program did not run ($kind)"; return; }
  local reqs=0
  [ "$kind" = keepalive ] && reqs=$(awk '/requests in/{print $1}' <<<"$WRK_OUT")
  rec perseg "$kind" ttm_deferred 0 "$(awk -v n="$ns" -v r="$runs" 'BEGIN{printf "%.1f", n / r}')" \
    "runs=$runs segments=$((segs1 - segs0)) requests=${reqs:-0}"
  rec perseg "$kind" noop_skb 0 "$(awk -v n="$nns" -v r="$nruns" 'BEGIN{printf "%.1f", n / r}')" \
    "runs=$nruns segments=$((segs1 - segs0))"
}
run_estab() {
  phase estab || return 0
  for ((rep = 0; rep < REPS; rep++)); do
    if [ "$rep" -gt 0 ] && ! soft_ok; then skipped "established-traffic reps $rep.."; break; fi
    say "established traffic, repetition $((rep + 1))/$REPS (one iperf3 stream, ${ESTAB_SECS}s per mode)"
    for mode in $(order "$rep" "${ESTAB_MODES[@]}"); do
      iperf_run "$mode" || continue
      rec bulk gbps "$mode" "$rep" "$IPERF_GBPS" "segments=$IPERF_SEGS bytes=$IPERF_BYTES"
      rec bulkcpu gb "$mode" "$rep" "$IPERF_MS_GB"
    done
  done
  if soft_ok; then
    say "ttm_deferred per received segment (bpf_stats): bulk, keep-alive"
    deferred_pass bulk
    deferred_pass keepalive
  else skipped "ttm_deferred per segment"; fi
}

# ---- 8. per-connection design variants ----------------------------------------
VAR_MODES=(base var-core var-hash var-fexit)
VAR_REFUSED=" "
# The variants' config: the default formats, the server cgroup's id (its
# inode number on cgroup2) for the tracing one.
var_cfg() { # MAPDIR
  bpftool map update pinned "$1/bench_cfg" key 0 0 0 0 value \
    $("$PY" -c 'import struct, sys; print(*struct.pack("<IIQ", 7, 0, int(sys.argv[1])))' "$(stat -c %i "$CG/server")")
}
var_on() { # MODE: its programs loaded and attached, or 1 (said why once)
  local d=$XPIN/$1 err
  case $1 in
    var-hash)
      mkdir -p "$d"
      err=$(bpftool prog loadall "$WORK/variant_hash.bpf.o" "$d/p" type sockops pinmaps "$d/m" 2>&1) &&
        var_cfg "$d/m" && attach "$d/p/bench_hash" && return 0 ;;
    var-fexit)
      mkdir -p "$d/l"
      err=$(bpftool prog loadall "$WORK/variant_fexit.bpf.o" "$d/p" pinmaps "$d/m" 2>&1) && var_cfg "$d/m" &&
        err=$("$PY" bench/attach_tracing.py "$d/p/bench_fexit_v4" "$d/l/v4" 2>&1) &&
        err=$("$PY" bench/attach_tracing.py "$d/p/bench_fexit_v6" "$d/l/v6" 2>&1) && return 0 ;;
    *) return 0 ;;
  esac
  rm -rf "$d"
  if [[ $VAR_REFUSED != *" $1 "* ]]; then
    VAR_REFUSED+="$1 "
    meta skipped "$1: this kernel refused its programs ($(grep -m1 -iE 'error|failed' <<<"$err" | tr '\t' ' '))"
    say "$1 refused by this kernel: $(grep -m1 -iE 'error|failed' <<<"$err")"
  fi
  return 1
}
var_off() { detach_all; rm -rf "$XPIN/$1"; }
# "name runs ns" of the variant's programs; found: claims stored so far.
var_stats() { # MODE
  local d=$XPIN/$1 p
  case $1 in
    var-core) stats | grep '^ttm_parse ' ;;
    var-hash | var-fexit)
      for p in "$d"/p/*; do
        bpftool prog show pinned "$p" -j | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(d["name"], d.get("run_cnt", 0), d.get("run_time_ns", 0))'
      done ;;
  esac
}
var_found() { # MODE
  case $1 in
    var-core) "$TTMCTL" status --pin-dir "$PIN" --json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["counters"]["found_v4"])' ;;
    *) bpftool map dump pinned "$XPIN/$1/m/bench_found" -j | "$PY" -c '
import json, sys
print(sum(v["value"] for e in json.load(sys.stdin) if e["formatted"]["key"] == 0 for v in e["formatted"]["values"]))' ;;
  esac
}
var_accept() { # MODE REP
  var_on "$1" || return 0
  accept_run "$1" 1 "$2" var
  var_off "$1"
}
var_bpf() { # MODE REP: ns and runs per connection, claims stored per connection
  local mode=$1 rep=$2 out res f0 f1 runs ns
  set_kernel "$(mode_kernel "$mode")"; set_env base
  var_on "$mode" || return 0
  PORT=$((PORT + 1)); out=$WORK/varbpf.$PORT
  start_server "$out" -a 198.18.0.1 -p "$PORT" -n "$BPF_N" -t 120 || { bad "variant server did not start"; var_off "$mode"; return; }
  var_stats "$mode" >"$WORK/stats.before"; f0=$(var_found "$mode")
  sysctl -qw kernel.bpf_stats_enabled=1
  res=$(client -a 198.18.0.1 -p "$PORT" -n "$BPF_N" -c 1 -t 120) || bad "variant client ($mode): $res"
  sysctl -qw kernel.bpf_stats_enabled="$OLD_STATS"
  wait_exit "$SPID" 15 || bad "variant server ($mode) did not finish"
  var_stats "$mode" >"$WORK/stats.after"; f1=$(var_found "$mode")
  var_off "$mode"
  read -r runs ns < <(awk 'FNR == 1 {f++} {c[f] += $2; t[f] += $3} END{print c[2] - c[1], t[2] - t[1]}' "$WORK/stats.before" "$WORK/stats.after")
  rec varbpf ns "$mode" "$rep" "$(awk -v n="$ns" -v c="$BPF_N" 'BEGIN{printf "%.1f", n / c}')" \
    "runs/conn=$(awk -v r="$runs" -v c="$BPF_N" 'BEGIN{printf "%.2f", r / c}') found/conn=$(awk -v a="$f0" -v b="$f1" -v c="$BPF_N" 'BEGIN{printf "%.2f", (b - a) / c}')"
}
run_variants() {
  phase variants || return 0
  for ((rep = 0; rep < BPF_REPS; rep++)); do
    if [ "$rep" -gt 0 ] && ! soft_ok; then skipped "variant bpf_stats reps $rep.."; break; fi
    say "variants: bpf_stats, repetition $((rep + 1))/$BPF_REPS ($BPF_N connections each)"
    for mode in $(order "$rep" var-core var-hash var-fexit); do var_bpf "$mode" "$rep"; done
  done
  for ((rep = 0; rep < REPS; rep++)); do
    if [ "$rep" -gt 0 ] && ! soft_ok; then skipped "variant accept reps $rep.."; break; fi
    say "variants: accept loop, repetition $((rep + 1))/$REPS ($N connections, 1 client thread)"
    for mode in $(order "$rep" "${VAR_MODES[@]}"); do var_accept "$mode" "$rep"; done
  done
}

# The low-noise, exact phases first; the long throughput phases last, so
# that the time limit can only trim their repetitions.
for p in bpf hook sys mem variants estab accept nginx; do "run_$p"; done
set_kernel 0

# ---- the table --------------------------------------------------------------------
meta elapsed "$((SECONDS - START))"
say "done in $((SECONDS - START))s; $FAILED failure(s)"
TABLE_DONE=1
"$PY" bench/report.py "$RES" "$META" | tee "${BENCH_OUT:-/dev/null}"
[ "$FAILED" = 0 ] || { echo "bench: $FAILED measurement(s) failed (see above)" >&2; exit 1; }

# Sourced by scripts/*.sh: a client ("LB") and a server network namespace
# joined by veth, a cgroup of our own for each side, and a teardown that
# runs on any exit. Needs root.
#
#   topo_up NAME     sets NS_S NS_C CG PIN PIN_LB and builds everything
#                    server 198.18.0.1 fd00:7474::1, client 198.18.0.2 fd00:7474::2
#   run_in NS CGROUP CMD...   runs CMD inside that namespace and cgroup
#   topo_down        kills, unloads, removes (also installed as the EXIT trap)

TTMCTL=${TTMCTL:-target/debug/ttmctl}
PY=/usr/bin/python3

topo_up() {
  local name=$1 id=$$
  NS_S=$name-s-$id NS_C=$name-c-$id
  local cg2
  cg2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
  [ -n "$cg2" ] || { echo "no cgroup2 mount in /proc/mounts" >&2; return 1; }
  CG=$cg2/$name-$id
  PIN=/sys/fs/bpf/$name-$id PIN_LB=/sys/fs/bpf/$name-lb-$id
  VETH_S=${name:0:5}s$id VETH_C=${name:0:5}c$id
  trap topo_down EXIT
  trap 'exit 130' INT TERM
  ip netns add "$NS_S"; ip netns add "$NS_C"
  ip link add "$VETH_S" netns "$NS_S" type veth peer name "$VETH_C" netns "$NS_C"
  ip -n "$NS_S" addr add 198.18.0.1/24 dev "$VETH_S"
  ip -n "$NS_C" addr add 198.18.0.2/24 dev "$VETH_C"
  ip -n "$NS_S" addr add fd00:7474::1/64 dev "$VETH_S" nodad
  ip -n "$NS_C" addr add fd00:7474::2/64 dev "$VETH_C" nodad
  for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_S" link set "$VETH_S" up
  ip -n "$NS_C" link set "$VETH_C" up
  mkdir -p "$CG/server" "$CG/client"
  # Pins go under /sys/fs/bpf: on a fresh host it is an empty sysfs
  # directory until something mounts bpffs there (ttmctl does, but the
  # scripts make their own pin directories before the first ttmctl run).
  awk '$2=="/sys/fs/bpf" && $3=="bpf"{f=1} END{exit !f}' /proc/mounts ||
    mount -t bpf bpf /sys/fs/bpf
}

# nsenter, not `ip netns exec`: the latter remounts /sys, hiding the
# cgroup2 and bpffs mounts the process needs to see.
run_in() {
  local ns=$1 cg=$2; shift 2
  sh -c 'cg=$0 ns=$1; shift; echo $$ > "$cg/cgroup.procs" && exec nsenter --net="/run/netns/$ns" -- "$@"' "$cg" "$ns" "$@"
}

# Kills what runs in the topology's cgroups, waiting (5 s at most) until
# nothing is left. cgroup.kill (5.14+) kills a whole cgroup at once; before
# it, the PIDs it lists are signalled until none is left (cgroupfs files
# have size 0, so read them, never test them with -s).
topo_kill() {
  local g left
  for _ in $(seq 50); do
    left=
    for g in "$CG/server" "$CG/client"; do
      if [ -e "$g/cgroup.kill" ]; then
        echo 1 > "$g/cgroup.kill" || true
      else
        xargs -r kill -KILL < "$g/cgroup.procs" 2>/dev/null || true
      fi
      [ -n "$(cat "$g/cgroup.procs" 2>/dev/null)" ] && left=1
    done
    [ -n "$left" ] || break
    sleep 0.1
  done
}

topo_down() {
  set +e
  [ -n "${CG:-}" ] || return 0
  topo_kill
  "$TTMCTL" simulate stop --pin-dir "$PIN_LB" >/dev/null 2>&1
  "$TTMCTL" unload --pin-dir "$PIN" >/dev/null 2>&1
  rmdir "$CG/server" "$CG/client" "$CG" 2>/dev/null ||
    echo "warning: could not remove $CG: $(cat "$CG"/*/cgroup.procs 2>/dev/null | wc -l) processes left in it" >&2
  ip netns del "$NS_S" 2>/dev/null
  ip netns del "$NS_C" 2>/dev/null
  CG=
}

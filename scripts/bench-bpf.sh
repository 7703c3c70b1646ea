#!/usr/bin/env bash
# Per-connection cost of ttm's sockops parser against a do-nothing sockops
# program attached to the same cgroup, priced by bpf_stats on the same
# connections in the same run: the bpf_stats phase of scripts/bench.sh
# (`make bench`), alone. Prints its table.
#   scripts/bench-bpf.sh [CONNECTIONS]   (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_PHASES=bpf BENCH_BPF_N=${1:-5000} exec scripts/bench.sh

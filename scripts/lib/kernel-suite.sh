#!/usr/bin/env bash
# One row of the kernel matrix: the tests that touch the kernel, run on the
# kernel this script runs on (the host's, or a VM's started by
# scripts/test-kernels.sh), as root, from binaries built beforehand: no
# cargo here. Prints each test's outcome and, per test, one line
#   ttm-kernels-result <name> <passed> <failed> <ok|FAILED> <seconds>
# which test-kernels.sh collects. Exit status 0 only if every test passed.
#
#   kernel-suite.sh RUN_DIR
#     RUN_DIR/tests   "<name> <test binary>" per line, from the host's build
#     RUN_DIR/env     sourced first (PATH, HOME of the host's user)
#     TESTS           names to run, in order (default: all below)
set -uo pipefail
cd "$(dirname "$0")/../.."
RUN_DIR=$1
# shellcheck source=/dev/null
[ -f "$RUN_DIR/env" ] && . "$RUN_DIR/env"
# The harness takes the binaries as built (tests/harness/binaries.rs).
export TTM_TEST_PREBUILT=1

# Every test, cheap ones first. NAME+compat runs test binary NAME with
# ttm_getsockopt_compat forced: the path kernels without bpf_set_retval
# (5.10-5.17) take, run wherever this runs.
ALL="ttmctl_cli harness_selftest kernel_side kernel_side+compat preload_e2e preload_e2e+compat operations detect demo compat"
TESTS=${TESTS:-$ALL}
ROW_TIMEOUT=${TTM_TEST_TIMEOUT:-1800}

# bpffs and veth: the host has both; a VM booted from a distribution
# kernel has veth as a module and nothing mounted on /sys/fs/bpf.
awk '$2=="/sys/fs/bpf" && $3=="bpf"{f=1} END{exit !f}' /proc/mounts ||
  mount -t bpf bpf /sys/fs/bpf || exit 1
modprobe veth 2>/dev/null # built in, or a module (with no index for it on some hosts)
unshare --net ip link add ttm-v0 type veth peer name ttm-v1 ||
  { echo "kernel-suite: this kernel cannot make veth pairs" >&2; exit 1; }

echo "kernel-suite: Linux $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/{print int($2/1024)" MiB"}' /proc/meminfo)"

binary() { awk -v n="$1" '$1==n{print $2}' "$RUN_DIR/tests"; }

# The test filters of a row (libtest runs the tests matching any). Only the
# getsockopt program differs in a +compat row: there, the kernel_side tests
# that check getsockopt's answers and refusals (1345 and 4096, every
# listener and claim family, nobody, TCP_DEFER_ACCEPT, reload, status).
filters() {
  case $1 in
    kernel_side+compat)
      echo four_to_four six_to_four six_to_six nat64_abi a_server_running_as_nobody \
        defer_accept_listeners load_reload_unload status_and_doctor getsockopt_variant
      ;;
  esac
}

failed_any=0
for t in $TESTS; do
  name=${t%+compat}
  envs=()
  [ "$t" != "$name" ] && envs=(TTM_TEST_GETSOCKOPT_COMPAT=1)
  bin=$(binary "$name")
  log=$(mktemp)
  start=$(date +%s)
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "kernel-suite: no test binary for $name in $RUN_DIR/tests" >"$log"
    rc=127
  else
    echo "kernel-suite: $t ..."
    # shellcheck disable=SC2046 # the filters are words
    timeout --kill-after=30 "$ROW_TIMEOUT" env "${envs[@]}" "$bin" $(filters "$t") >"$log" 2>&1
    rc=$?
  fi
  secs=$(($(date +%s) - start))
  # libtest's summary: "test result: ok. 18 passed; 0 failed; ..."
  read -r passed failed < <(awk '/^test result:/{for(i=1;i<=NF;i++){if($(i)~/^passed;?$/)p+=$(i-1); if($(i)~/^failed;?$/)f+=$(i-1)}} END{print p+0, f+0}' "$log")
  if [ "$rc" -eq 0 ] && [ "$passed" -gt 0 ]; then
    status=ok
    grep -E '^test result:' "$log"
  else
    status=FAILED
    failed_any=1
    [ "$failed" -gt 0 ] || failed=1
    [ "$rc" -eq 124 ] && echo "kernel-suite: $t killed after ${ROW_TIMEOUT}s"
    cat "$log"
  fi
  echo "ttm-kernels-result $t $passed $failed $status $secs"
  rm -f "$log"
done
exit "$failed_any"

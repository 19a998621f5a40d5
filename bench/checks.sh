#!/usr/bin/env bash
# What a user waits for when a lab checks itself, for one or more nsscript binaries
# side by side (runs interleaved), each run in its own private network/mount/PID
# namespace:
#   - seed004: `nsscript --sandbox scripts/seed004_bridge_short.rhai`, from start to a
#     verified lab (the script's checks pass, then it exits), wall time
#   - pingall30: pingall() on star(30) right after the build, timed around the call
#     inside the script (bench/pingall_wall.rhai)
# Prints median and worst per binary.
#   bash bench/checks.sh [--runs 20] BINARY [BINARY...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); top=$(dirname "$here")
runs=20
[ "${1:-}" = --runs ] && { runs=$2; shift 2; }
[ $# -gt 0 ] || set -- "$top/target/release/nsscript"
out=$(mktemp -d)
for r in $(seq "$runs"); do
  for bin in "$@"; do
    tag=$(echo "$bin" | md5sum | cut -c1-8)
    unshare --net --mount --pid --fork --mount-proc --propagation private bash -c '
      mount -t tmpfs tmpfs /run; ip link set lo up
      s=$(date +%s%N); "$1" "$2/scripts/seed004_bridge_short.rhai" >/dev/null 2>&1 || echo "seed004 failed" >&2
      echo $(( ($(date +%s%N) - s) / 1000000 )) >> "$3/$4.seed004"
      "$1" "$2/bench/pingall_wall.rhai" --var n=30 2>&1 | sed -n "s/.*pingall_wall_ms=\([0-9.]*\).*/\1/p" >> "$3/$4.pingall30"
      "$1" down pingall_wall >/dev/null 2>&1; "$1" down seed004_bridge_short >/dev/null 2>&1; true
    ' _ "$bin" "$top" "$out" "$tag"
  done
done
for bin in "$@"; do
  tag=$(echo "$bin" | md5sum | cut -c1-8)
  for what in seed004 pingall30; do
    python3 - "$out/$tag.$what" "$bin" "$what" <<'PY'
import statistics, sys
v = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
print(f"{sys.argv[3]:<10} {sys.argv[2]}: n={len(v)} median={statistics.median(v):.1f} ms worst={v[-1]:.1f} ms best={v[0]:.1f} ms")
PY
  done
done
rm -rf "$out"

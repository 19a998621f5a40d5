#!/usr/bin/env bash
# One command for a new user: install what is needed, build, and run real labs end to
# end inside the sandbox (a private network + mount namespace: the machine is untouched).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
nss=target/release/nsscript
for lab in scripts/seed004_bridge.rhai scripts/seed000_router.rhai; do
  [ -f "$lab" ] || continue
  echo "== $lab"
  "$nss" graph "$lab" 2>/dev/null || true    # the topology, drawn from the script alone
  "$nss" --sandbox "$lab"
done

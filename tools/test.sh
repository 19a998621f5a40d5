#!/usr/bin/env bash
# One command for the whole test suite: install what is needed, build, run every test.
# Each test runs the real binary inside its own `unshare --net --mount` namespace; the
# machine's own namespace must come out as it went in, which is checked at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
root_state() { ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; ip netns list; ls -A /run/netns 2>/dev/null || true; }
before=$(root_state)
status=0
cargo test --release --all-targets 2>&1 || status=$?
after=$(root_state)
if [ "$before" != "$after" ]; then
    echo "the tests changed the machine's own network namespace (links, namespaces):" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    [ "$status" = 0 ] && status=1
fi
exit "$status"

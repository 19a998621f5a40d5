#!/usr/bin/env bash
# One command for the whole test suite: install what is needed, build, run every test.
# Each test runs the real binary inside its own `unshare --net --mount` namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cargo test --release --all-targets 2>&1

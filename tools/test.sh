#!/usr/bin/env bash
# One command for the whole test suite: install what is needed, build, run every test.
#
# 1. As root: `cargo test --release --all-targets`. Each kernel test runs the real binary
#    inside its own `unshare --net --mount --pid` namespaces; the machine's own namespace
#    must come out as it went in, which is checked at the end.
# 2. As a user who is not root (nobody, without capabilities): the same test binaries,
#    already built. The tests that need no kernel objects (plan, graph, errors, the
#    command line) must pass; every kernel test must say `SKIPPED (needs root): ...`
#    and return, never fail. The SKIPPED lines are counted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
# jq reads cargo's JSON messages (where the test binaries are).
command -v jq >/dev/null 2>&1 || {
    echo "installing: jq" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends jq >/dev/null
}
root_state() { ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; ls -A /run/netns 2>/dev/null || true; }
before=$(root_state)
status=0
cargo test --release --all-targets 2>&1 || status=$?

# ---- the same binaries as a user who is not root --------------------------------------
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all)
unprivileged() {
    local top=$PWD bins lib unit f out
    bins=$(cargo test --release --all-targets --no-run --message-format=json 2>/dev/null |
        jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test)
               | "\(.target.name) \(.target.kind | join(",")) \(.executable)"')
    lib=$(awk '$1 == "lib" && $2 == "test" {print $3}' <<< "$bins")
    unit=$(awk '$1 == "nsscript" && $2 == "bin" {print $3}' <<< "$bins")
    if [ -z "$lib" ] || [ -z "$unit" ]; then
        echo "unprivileged run: cannot find the test binaries (lib: '$lib', unit tests of the bin: '$unit')" >&2
        echo "$bins" >&2
        return 1
    fi
    # The binaries read files of the repository (README.md, scripts/, tests/snapshots/)
    # by the paths compiled into them: the user must be able to reach and read them.
    for f in "$lib" "$unit" "$top/README.md" "$top/scripts" "$top/tests/snapshots" "$top/bench/soak.sh"; do
        if ! "${NOBODY[@]}" sh -c 'test -r "$1" && { [ ! -d "$1" ] || [ -x "$1" ]; }' sh "$f"; then
            echo "unprivileged run: user 65534 cannot read $f; every directory above it needs o+x and it o+r:" >&2
            namei -m "$f" >&2 || true
            return 1
        fi
    done
    # HOME and TMPDIR the user can write; insta neither writes snapshots nor runs cargo.
    local env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp TMPDIR=/tmp
        LANG=C.UTF-8 NO_COLOR=1 INSTA_UPDATE=no INSTA_WORKSPACE_ROOT="$top")
    out=$(mktemp -d)
    local rc=0
    echo "== unprivileged (uid 65534): unit tests of the nsscript binary"
    "${NOBODY[@]}" "${env[@]}" "$unit" > "$out/unit.out" 2>&1 || rc=$?
    tail -n 3 "$out/unit.out"
    if [ "$rc" != 0 ]; then echo "unprivileged run: the unit tests failed (exit $rc):" >&2; cat "$out/unit.out" >&2; rm -rf "$out"; return 1; fi
    echo "== unprivileged (uid 65534): integration tests ($lib)"
    rc=0
    "${NOBODY[@]}" "${env[@]}" "$lib" > "$out/lib.out" 2> "$out/lib.err" || rc=$?
    grep -E '^test result:' "$out/lib.out" || true
    if [ "$rc" != 0 ]; then
        echo "unprivileged run: the integration tests failed (exit $rc):" >&2
        cat "$out/lib.out" "$out/lib.err" >&2
        rm -rf "$out"; return 1
    fi
    local skipped passed
    skipped=$(grep -c '^SKIPPED (needs root): ' "$out/lib.err" || true)
    passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$out/lib.out" | tail -1)
    grep '^SKIPPED (needs root): ' "$out/lib.err" | sed 's/^/  /' | head -n 5
    [ "$skipped" -gt 5 ] && echo "  ... and $((skipped - 5)) more"
    echo "unprivileged: ${passed:-?} tests passed, of which $skipped are kernel tests that reported SKIPPED (needs root) and $(( ${passed:-0} - skipped )) ran"
    if grep -v '^SKIPPED (needs root): ' "$out/lib.err" | grep -q .; then
        echo "unprivileged run: other output on stderr:" >&2
        grep -v '^SKIPPED (needs root): ' "$out/lib.err" >&2
    fi
    if [ "$skipped" = 0 ]; then
        echo "unprivileged run: no kernel test reported itself skipped" >&2
        rm -rf "$out"; return 1
    fi
    rm -rf "$out"
}
if [ "$(id -u)" = 0 ]; then
    unprivileged || { [ "$status" = 0 ] && status=1; }
else
    echo "tools/test.sh: not root: the run above was the unprivileged one (its kernel tests said SKIPPED); run as root for all of them" >&2
fi

after=$(root_state)
if [ "$before" != "$after" ]; then
    echo "the tests changed the machine's own network namespace (links, namespaces):" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    [ "$status" = 0 ] && status=1
fi
exit "$status"

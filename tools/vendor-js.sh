#!/usr/bin/env bash
# Refreshes the JavaScript the live view embeds (src/ui/assets/vendor/): the npm
# registry's builds of cytoscape and its fCoSE layout, at the versions pinned below,
# copied unchanged with their licences. Not needed to build: the files are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=(cytoscape@3.35.0 cytoscape-fcose@2.2.0 cose-base@2.2.0 layout-base@2.0.1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund "${versions[@]}" >/dev/null)
out=src/ui/assets/vendor
m=$tmp/node_modules
cp "$m/cytoscape/dist/cytoscape.min.js" "$m/layout-base/layout-base.js" "$m/cose-base/cose-base.js" \
   "$m/cytoscape-fcose/cytoscape-fcose.js" "$out/"
for p in cytoscape layout-base cose-base cytoscape-fcose; do cp "$m/$p/LICENSE" "$out/LICENSE.$p"; done
echo "vendored: ${versions[*]}"

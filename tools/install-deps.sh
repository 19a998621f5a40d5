#!/usr/bin/env bash
# Installs what nsscript and its tests need on a fresh Debian 12 machine, then builds.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Programs whose presence proves a package is installed (command -> Debian package).
declare -A need=(
  [ip]=iproute2 [iptables]=iptables [dnsmasq]=dnsmasq-base [busybox]=busybox
  [tcpdump]=tcpdump [socat]=socat [ping]=iputils-ping [unshare]=util-linux
  [setpriv]=util-linux [pgrep]=procps [bridge]=iproute2 [conntrack]=conntrack
  [strace]=strace [iperf3]=iperf3 [tracepath]=iputils-tracepath [tshark]=tshark
  # The live view's browser tests (tests/ui.rs): headless Chromium and its WebDriver.
  [chromium]=chromium [chromedriver]=chromium-driver
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # tshark (the packet tests read nsscript's pcapng with it) asks whether non-root
  # users may capture: no.
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi
cargo build --release --quiet

#!/usr/bin/env bash
# Every test of the workspace, on a fresh machine too: first installs the programs the tests
# drive (Debian's packages, through apt-get, when missing and run as root), then runs
# `cargo test --workspace` with any arguments given here. `.ci/run` calls this same script.
set -euo pipefail
cd "$(dirname "$0")"

# What the tests drive, as "program package" pairs (a program is a command, or a file the
# package installs).
needs="
nginx nginx-light
redis-server redis-server
redis-cli redis-tools
dnsmasq dnsmasq-base
serf serf
debootstrap debootstrap
pgrep procps
unshare util-linux
ip iproute2
dig bind9-dnsutils
getent libc-bin
go golang-go
/usr/share/gocode/src/github.com/hashicorp/serf/client/rpc_client.go golang-github-hashicorp-serf-dev
prometheus prometheus
promtool prometheus
chromium chromium
chromedriver chromium-driver
docker-compose docker-compose
"

missing=()
while read -r program package; do
  [ -n "$program" ] || continue
  command -v "$program" >/dev/null || [ -e "$program" ] || missing+=("$package")
done <<<"$needs"

if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing Debian's ${missing[*]} (the tests drive them)"
    export DEBIAN_FRONTEND=noninteractive
    install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
    # A fresh system may hold no package lists yet.
    install || { apt-get update -qq >/dev/null 2>&1 && install; } || {
      echo "test.sh: apt-get could not install ${missing[*]}; the tests that drive them will fail" >&2
    }
    # Installing a server may start a system instance of it; the tests start their own.
    for pair in "nginx-light nginx" "redis-server redis-server" "prometheus prometheus"; do
      read -r package program <<<"$pair"
      if [[ " ${missing[*]} " == *" $package "* ]]; then pkill -x "$program" || true; fi
    done
  else
    echo "test.sh: cannot install ${missing[*]} (not root, or no apt-get); the tests that" \
      "drive them will fail. Run: sudo apt-get install ${missing[*]}" >&2
  fi
fi

exec cargo test --workspace "$@"

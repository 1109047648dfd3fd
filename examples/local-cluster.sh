#!/usr/bin/env bash
# A five-node gossip-agent cluster on loopback (127.0.10.1-5, Serf's default ports), walked
# through a join by name, a tag change, a graceful leave (SIGTERM) and a crash (SIGKILL).
# Everything it starts is stopped on exit, also on failure or Ctrl-C.
#
#   ./examples/local-cluster.sh            # build (release) and run
#   BIN=target/debug/gossip-agent ./examples/local-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/gossip-agent}
if [[ $BIN == target/release/gossip-agent ]]; then
  cargo -q release-agent
fi
LOGDIR=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$LOGDIR"
}
trap cleanup EXIT

roles=(dnsserver proxyserver frontserver appserver appserver)
for i in 1 2 3 4 5; do
  ip=127.0.10.$i
  args=(--node "node$i" --bind "$ip:7946" --rpc-addr "$ip:7373" --role "${roles[$((i-1))]}" --profile local)
  # Everyone but the seed joins it, here by address (in Docker, by a DNS name such as
  # 'dnsserver', resolved to every address it has and retried until a member answers).
  [[ $i -gt 1 ]] && args+=(--join 127.0.10.1)
  "$BIN" "${args[@]}" 2>"$LOGDIR/node$i.log" &
  pids+=($!)
done

rpc() { "$BIN" "$@"; }
wait_for() { # wait_for SECONDS CMD...: poll every 100 ms until CMD succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { echo "timed out: $*" >&2; return 1; }
    sleep 0.1
  done
}
count() { rpc members --rpc-addr 127.0.10.1:7373 --status "$1" | wc -l; }
five_alive() { [[ $(count alive) -eq 5 ]]; }

wait_for 10 five_alive
echo "== members, as node1 sees them"
rpc members --rpc-addr 127.0.10.1:7373
echo
echo "== appservers only, as JSON (Serf's shape)"
rpc members --rpc-addr 127.0.10.3:7373 --role appserver --format json
echo
echo "== node4 sets version=2"
rpc tags --rpc-addr 127.0.10.4:7373 --set version=2
tagged() { rpc members --rpc-addr 127.0.10.2:7373 --tag version=2 | grep -q node4; }
wait_for 5 tagged
rpc members --rpc-addr 127.0.10.2:7373 --name node4
echo
echo "== SIGTERM node5 (what 'docker stop' sends): it leaves"
kill -TERM "${pids[4]}"
left() { rpc members --rpc-addr 127.0.10.1:7373 --status left | grep -q node5; }
wait_for 5 left
rpc members --rpc-addr 127.0.10.1:7373
echo
echo "== SIGKILL node3: the others detect the failure"
kill -KILL "${pids[2]}"
failed() { rpc members --rpc-addr 127.0.10.1:7373 --status failed | grep -q node3; }
wait_for 30 failed
rpc members --rpc-addr 127.0.10.1:7373
echo
echo "== node1 info"
rpc info --rpc-addr 127.0.10.1:7373

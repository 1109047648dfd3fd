#!/usr/bin/env bash
# Regenerates release/hot-functions.txt, the list of functions the agent runs, which
# `cargo release-agent` hands to the linker (LLD's --symbol-ordering-file) so that they lie
# together at the start of the executable's code.
#
# Why: the kernel maps an executable's pages around each one first touched (64 KB at a time,
# "fault-around"), and every mapped page counts in the resident size. In the compiler's order
# the ~1 MB of code an agent runs is spread over all 4 MB of code, so nearly all of it was
# resident: 4.8 MiB per agent in a 10-agent loopback cluster, 2.7 MiB with this list (same
# code). Functions missing from the list still work; they are only placed after the others.
#
# How: loopback clusters under valgrind's callgrind: plain, as the benchmark runs it (two
# agents profiled); then one agent each with DNS, metrics, writers, a supervised service; then
# encryption with a key rotation. Driven through joins, Serf's RPC (Debian's `serf`: members,
# monitor, event, query, tags, keys), our CLI and HTTP API, dig and curl, a crash, leaves and
# a graceful stop. The functions callgrind saw run, by symbol name, make the list: the plain
# cluster's first, then what each feature adds, so an agent with one feature touches two
# groups, not every feature's code. Rerun it after
# changes that add much code to what an agent runs; `cargo test --test tests release_order`
# fails when under 90 % of the list names functions of the build.
#
#   ./release/hot-functions.sh   # about a minute, plus the build; needs valgrind, serf, dig, curl,
#                                # redis-server and python3 (Debian: apt-get install valgrind ...)
#
# Everything it starts is stopped on exit. Traffic stays on 127.0.78-80.0/24.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in valgrind serf dig curl redis-server python3; do
  command -v "$tool" >/dev/null || { echo "hot-functions.sh: needs $tool" >&2; exit 2; }
done
cargo -q release-agent
BIN=$PWD/target/release/gossip-agent
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -f "http.server 8080 --bind 127.0.79" 2>/dev/null || true   # services of killed agents
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/handler.sh" <<'H'
#!/bin/sh
cat > /dev/null
echo "$SERF_EVENT" >> "$(dirname "$0")/events.$SERF_SELF_NAME"
H
chmod +x "$WORK/handler.sh"

# start NET I PROFILED ARGS...: agent I of the cluster on 127.0.NET.0/24 (1 is the seed)
start() {
  local net=$1 i=$2 profiled=$3; shift 3
  local ip=127.0.$net.$i wrap=()
  local args=(--node "n$i" --bind "$ip:7946" --rpc-addr "$ip:7373" --role appserver
    --event-handler "$WORK/handler.sh" --log-level warn)
  [[ $i -gt 1 ]] && args+=(--join "127.0.$net.1")
  args+=("$@")
  if [[ $profiled == yes ]]; then
    wrap=(valgrind -q --tool=callgrind --demangle=no --callgrind-out-file="$WORK/cg.$net.$i")
  fi
  "${wrap[@]}" "$BIN" "${args[@]}" > "$WORK/log.$net.$i" 2>&1 &
  pids+=($!)
  eval "pid_${net}_$i=$!"
}
wait_for() { # wait_for SECONDS CMD...: poll every 200 ms until CMD succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { echo "hot-functions.sh: timed out: $*" >&2; return 1; }
    sleep 0.2
  done
}
alive() { # alive RPC N: the agent at RPC lists N alive members
  [[ $(serf members -rpc-addr "$1" -status alive | wc -l) -eq $2 ]]
}
stop_profiled() { # stop_profiled PID...: SIGTERM (leave), wait for callgrind to write
  kill -TERM "$@"
  for p in "$@"; do
    local deadline=$((SECONDS + 60))
    while kill -0 "$p" 2>/dev/null; do
      (( SECONDS < deadline )) || { echo "hot-functions.sh: $p did not stop" >&2; return 1; }
      sleep 0.2
    done
  done
}

echo "== plain cluster: 10 agents, n1 and n2 profiled"
monitors=()
start 78 1 yes
wait_for 30 serf members -rpc-addr 127.0.78.1:7373
start 78 2 yes
for i in 3 4 5 6 7 8 9 10; do start 78 $i no; done
wait_for 60 alive 127.0.78.3:7373 10
for rpc in 127.0.78.1:7373 127.0.78.2:7373; do
  for _ in 1 2 3 4 5; do serf members -rpc-addr $rpc > /dev/null; done
  serf members -rpc-addr $rpc -format json -status alive -tag role=appserver > /dev/null
  "$BIN" members --rpc-addr $rpc > /dev/null
  curl -sf "$rpc/v1/members" > /dev/null   # what the benchmark polls
  "$BIN" rtt --rpc-addr $rpc n3 > /dev/null 2>&1 || true
  timeout 4 serf monitor -rpc-addr $rpc -log-level debug > /dev/null 2>&1 &
  monitors+=($!)
done
sleep 0.5
serf event -rpc-addr 127.0.78.3:7373 deploy v1 > /dev/null
serf event -rpc-addr 127.0.78.1:7373 -coalesce=false restart web > /dev/null
serf query -rpc-addr 127.0.78.2:7373 -timeout 3s ping x > /dev/null
serf tags -rpc-addr 127.0.78.2:7373 -set version=2 > /dev/null
wait "${monitors[@]}" || true
kill -KILL "$pid_78_5"; wait "$pid_78_5" 2>/dev/null || true   # no "Killed" notice
kill -TERM "$pid_78_6"; kill -INT "$pid_78_7"
wait_for 60 bash -c "serf members -rpc-addr 127.0.78.2:7373 | grep -q 'n5 .*failed'"
wait_for 30 bash -c "serf members -rpc-addr 127.0.78.1:7373 -status left | grep -q n7"
sleep 3
stop_profiled "$pid_78_1" "$pid_78_2"
for i in 3 4 8 9 10; do v=pid_78_$i; kill -TERM "${!v}"; done

echo "== features: 5 agents, one feature each on n1-n4, all profiled (DNS, metrics, writers, a service)"
redis-server --bind 127.0.79.200 --port 6379 --save '' --appendonly no > "$WORK/redis.log" 2>&1 &
redis=$!
pids+=($redis)
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.79.200/6379"
printf '{%% for m in members %%}{{ m.name }} {{ m.ip }}:{{ m.port }}\n{%% endfor %%}' > "$WORK/t.j2"
start 79 1 yes --tag port=8080 --dns-addr 127.0.79.1:8600 --dns-recursor none
wait_for 30 serf members -rpc-addr 127.0.79.1:7373
start 79 2 yes --tag port=8080 --metrics-addr 127.0.79.2:9100
start 79 3 yes --tag port=8080 --snapshot "$WORK/snap.3" \
  --writer "nginx:path=$WORK/up.conf,upstream=app,role=appserver,order=nearest,nearest=2" \
  --writer "template:template=$WORK/t.j2,path=$WORK/t.out,role=appserver" \
  --writer "dnsmasq:path=$WORK/hosts" \
  --writer "hipache:redis_url=redis://127.0.79.200:6379,frontend=n3,role=appserver"
start 79 4 yes --tag port=8080 --ready http://127.0.79.4:8080/ --health http://127.0.79.4:8080/ \
  --drain-port 8080 --drain-quiet 100 -- python3 -m http.server 8080 --bind 127.0.79.4
start 79 5 no --tag port=8080
wait_for 60 alive 127.0.79.5:7373 5
for _ in 1 2 3; do
  dig @127.0.79.1 -p 8600 appserver.gossip +short > /dev/null
  dig @127.0.79.1 -p 8600 _appserver._tcp.gossip SRV > /dev/null
  dig @127.0.79.1 -p 8600 n3.node.gossip > /dev/null
  dig @127.0.79.1 -p 8600 nothing.gossip > /dev/null
  curl -sf 127.0.79.2:9100/metrics > /dev/null
done
wait_for 30 curl -sf 127.0.79.4:8080/
serf event -rpc-addr 127.0.79.5:7373 deploy v2 > /dev/null
serf tags -rpc-addr 127.0.79.5:7373 -set version=2 > /dev/null
kill -KILL "$pid_79_5"; wait "$pid_79_5" 2>/dev/null || true
wait_for 60 bash -c "serf members -rpc-addr 127.0.79.3:7373 | grep -q 'n5 .*failed'"
sleep 3
stop_profiled "$pid_79_1" "$pid_79_2" "$pid_79_3" "$pid_79_4"
kill -TERM "$redis"

echo "== encryption: 3 agents, n1 profiled, keys rotated"
KEY=$("$BIN" keygen)
start 80 1 yes --encrypt "$KEY" --keyring-file "$WORK/keys.1"
wait_for 30 serf members -rpc-addr 127.0.80.1:7373
start 80 2 no --encrypt "$KEY" --keyring-file "$WORK/keys.2"
start 80 3 no --encrypt "$KEY" --keyring-file "$WORK/keys.3"
wait_for 60 alive 127.0.80.1:7373 3
NEW=$("$BIN" keygen)
serf keys -rpc-addr 127.0.80.1:7373 -list > /dev/null
serf keys -rpc-addr 127.0.80.1:7373 -install "$NEW" > /dev/null
serf keys -rpc-addr 127.0.80.2:7373 -use "$NEW" > /dev/null
serf keys -rpc-addr 127.0.80.1:7373 -remove "$KEY" > /dev/null
serf event -rpc-addr 127.0.80.2:7373 deploy v3 > /dev/null
kill -KILL "$pid_80_3"; wait "$pid_80_3" 2>/dev/null || true
wait_for 60 bash -c "serf members -rpc-addr 127.0.80.1:7373 | grep -q 'n3 .*failed'"
stop_profiled "$pid_80_1"
kill -TERM "$pid_80_2"

# The function names callgrind saw, without its recursion marks ('2) and unnamed code.
names() {
  cat "$@" | sed -nE "s/^c?fn=\([0-9]+\) (.*)$/\1/p" | sed -E "s/'[0-9]+$//" \
    | grep -vE '^\(below main\)$|^0x[0-9a-f]+$' | LC_ALL=C sort -u
}
names "$WORK"/cg.78.* > "$WORK/plain"
# Each feature's functions after the plain cluster's, one group after another, so that an
# agent with one feature touches the plain group and its own, not all of them.
cp "$WORK/plain" "$WORK/listed"
: > "$WORK/features"
for cg in cg.79.1 cg.79.2 cg.79.3 cg.79.4 cg.80.1; do
  names "$WORK/$cg" | LC_ALL=C comm -13 <(LC_ALL=C sort "$WORK/listed") - > "$WORK/group"
  cat "$WORK/group" >> "$WORK/features"
  cat "$WORK/group" >> "$WORK/listed"
done
{
  echo "# Generated by release/hot-functions.sh on $(git rev-parse --short HEAD): do not edit."
  echo "# The agent's functions callgrind saw run, by symbol: the plain cluster's first, then"
  echo "# those an agent with DNS, metrics, writers, a service, encryption adds, in that order."
  cat "$WORK/plain" "$WORK/features"
} > release/hot-functions.txt
echo "release/hot-functions.txt: $(wc -l < "$WORK/plain") functions of the plain cluster," \
  "$(wc -l < "$WORK/features") more with the features"

#!/usr/bin/env bash
# Round trips between two network namespaces joined by a veth pair (root):
# a 64-byte plain C TCP ping-pong (Benchmarks/CReference/tcp_pingpong.c)
# against a 64-byte UCX active-message round trip over UCX's TCP transport
# (fabricq-test-helper ucx-echo / ucx-ping, release build), and an empty
# command's round trip through a remote session (fabricq serve --listen in
# one namespace, fabricq-test-helper session-pingpong to ucx:// in the
# other: ControllerSession, proxy, UCX, gateway, daemon, empty model and
# back), in turn, ROUNDS times (default 3). Prints p50/p99 of each and the
# p50 ratios against C TCP per round.
#   Benchmarks/remote-pingpong.sh [ROUNDS] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
count=${2:-20000}
[ "$(id -u)" -eq 0 ] || { echo "remote-pingpong: needs root (ip netns)"; exit 1; }
swift build -c release --product fabricq-test-helper >/dev/null
swift build -c release --product fabricq >/dev/null
helper=.build/release/fabricq-test-helper
fabricq=.build/release/fabricq
work=$(mktemp -d)
$fabricq keygen "$work/bench" >/dev/null
cc -O2 -o "$work/tcp_pingpong" Benchmarks/CReference/tcp_pingpong.c
source Benchmarks/netns-pair.sh 10.199.0 b
p50() { sed -n 's/.*p50=\([0-9]*\).*/\1/p'; }
# Waits (up to 30 s) until FILE holds "listening".
listening() { for _ in $(seq 300); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
for round in $(seq "$rounds"); do
  rm -f "$work/tcp-server.out" "$work/ucx-server.out"  # a fresh file each round: "listening" must be this server's
  ip netns exec $s "$work/tcp_pingpong" server 10.199.0.1 17001 > "$work/tcp-server.out" &
  server=$!
  listening "$work/tcp-server.out"
  tcp=$(ip netns exec $c "$work/tcp_pingpong" client 10.199.0.1 17001 "$count")
  wait $server || true
  UCX_TLS=tcp ip netns exec $s $helper ucx-echo 10.199.0.1 17002 > "$work/ucx-server.out" &
  server=$!
  listening "$work/ucx-server.out"
  ucx=$(UCX_TLS=tcp ip netns exec $c $helper ucx-ping 10.199.0.1 17002 "$count" 64)
  kill $server; wait $server 2>/dev/null || true
  # The remote session twice: the daemon as `fabricq serve` starts by
  # default (empty model on an instance thread, adaptive idle), and set up
  # for latency (the empty model run on the poll thread, which busy-polls).
  remote=()
  for setup in "--model 4:empty" "--model 4:empty,execution=poll-thread --idle poll"; do
    rm -f "$work/daemon.out"
    UCX_TLS=tcp ip netns exec $s $fabricq serve --socket "$work/daemon.sock" --listen ucx://10.199.0.1:17003 \
      --authorized-keys "$work/bench.pub" $setup > "$work/daemon.out" 2>&1 &
    server=$!
    listening "$work/daemon.out" || { cat "$work/daemon.out"; exit 1; }
    remote+=("$(UCX_TLS=tcp FABRICQ_KEY="$work/bench.key" ip netns exec $c $helper session-pingpong ucx://10.199.0.1:17003 "$count" 4)")
    kill $server; wait $server 2>/dev/null || true
  done
  t=$(echo "$tcp" | p50); u=$(echo "$ucx" | p50); r=$(echo "${remote[0]}" | p50); l=$(echo "${remote[1]}" | p50)
  echo "round $round: C TCP $tcp | UCX AM $ucx | remote session, empty command: default ${remote[0]}; poll-thread, --idle poll ${remote[1]}" \
    "| p50 ratios to C TCP: UCX AM $(python3 -c "print(f'{$u/$t:.2f}')"), remote default $(python3 -c "print(f'{$r/$t:.2f}')"), remote tuned $(python3 -c "print(f'{$l/$t:.2f}')")"
done

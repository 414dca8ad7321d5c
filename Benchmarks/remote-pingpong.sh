#!/usr/bin/env bash
# Round trips between two network namespaces joined by a veth pair (root):
# a 64-byte plain C TCP ping-pong (Benchmarks/CReference/tcp_pingpong.c)
# against a 64-byte UCX active-message round trip over UCX's TCP transport
# (fabricq-test-helper ucx-echo / ucx-ping, release build), in turn, ROUNDS
# times (default 3). Prints p50/p99 of each and the p50 ratio per round.
#   Benchmarks/remote-pingpong.sh [ROUNDS] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
count=${2:-20000}
[ "$(id -u)" -eq 0 ] || { echo "remote-pingpong: needs root (ip netns)"; exit 1; }
swift build -c release --product fabricq-test-helper >/dev/null
helper=.build/release/fabricq-test-helper
work=$(mktemp -d)
cc -O2 -o "$work/tcp_pingpong" Benchmarks/CReference/tcp_pingpong.c
s=fqbench$$s c=fqbench$$c
cleanup() {
  # Only this script's namespaces (named by its pid), so only its own processes.
  for ns in $s $c; do
    for pid in $(ip netns pids $ns 2>/dev/null); do kill -9 $pid 2>/dev/null || true; done
    ip netns del $ns 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add $s && ip netns add $c
ip link add fqb$$a netns $s type veth peer name fqb$$b netns $c
ip -n $s addr add 10.199.0.1/30 dev fqb$$a && ip -n $c addr add 10.199.0.2/30 dev fqb$$b
for pair in "$s fqb$$a" "$c fqb$$b"; do set -- $pair; ip -n $1 link set $2 up; ip -n $1 link set lo up; done
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
  t=$(echo "$tcp" | p50); u=$(echo "$ucx" | p50)
  echo "round $round: C TCP $tcp | UCX AM $ucx | UCX/TCP p50 $(python3 -c "print(f'{$u/$t:.2f}')")"
done

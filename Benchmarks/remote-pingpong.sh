#!/usr/bin/env bash
# Round trips between two network namespaces joined by a veth pair (root),
# one in flight, ROUNDS times (default 3), each of these in turn:
# - a 64-byte plain C TCP ping-pong (Benchmarks/CReference/tcp_pingpong.c),
#   both ends blocking in read, and both ends busy-polling;
# - a 64-byte UCX active-message round trip over UCX's TCP transport
#   (fabricq-test-helper ucx-echo / ucx-ping, release build), both ends
#   sleeping on the worker's event fd, and both busy-polling;
# - an empty command's round trip through a remote session (fabricq serve
#   --listen in one namespace, fabricq-test-helper session-pingpong to
#   ucx:// in the other: ControllerSession, UCX, the daemon's poll thread,
#   the empty model and back), four ways: defaults, the model on the poll
#   thread, nobody spinning, everybody spinning.
# Prints p50/p99 of each and the p50 ratios against the C reference that
# waits the same way, per round.
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
p50() { sed -n 's/.* p50=\([0-9]*\).*/\1/p'; }
# Waits (up to 30 s) until FILE holds "listening".
listening() { for _ in $(seq 300); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
for round in $(seq "$rounds"); do
  # C TCP twice: both ends blocking in read, and both busy-polling.
  tcp=()
  for mode in "" spin; do
    rm -f "$work/tcp-server.out"  # a fresh file each time: "listening" must be this server's
    # shellcheck disable=SC2086 # $mode is empty or one argument
    ip netns exec $s "$work/tcp_pingpong" server 10.199.0.1 17001 $mode > "$work/tcp-server.out" &
    server=$!
    listening "$work/tcp-server.out"
    # shellcheck disable=SC2086
    tcp+=("$(ip netns exec $c "$work/tcp_pingpong" client 10.199.0.1 17001 "$count" $mode)")
    wait $server || true
  done
  # UCX active messages the same two ways.
  ucx=()
  for mode in "" spin; do
    rm -f "$work/ucx-server.out"
    # shellcheck disable=SC2086
    UCX_TLS=tcp ip netns exec $s $helper ucx-echo 10.199.0.1 17002 $mode > "$work/ucx-server.out" &
    server=$!
    listening "$work/ucx-server.out"
    # shellcheck disable=SC2086
    ucx+=("$(UCX_TLS=tcp ip netns exec $c $helper ucx-ping 10.199.0.1 17002 "$count" 64 $mode)")
    kill $server; wait $server 2>/dev/null || true
  done
  # The remote session four ways: daemon setup | controller wait | the C
  # reference it is held against (0 blocking, 1 spinning).
  #   default: as `fabricq serve` and ControllerOptions start (the empty
  #     model on an instance thread; both sides spin briefly, then sleep);
  #   poll-thread: the empty model run on the poll thread, same waits;
  #   both sleep: nobody spins (as the C ends sleep in read);
  #   both spin: daemon and controller busy-poll (as the spinning C ends).
  setups=("--model 4:empty" "--model 4:empty,execution=poll-thread" \
    "--model 4:empty,execution=poll-thread --idle sleep" "--model 4:empty,execution=poll-thread --idle poll")
  waits=(adaptive adaptive sleep spin)
  references=(0 0 0 1)
  names=("default" "poll-thread" "both sleep" "both spin")
  remote=()
  for i in "${!setups[@]}"; do
    rm -f "$work/daemon.out"
    # shellcheck disable=SC2086 # the setup is several arguments
    UCX_TLS=tcp ip netns exec $s $fabricq serve --socket "$work/daemon.sock" --listen ucx://10.199.0.1:17003 \
      --authorized-keys "$work/bench.pub" ${setups[$i]} > "$work/daemon.out" 2>&1 &
    server=$!
    listening "$work/daemon.out" || { cat "$work/daemon.out"; exit 1; }
    remote+=("$(UCX_TLS=tcp FABRICQ_KEY="$work/bench.key" ip netns exec $c $helper session-pingpong \
      ucx://10.199.0.1:17003 "$count" 4 "${waits[$i]}")")
    kill $server; wait $server 2>/dev/null || true
  done
  t=$(echo "${tcp[0]}" | p50); u=$(echo "${ucx[0]}" | p50); ts=$(echo "${tcp[1]}" | p50); us=$(echo "${ucx[1]}" | p50)
  line="round $round: C TCP ${tcp[0]} | C TCP spinning ${tcp[1]} | UCX AM ${ucx[0]} | UCX AM spinning ${ucx[1]}"
  ratios="UCX AM $(python3 -c "print(f'{$u/$t:.2f}')"), UCX AM spinning $(python3 -c "print(f'{$us/$ts:.2f}')")"
  for i in "${!names[@]}"; do
    r=$(echo "${remote[$i]}" | p50); ref=$(echo "${tcp[${references[$i]}]}" | p50)
    line+=" | remote session (${names[$i]}) ${remote[$i]}"
    ratios+=", ${names[$i]} $(python3 -c "print(f'{$r/$ref:.2f}')")"
  done
  echo "$line | p50 ratios (both spin: to the spinning C; the rest: to the blocking C): $ratios"
done

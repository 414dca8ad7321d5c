#!/usr/bin/env bash
# Round-trip latency between two processes over two SPSC rings, per doorbell
# kind: the client pinned to CPU 0, the echo peer to CPU 1, SCHED_FIFO when
# permitted. Prints p50/p99/max per kind, several rounds interleaved.
#   Benchmarks/pingpong.sh [COUNT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-100000}; ROUNDS=${2:-3}
swift build -c release --product fabricq-test-helper >/dev/null
RT=""; if chrt -f 50 true 2>/dev/null; then RT="chrt -f 50"; fi
echo "ping-pong round trip, $COUNT per run, ${RT:-normal priority}, CPUs 0 and 1"
for r in $(seq $ROUNDS); do
  for kind in poll futex eventfd adaptive; do
    $RT .build/release/fabricq-test-helper pingpong $kind $COUNT 0 0 1
  done
done

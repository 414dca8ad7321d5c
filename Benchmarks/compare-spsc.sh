#!/usr/bin/env bash
# Cross-process SPSC throughput, Swift ring vs the plain C ring, interleaved
# (Swift, C, Swift, C, ...) over identical FabricQueue regions, producer pinned
# to CPU 0 and consumer to CPU 1, under SCHED_FIFO when permitted.
#   Benchmarks/compare-spsc.sh [COUNT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-20000000}; ROUNDS=${2:-3}; CAP=1024
swift build -c release --product fabricq --product fabricq-test-helper >/dev/null 2>&1 || swift build -c release >/dev/null
BIN=.build/release
mkdir -p .build/bench
cc -O2 -std=c11 -o .build/bench/c_spsc_ring Benchmarks/CReference/c_spsc_ring.c
RT=""; if chrt -f 50 true 2>/dev/null; then RT="chrt -f 50"; fi
REGION=/dev/shm/fq-bench-$$
trap 'rm -f $REGION' EXIT
run() { # impl burst -> M/s
  rm -f $REGION; $BIN/fabricq create $REGION --kind spsc --capacity $CAP >/dev/null
  if [ "$1" = swift ]; then P="$BIN/fabricq-test-helper raw-produce"; C="$BIN/fabricq-test-helper raw-consume"
  else P=".build/bench/c_spsc_ring produce"; C=".build/bench/c_spsc_ring consume"; fi
  $RT taskset -c 1 $C $REGION $COUNT $2 > .build/bench/out & local cpid=$!
  $RT taskset -c 0 $P $REGION $COUNT $2
  wait $cpid; cat .build/bench/out
}
echo "SPSC across processes, 64-byte descriptors, capacity $CAP, $COUNT per run, ${RT:-normal priority}"
for burst in 1 32; do
  s=(); c=()
  for r in $(seq $ROUNDS); do s+=($(run swift $burst)); c+=($(run c $burst)); done
  python3 - "$burst" "${s[*]}" "${c[*]}" <<'PY'
import sys, statistics as st
b, s, c = sys.argv[1], list(map(float, sys.argv[2].split())), list(map(float, sys.argv[3].split()))
ratios = [x / y for x, y in zip(s, c)]
print(f"burst {b:>2}: Swift median {st.median(s):6.1f} M/s (min {min(s):.1f} max {max(s):.1f}) | "
      f"C median {st.median(c):6.1f} M/s (min {min(c):.1f} max {max(c):.1f}) | "
      f"Swift/C paired ratios {' '.join(f'{r:.2f}' for r in ratios)} median {st.median(ratios):.2f}")
PY
done

#!/usr/bin/env bash
# Issue 14's targets 1-3, measured with `fabricq serve --model` and
# `fabricq load` (release build). Prints each run's JSON; see
# Docs/Benchmarks.md for figures. Each daemon is stopped by its own pid.
#   Benchmarks/server-targets.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
swift build -c release --product fabricq >/dev/null
fq=.build/release/fabricq
dir=$(mktemp -d)
daemon=""
cleanup() { [ -n "$daemon" ] && kill "$daemon" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

serve() {  # serve MODEL-SPEC...: starts a daemon, waits until it listens
    local args=()
    for spec in "$@"; do args+=(--model "$spec"); done
    "$fq" serve --socket "$dir/fq.sock" --idle "${IDLE:-adaptive}" "${args[@]}" >"$dir/serve.log" 2>&1 &
    daemon=$!
    for _ in $(seq 200); do grep -q listening "$dir/serve.log" && return; sleep 0.05; done
    echo "daemon did not start" >&2; cat "$dir/serve.log" >&2; exit 1
}
stop() { kill -TERM "$daemon"; wait "$daemon" || true; daemon=""; grep '^batches' "$dir/serve.log" || true; }
load() { "$fq" load --socket "$dir/fq.sock" --duration "${seconds}s" --json "$@"; }

echo "== 1. head-of-line: model 1 delay=20ms saturated, model 2 echo at concurrency 1"
serve 1:delay=20ms 2:echo
load --model 1 --concurrency 8 >"$dir/slow.json" &
slow=$!
sleep 0.2
echo -n "echo beside delay: "; load --model 2 --concurrency 1
wait "$slow"; echo -n "delay model: "; cat "$dir/slow.json"
stop
serve 2:echo
echo -n "echo alone: "; load --model 2 --concurrency 1
stop

echo "== 2. overlap: delay=5ms, batch 1, concurrency 16, instances 1 vs 4"
for instances in 1 4; do
    serve "3:delay=5ms,instances=$instances,max-batch=1"
    echo -n "instances=$instances: "; load --model 3 --concurrency 16
    stop
done

echo "== 3. batcher: 8 controllers, batch-1 requests, 2 ms per batch; batching on vs off"
# Nine processes on two cores: the daemon sleeps when idle and the clients
# wait on their eventfds, so nobody spins away the CPU the others need.
for spec in "4:delay=2ms,max-batch=8,max-queue-delay=2ms" "4:delay=2ms,max-batch=1"; do
    IDLE=sleep serve "$spec"
    echo "$spec"
    pids=()
    for c in $(seq 8); do load --model 4 --concurrency 1 --wait eventfd >"$dir/c$c.json" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p"; done
    python3 - "$dir" <<'PY'
import json, sys, glob
runs = [json.load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/c*.json"))]
total = sum(r["throughput_per_s"] for r in runs)
mean_batch = sum(r["mean_batch_size"] * r["completed"] for r in runs) / max(1, sum(r["completed"] for r in runs))
p99 = max(r["latency_ns"]["p99"] for r in runs)
wrong = sum(r["wrong"] for r in runs); failed = sum(r["failed"] for r in runs)
print(f"  8 controllers: {total:.0f}/s in all, mean executed batch {mean_batch:.2f}, worst controller p99 {p99/1e6:.2f} ms, wrong {wrong}, failed {failed}")
PY
    stop
done

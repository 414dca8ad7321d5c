#!/usr/bin/env bash
# What watching costs a busy daemon: `fabricq load` throughput and p99 on an
# echo model, alone ("quiet") and while `fabricq top --interval I --json`
# and a scrape of /metrics every I run against the same daemon ("watched";
# I is WATCH_INTERVAL, default 1s: top's own refresh, and a scrape 15 times
# more often than Prometheus's default). Rounds alternate
# quiet/watched/watched/quiet so drift cancels; prints each run and the
# median of the per-round ratios (watched / quiet). Then the daemon's own
# CPU time per telemetry query and per scrape (/proc/PID/stat, 300 each).
# Release build; every process is stopped by its own pid.
#   [WATCH_INTERVAL=100ms] Benchmarks/watch-overhead.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
seconds=${2:-3}
interval=${WATCH_INTERVAL:-1s}
case "$interval" in *ms) sleep_s=$(python3 -c "print(${interval%ms}/1000)");; *s) sleep_s=${interval%s};; esac
swift build -c release --product fabricq >/dev/null
fq=.build/release/fabricq
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

"$fq" serve --socket "$dir/fq.sock" --model 1:echo --metrics 0 >"$dir/serve.log" 2>&1 &
daemon=$!
pids+=("$daemon")
for _ in $(seq 200); do grep -q listening "$dir/serve.log" && break; sleep 0.05; done
url=$(grep -o 'http://[^ ]*' "$dir/serve.log")

run() {  # run quiet|watched: one load, printed as "MODE throughput p99"
    local watchers=()
    if [ "$1" = watched ]; then
        "$fq" top --socket "$dir/fq.sock" --interval "$interval" --json >/dev/null &
        watchers+=($!)
        ( while :; do curl -s -o /dev/null "$url"; sleep "$sleep_s"; done ) &
        watchers+=($!)
        pids+=("${watchers[@]}")
        sleep 0.3
    fi
    "$fq" load --socket "$dir/fq.sock" --model 1 --concurrency 2 --duration "${seconds}s" --json >"$dir/run.json"
    for p in "${watchers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    python3 -c "import json,sys; r=json.load(open('$dir/run.json')); print('$1', r['throughput_per_s'], r['latency_ns']['p99'])"
}

for round in $(seq "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then order="quiet watched"; else order="watched quiet"; fi
    for mode in $order; do run "$mode"; done
done | tee "$dir/all.txt"
scrapes=$(curl -s "$url" | grep -c '^fabricq_' || true)
echo "watch interval $interval; series per scrape: $scrapes"
python3 - "$dir/all.txt" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
quiet = [r for r in rows if r[0] == "quiet"]; watched = [r for r in rows if r[0] == "watched"]
tput = [float(w[1]) / float(q[1]) for q, w in zip(quiet, watched)]
p99 = [float(w[2]) / float(q[2]) for q, w in zip(quiet, watched)]
print(f"watched/quiet throughput per round: {[round(x, 3) for x in tput]}  median {statistics.median(tput):.3f}")
print(f"watched/quiet p99 per round:        {[round(x, 3) for x in p99]}  median {statistics.median(p99):.3f}")
PY
cpu() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
ticks=$(getconf CLK_TCK)
before=$(cpu)
"$fq" top --socket "$dir/fq.sock" --interval 20ms --count 300 --json >/dev/null
middle=$(cpu)
for _ in $(seq 300); do curl -s -o /dev/null "$url"; done
after=$(cpu)
python3 -c "print(f'daemon CPU per telemetry query (uncached): {($middle - $before) / $ticks / 300 * 1e3:.2f} ms; per scrape: {($after - $middle) / $ticks / 300 * 1e3:.2f} ms')"

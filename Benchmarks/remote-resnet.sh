#!/usr/bin/env bash
# The ResNet example local against remote (root): resnet-daemon in one
# network namespace, listening on its Unix socket and on ucx://, and the
# same resnet-controller run (the bundled photos, ResNet-18, micro-batches
# of 8, 2 in flight, COUNT images) from the daemon's namespace over the
# socket, then from the other namespace over UCX TCP (UCX_TLS=tcp), in
# turn, ROUNDS times. Prints images/s and per-image p50 of each and the
# remote/local throughput ratio per round.
#   Benchmarks/remote-resnet.sh [ROUNDS] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
count=${2:-64}
[ "$(id -u)" -eq 0 ] || { echo "remote-resnet: needs root (ip netns)"; exit 1; }
swift build -c release --product fabricq >/dev/null
swift build -c release --package-path Examples/ResNet >/dev/null
B=Examples/ResNet/.build/release
$B/resnet-engine defaults >/dev/null
engines=${FABRICQUEUE_ENGINES:-$HOME/.cache/fabricqueue/engines}
images=(Examples/ResNet/Sources/resnet-pipeline/SampleImages/*.jpg Examples/ResNet/Sources/resnet-pipeline/SampleImages/*.png)
work=$(mktemp -d)
.build/release/fabricq keygen "$work/bench" >/dev/null
source Benchmarks/netns-pair.sh 10.199.1 r
UCX_TLS=tcp ip netns exec $s $B/resnet-daemon --socket "$work/resnet.sock" --listen ucx://10.199.1.1:17010 \
  --authorized-keys "$work/bench.pub" > "$work/daemon.out" 2>&1 &
for _ in $(seq 600); do grep -q "remote controllers on" "$work/daemon.out" 2>/dev/null && break; sleep 0.1; done
grep -q "remote controllers on" "$work/daemon.out" || { cat "$work/daemon.out"; exit 1; }
controller=(--model 1 --engine "$engines/resnet18-seeded.engine" --batch 8 --in-flight 2 --count "$count" "${images[@]}")
summary() { grep -o 'throughput [0-9.]* images/s · per image end-to-end p50 [0-9.]* ms' | head -1; }
ips() { sed -n 's/throughput \([0-9.]*\) images.*/\1/p'; }
for round in $(seq "$rounds"); do
  local_run=$(ip netns exec $s $B/resnet-controller --socket "$work/resnet.sock" "${controller[@]}" | summary)
  remote_run=$(UCX_TLS=tcp ip netns exec $c $B/resnet-controller --socket ucx://10.199.1.1:17010 --key "$work/bench.key" \
    "${controller[@]}" | summary)
  l=$(echo "$local_run" | ips); r=$(echo "$remote_run" | ips)
  echo "round $round: local $local_run | remote $remote_run | remote/local images/s $(python3 -c "print(f'{$r/$l:.3f}')")"
done

#!/usr/bin/env bash
# Runs the microbenchmarks and fails unless every one allocated nothing while
# measured: the static thresholds in Thresholds/ are mallocCountTotal = 0 and
# the benchmarks' absolute tolerance is zero. Only the malloc metric is
# checked, so noisy timings cannot fail it. First run builds for ~2 minutes.
#   Benchmarks/check-allocations.sh
set -euo pipefail
cd "$(dirname "$0")"
swift package benchmark thresholds check --metric mallocCountTotal --no-progress

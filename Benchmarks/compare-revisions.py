#!/usr/bin/env python3
"""This tree's SPSC ring against another revision's and the C ring, in one run.

Builds the release `fabricq` and `fabricq-test-helper` of REVISION in a git
worktree (.build/revision-<sha>), then interleaves three implementations over
fresh regions, producer on CPU 0 and consumer on CPU 1 in two processes:
the plain C ring (Benchmarks/CReference/c_spsc_ring.c), REVISION, and this
tree. Reports per burst the median and min-max throughput of each, and the
medians of the paired ratios (this tree / REVISION, this tree / C) measured in
the same round, which is what survives the noise of a shared VM.

    Benchmarks/compare-revisions.py REVISION [--rounds 7] [--count 20000000] [--bursts 1,32]
"""
import argparse, os, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Benchmarks"))
import importlib.util
spec = importlib.util.spec_from_file_location("compare", os.path.join(ROOT, "Benchmarks", "compare.py"))
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def build_revision(revision):
    sha = compare.sh(f"git rev-parse --short {revision}").strip()
    tree = os.path.join(ROOT, ".build", f"revision-{sha}")
    if not os.path.exists(tree):
        compare.sh(f"git worktree add --detach {tree} {sha}")
    for product in ("fabricq", "fabricq-test-helper"):
        subprocess.run(f"swift build -c release --product {product}",
                       shell=True, check=True, cwd=tree, stdout=subprocess.DEVNULL)
    return sha, os.path.join(tree, ".build", "release")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("revision")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--count", type=int, default=20_000_000)
    ap.add_argument("--bursts", default="1,32")
    a = ap.parse_args()
    compare.build()
    sha, old_bin = build_revision(a.revision)
    old = os.path.join(old_bin, "fabricq-test-helper")
    new = compare.HELPER
    print(f"# SPSC across processes, {a.count} descriptors, {a.rounds} rounds; this tree vs {sha} vs C ring")
    print("| burst | C ring M/s | " + sha + " M/s | this tree M/s | this/" + sha + " | this/C |")
    print("|---|---|---|---|---|---|")
    for burst in (int(b) for b in a.bursts.split(",")):
        runs = {"c": [], "old": [], "new": []}
        for _ in range(a.rounds):
            runs["c"].append(compare.c_spsc(burst, a.count))
            runs["old"].append(compare.spsc_over_region(f"{old} raw-produce", f"{old} raw-consume", burst, a.count))
            runs["new"].append(compare.swift_spsc(burst, a.count))
        med = {k: statistics.median(v) for k, v in runs.items()}
        span = {k: f"{min(v):.1f}–{max(v):.1f}" for k, v in runs.items()}
        vs_old = statistics.median(n / o for n, o in zip(runs["new"], runs["old"]))
        vs_c = statistics.median(n / c for n, c in zip(runs["new"], runs["c"]))
        print(f"| {burst} | {med['c']:.1f} ({span['c']}) | {med['old']:.1f} ({span['old']}) | "
              f"{med['new']:.1f} ({span['new']}) | {vs_old:.2f}× | {vs_c:.2f}× |", flush=True)


if __name__ == "__main__":
    main()

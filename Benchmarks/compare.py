#!/usr/bin/env python3
"""FabricQueue against its references, interleaved in one run.

For every workload the implementations run one after another (A B C A B C ...)
for several rounds, each over its own fresh ring, with the same CPU placement,
so that a noisy shared VM moves all of them alike. Reported per workload:
median and min-max of each implementation, and for FabricQueue the median of
its paired ratios against each reference measured in the same round.

    Benchmarks/compare.py [--rounds 5] [--count 20000000] [--quick]

Writes Benchmarks/results/latest.json, Docs/images/throughput.svg and
Docs/images/latency.svg, and prints a Markdown table for Docs/Benchmarks.md.
Needs: swift, cc, c++ (Boost headers, optional), DPDK via pkg-config
(optional), taskset and chrt (util-linux; real-time priority when permitted).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build", "bench")
SWIFT_BIN = os.path.join(ROOT, ".build", "release")
HELPER = os.path.join(SWIFT_BIN, "fabricq-test-helper")
FABRICQ = os.path.join(SWIFT_BIN, "fabricq")


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, text=True, capture_output=True, cwd=ROOT, **kw).stdout


def build():
    os.makedirs(BIN, exist_ok=True)
    # One --product per invocation: SwiftPM builds only the last one named.
    for product in ("fabricq", "fabricq-test-helper"):
        sh(f"swift build -c release --product {product}")
    have = {"dpdk": False, "boost": False}
    try:
        flags = sh("pkg-config --cflags libdpdk").strip()
        sh(f"cc -O2 -std=gnu11 -DWITH_DPDK {flags} -o {BIN}/reference_rings Benchmarks/CReference/reference_rings.c -lrte_ring -lrte_eal")
        have["dpdk"] = True
    except subprocess.CalledProcessError:
        sh(f"cc -O2 -std=gnu11 -o {BIN}/reference_rings Benchmarks/CReference/reference_rings.c")
    if os.path.exists("/usr/include/boost/lockfree/spsc_queue.hpp"):
        sh(f"c++ -O2 -o {BIN}/boost_spsc Benchmarks/CReference/boost_spsc.cpp")
        have["boost"] = True
    sh(f"cc -O2 -o {BIN}/c_doorbell_pingpong Benchmarks/CReference/c_doorbell_pingpong.c")
    sh(f"cc -O2 -std=c11 -o {BIN}/c_spsc_ring Benchmarks/CReference/c_spsc_ring.c")
    return have


RT = "chrt -f 50 " if subprocess.run("chrt -f 50 true", shell=True).returncode == 0 else ""


def region(kind):
    path = f"/dev/shm/fq-compare-{os.getpid()}"
    if os.path.exists(path):
        os.unlink(path)
    sh(f"{FABRICQ} create {path} --kind {kind} --capacity 1024")
    return path


def spsc_over_region(producer, consumer, burst, count):
    """Producer on CPU 0, consumer on CPU 1, two processes over a fresh FabricQueue region."""
    path = region("spsc")
    try:
        c = subprocess.Popen(f"{RT}taskset -c 1 {consumer} {path} {count} {burst}", shell=True, stdout=subprocess.PIPE, text=True)
        sh(f"{RT}taskset -c 0 {producer} {path} {count} {burst}")
        return float(c.communicate()[0])
    finally:
        os.unlink(path)


def swift_spsc(burst, count):
    return spsc_over_region(f"{HELPER} raw-produce", f"{HELPER} raw-consume", burst, count)


def c_spsc(burst, count):
    # The plain C11 ring speaks the FabricQueue layout, so it runs over the very same kind of region.
    return spsc_over_region(f"{BIN}/c_spsc_ring produce", f"{BIN}/c_spsc_ring consume", burst, count)


def swift_mpsc2(burst, count):
    # Two producers pinned to CPUs 0 and 1, the consumer free: same as DPDK MP/SC below.
    # Normal priority: three spinners on two CPUs under SCHED_FIFO would starve one.
    path = region("mpsc")
    try:
        c = subprocess.Popen(f"{HELPER} raw-consume {path} {2 * count} {burst}", shell=True, stdout=subprocess.PIPE, text=True)
        ps = [subprocess.Popen(f"taskset -c {i} {HELPER} raw-produce {path} {count} {burst} {i}", shell=True) for i in (0, 1)]
        for p in ps:
            if p.wait() != 0:
                raise RuntimeError("producer failed")
        return float(c.communicate()[0])
    finally:
        os.unlink(path)


def ref(impl, workload, burst, count, rt=True):
    return float(sh(f"{RT if rt else ''}{BIN}/reference_rings {impl} {workload} {burst} {count}"))


def parse_pingpong(out):
    fields = dict(kv.split("=") for kv in out.split() if "=" in kv)
    return float(fields["p50_ns"]), float(fields["p99_ns"])


def workloads(have, count, pp_count):
    w = []
    for burst in (1, 8, 32):
        impls = {"FabricQueue": lambda b=burst: swift_spsc(b, count),
                 "C ring": lambda b=burst: c_spsc(b, count)}
        if have["dpdk"]:
            impls["DPDK SP/SC"] = lambda b=burst: ref("dpdk", "spsc", b, count)
        if have["boost"]:
            impls["Boost spsc_queue"] = lambda b=burst: float(sh(f"{RT}{BIN}/boost_spsc {b} {count}"))
        w.append({"name": f"SPSC burst {burst}", "unit": "M/s", "higher": True, "impls": impls})
    if have["dpdk"]:
        for burst in (1, 8, 32):
            w.append({"name": f"MPSC 2 producers burst {burst}", "unit": "M/s", "higher": True, "impls": {
                "FabricQueue": lambda b=burst: swift_mpsc2(b, count // 2),
                "DPDK MP/SC": lambda b=burst: ref("dpdk", "mpsc2", b, count // 2, rt=False)}})
    pp = lambda kind: lambda: parse_pingpong(sh(f"{RT}{HELPER} pingpong {kind} {pp_count} 0 0 1"))
    w.append({"name": "ping-pong busy poll", "unit": "ns", "higher": False, "impls": {
        "FabricQueue": pp("poll"),
        "C ring": lambda: tuple(map(float, sh(f"{RT}{BIN}/reference_rings c-ring pingpong 1 {pp_count}").split()))}})
    for kind in ("futex", "eventfd"):
        w.append({"name": f"ping-pong {kind}", "unit": "ns", "higher": False, "impls": {
            "FabricQueue": pp(kind),
            f"C {kind}": lambda k=kind: parse_pingpong(sh(f"{RT}{BIN}/c_doorbell_pingpong {k} {pp_count // 4}"))}})
    w.append({"name": "ping-pong adaptive", "unit": "ns", "higher": False, "impls": {"FabricQueue": pp("adaptive")}})
    return w


def summarize(work, rounds):
    """Runs rounds interleaved; returns per-implementation samples and paired ratios."""
    samples = {k: [] for k in work["impls"]}
    for _ in range(rounds):
        for name, run in work["impls"].items():
            samples[name].append(run())
    return samples


def median(xs):
    return statistics.median(xs)


def svg_bars(path, title, groups, unit, log=False):
    """Grouped horizontal bar chart, one group per workload, as plain SVG."""
    colors = {"FabricQueue": "#1f77b4", "C ring": "#7f7f7f", "DPDK SP/SC": "#d62728", "DPDK MP/SC": "#d62728",
              "Boost spsc_queue": "#2ca02c", "C futex": "#7f7f7f", "C eventfd": "#7f7f7f"}
    rows = sum(len(g[1]) for g in groups) + len(groups)
    width, bar, left = 760, 18, 230
    height = 50 + rows * (bar + 4)
    top = max(v for _, items in groups for _, v in items)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="15" font-weight="bold">{title}</text>']
    y = 40
    for gname, items in groups:
        out.append(f'<text x="10" y="{y + 12}" font-weight="bold">{gname}</text>')
        y += bar + 4
        for name, v in items:
            w = (width - left - 90) * v / top
            out.append(f'<text x="20" y="{y + 13}">{name}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="{colors.get(name, "#9467bd")}"/>')
            label = f"{v:.1f} {unit}" if v < 1000 else f"{v / 1000:.1f} µs"
            out.append(f'<text x="{left + w + 5:.1f}" y="{y + 13}">{label}</text>')
            y += bar + 4
    out.append("</svg>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--count", type=int, default=20_000_000)
    ap.add_argument("--pingpong-count", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="3 rounds, smaller counts (smoke test of the script)")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.count, a.pingpong_count = 3, 2_000_000, 20_000
    have = build()
    cpu = sh("grep -m1 'model name' /proc/cpuinfo").split(":")[1].strip()
    results = {"machine": {"cpu": cpu, "cpus": os.cpu_count(), "kernel": os.uname().release,
                           "priority": RT.strip() or "normal"},
               "command": " ".join(sys.argv), "rounds": a.rounds, "count": a.count, "workloads": []}
    lines = ["| workload | implementation | median | min – max | FabricQueue / this (median of paired rounds) |",
             "|---|---|---|---|---|"]
    tput, lat = [], []
    for work in workloads(have, a.count, a.pingpong_count):
        samples = summarize(work, a.rounds)
        entry = {"name": work["name"], "unit": work["unit"], "higherIsBetter": work["higher"], "implementations": {}}
        fq = samples["FabricQueue"]
        group = []
        for name, xs in samples.items():
            if work["unit"] == "ns":
                p50s = [x[0] for x in xs]; p99s = [x[1] for x in xs]
                rec = {"p50": p50s, "p99": p99s}
                shown = f"p50 {median(p50s):.0f} / p99 {median(p99s):.0f} ns"
                rng = f"p50 {min(p50s):.0f}–{max(p50s):.0f}"
                if name != "FabricQueue":
                    ratios = [f[0] / r[0] for f, r in zip(fq, xs)]
                    ratios99 = [f[1] / r[1] for f, r in zip(fq, xs)]
                    rec["pairedRatioP50"] = ratios; rec["pairedRatioP99"] = ratios99
                    ratio = f"p50 {median(ratios):.2f}× · p99 {median(ratios99):.2f}× (lower is better)"
                else:
                    ratio = "—"
                group.append((name, median(p50s)))
            else:
                rec = {"samples": xs}
                shown = f"{median(xs):.1f} M/s"
                rng = f"{min(xs):.1f}–{max(xs):.1f}"
                if name != "FabricQueue":
                    ratios = [f / r for f, r in zip(fq, xs)]
                    rec["pairedRatio"] = ratios
                    ratio = f"{median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
                else:
                    ratio = "—"
                group.append((name, median(xs)))
            entry["implementations"][name] = rec
            lines.append(f"| {work['name']} | {name} | {shown} | {rng} | {ratio} |")
            print(lines[-1], flush=True)
        (lat if work["unit"] == "ns" else tput).append((work["name"], group))
        results["workloads"].append(entry)
    os.makedirs(os.path.join(ROOT, "Benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "Benchmarks", "results", "latest.json"), "w") as f:
        json.dump(results, f, indent=1)
    svg_bars(os.path.join(ROOT, "Docs", "images", "throughput.svg"),
             "Throughput across processes, 64-byte descriptors (median, M/s; higher is better)", tput, "M/s")
    svg_bars(os.path.join(ROOT, "Docs", "images", "latency.svg"),
             "Ping-pong round trip between processes (median p50; lower is better)", lat, "ns")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

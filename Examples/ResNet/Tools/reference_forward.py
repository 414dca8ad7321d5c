#!/usr/bin/env python3
"""Reference forward pass for the Swift runtime's tests.

  reference_forward.py ENGINE INPUT.f32 BATCH OUTPUT.f32
reads BATCH images (float32 C×H×W each) and writes BATCH×classes float32 logits.
  reference_forward.py --check-seeded ENGINE
regenerates the first convolution of a seeded engine from its seed (the
documented splitmix64 rules) and compares it with the file.
"""
import sys

import numpy as np

from fabric_engine import Engine, splitmix64_units


def check_seeded(path):
    engine = Engine(path)
    m = engine.manifest
    first = m["layers"][0]
    w = engine.tensors[first["weight"]]
    b = engine.tensors[first["bias"]]
    cout, cin, kh, kw = w.shape
    fan_in = cin * kh * kw
    u = splitmix64_units(m["seed"], cout * fan_in + 4 * cout)
    raw = (2 * u[:cout * fan_in] - 1) * np.sqrt(6.0 / fan_in)
    rest = u[cout * fan_in:].reshape(4, cout)
    gamma, beta, mean, var = 0.5 + 0.5 * rest[0], 0.2 * rest[1] - 0.1, 0.2 * rest[2] - 0.1, 0.5 + rest[3]
    k = gamma / np.sqrt(var + 1e-5)
    want_w = (raw.reshape(cout, fan_in) * k[:, None]).astype(np.float32).reshape(w.shape)
    want_b = (beta - mean * k).astype(np.float32)
    if not (np.array_equal(want_w, w) and np.array_equal(want_b, b)):
        print(f"MISMATCH: max weight diff {np.abs(want_w - w).max()}, bias {np.abs(want_b - b).max()}")
        return 1
    print(f"seeded weights reproduced: {first['weight']} ({w.size} values) and {first['bias']} match bit for bit")
    return 0


def main():
    if sys.argv[1] == "--check-seeded":
        return check_seeded(sys.argv[2])
    engine_path, input_path, batch, output_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    engine = Engine(engine_path)
    spec = engine.manifest["input"]
    x = np.fromfile(input_path, dtype="<f4").reshape(batch, spec["channels"], spec["height"], spec["width"])
    logits = engine.forward(x)
    logits.astype("<f4").tofile(output_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""FabricQueue engine files in Python: reader, writer and a numpy reference
forward pass. Independent of the Swift runtime on purpose: the reference
convolution is a sum over kernel taps in float64, not im2col + sgemm.

Format: Examples/ResNet/Docs/EngineFormat.md.
"""
import json
import struct

import numpy as np

MAGIC = b"FQENGINE"
SIGNATURE_MAGIC = b"FQSIGN01"
HEADER_SIZE = 64
SIGNATURE_SIZE = 128
ALIGN = 64


def _align(n):
    return (n + ALIGN - 1) & ~(ALIGN - 1)


class Engine:
    """An engine file's manifest and tensors (signature not checked here)."""

    def __init__(self, path):
        data = open(path, "rb").read()
        if data[:8] != MAGIC:
            raise ValueError(f"{path}: not an engine file")
        version, header_size, manifest_offset, manifest_length, tensors_offset, tensors_length, signed_length, flags = \
            struct.unpack_from("<IIQQQQQQ", data, 8)
        if version != 1 or header_size != HEADER_SIZE or manifest_offset != HEADER_SIZE:
            raise ValueError(f"{path}: unsupported header")
        if signed_length != tensors_offset + tensors_length or len(data) < signed_length:
            raise ValueError(f"{path}: truncated or inconsistent")
        # Header flag bit 0: a signature block follows (the block itself is checked by the Swift loader).
        self.signed = bool(flags & 1) and len(data) == signed_length + SIGNATURE_SIZE and \
            data[signed_length:signed_length + 8] == SIGNATURE_MAGIC
        self.manifest = json.loads(data[HEADER_SIZE:HEADER_SIZE + manifest_length].decode("utf-8"))
        self.tensors = {}
        for t in self.manifest["tensors"]:
            count = int(np.prod(t["shape"]))
            start = tensors_offset + t["offset"]
            self.tensors[t["name"]] = np.frombuffer(data, dtype="<f4", count=count, offset=start).reshape(t["shape"])

    def forward(self, x):
        """Logits (N, classes) for x (N, C, H, W) float32, computed in float64."""
        values = {"input": x.astype(np.float64)}
        for layer in self.manifest["layers"]:
            src = values[layer["input"]]
            op = layer["op"]
            if op == "convolution":
                y = conv2d(src, self.tensors[layer["weight"]].astype(np.float64), layer.get("stride", 1),
                           layer.get("padding", [0, 0, 0, 0]), layer.get("groups", 1))
                if layer.get("bias"):
                    y = y + self.tensors[layer["bias"]].astype(np.float64)[None, :, None, None]
                if layer.get("residual"):
                    y = y + values[layer["residual"]]
                act = layer.get("activation", "none")
                if act == "relu":
                    y = np.maximum(y, 0)
                elif act == "relu6":
                    y = np.clip(y, 0, 6)
            elif op == "maxPool":
                y = max_pool(src, layer["kernel"], layer.get("stride", 1), layer.get("padding", [0, 0, 0, 0]))
            elif op == "globalAveragePool":
                y = src.mean(axis=(2, 3), keepdims=True)
            elif op == "linear":
                y = src[:, :, 0, 0] @ self.tensors[layer["weight"]].astype(np.float64).T
                if layer.get("bias"):
                    y = y + self.tensors[layer["bias"]].astype(np.float64)
                y = y[:, :, None, None]
            else:
                raise ValueError(f"unknown op {op}")
            values[layer["output"]] = y
        return values[self.manifest["output"]][:, :, 0, 0]


def conv2d(x, w, stride, pad, groups):
    n, c, h, wd = x.shape
    cout, _, kh, kw = w.shape
    top, left, bottom, right = pad
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    oh = (h + top + bottom - kh) // stride + 1
    ow = (wd + left + right - kw) // stride + 1
    out = np.zeros((n, cout, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            if groups == 1:
                out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j], optimize=True)
            else:
                out += patch * w[:, 0, i, j][None, :, None, None]
    return out


def max_pool(x, k, stride, pad):
    top, left, bottom, right = pad
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
    oh = (x.shape[2] + top + bottom - k) // stride + 1
    ow = (x.shape[3] + left + right - k) // stride + 1
    out = np.full((x.shape[0], x.shape[1], oh, ow), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, xp[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride])
    return out


def write(path, manifest, tensors):
    """Writes an unsigned engine: `tensors` is a list of (name, float32 array);
    the manifest's tensor table is replaced by their layout. Sign it with
    `resnet-engine sign`."""
    table, blobs, offset = [], [], 0
    for name, array in tensors:
        array = np.ascontiguousarray(array, dtype="<f4")
        table.append({"name": name, "shape": list(array.shape), "offset": offset})
        blobs.append((offset, array.tobytes()))
        offset = _align(offset + array.nbytes)
    manifest = dict(manifest, tensors=table)
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")
    tensors_offset = _align(HEADER_SIZE + len(body))
    header = MAGIC + struct.pack("<IIQQQQQQ", 1, HEADER_SIZE, HEADER_SIZE, len(body), tensors_offset, offset,
                                 tensors_offset + offset, 0)
    out = bytearray(tensors_offset + offset)
    out[:HEADER_SIZE] = header
    out[HEADER_SIZE:HEADER_SIZE + len(body)] = body
    for start, blob in blobs:
        out[tensors_offset + start:tensors_offset + start + len(blob)] = blob
    with open(path, "wb") as f:
        f.write(out)


def splitmix64_units(seed, count):
    """The first `count` values u in [0, 1) of the seeded engines' splitmix64 stream."""
    state = np.uint64(seed)
    idx = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = state + idx * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53

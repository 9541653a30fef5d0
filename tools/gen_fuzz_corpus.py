#!/usr/bin/env python3
"""Writes the fuzz harnesses' seed corpora under fuzz/corpus/<harness>/ from real files: the
committed PyTorch/safetensors fixtures, tiny images in every supported format (made here with
PIL, with and without EXIF orientation), a one-stage cascade in both OpenCV formats, a split
manifest, a run's config.json, and HTTP requests in fuzz_http's input layout.

    /usr/bin/python3 tools/gen_fuzz_corpus.py
"""
import io
import json
import os
import shutil
import struct

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(rel):
    return open(os.path.join(ROOT, "tests", "fixtures", rel), "rb").read()


def tiny_images():
    im = Image.new("RGB", (6, 5))
    im.putdata([(x * 40, y * 50, (x + y) * 20) for y in range(5) for x in range(6)])
    out = {}
    for fmt, ext, kw in (("JPEG", "jpg", {"quality": 90}), ("PNG", "png", {}), ("BMP", "bmp", {}), ("PPM", "ppm", {})):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        out["rgb." + ext] = b.getvalue()
    b = io.BytesIO()
    im.convert("L").save(b, "PPM")  # PGM
    out["gray.pgm"] = b.getvalue()
    for mode in ("L", "LA", "RGBA", "P", "I;16"):
        b = io.BytesIO()
        im.convert("L" if mode == "I;16" else mode).save(b, "PNG")
        out[f"png_{mode.replace(';', '')}.png"] = b.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    b = io.BytesIO()
    im.save(b, "JPEG", exif=exif.tobytes())
    out["exif6.jpg"] = b.getvalue()
    b = io.BytesIO()
    im.convert("CMYK").save(b, "JPEG")
    out["cmyk.jpg"] = b.getvalue()
    return out


CASCADE_NEW = b"""<?xml version="1.0"?>
<opencv_storage>
<cascade>
  <stageType>BOOST</stageType>
  <featureType>HAAR</featureType>
  <height>24</height>
  <width>24</width>
  <stageParams><boostType>GAB</boostType><minHitRate>0.995</minHitRate><maxFalseAlarm>0.5</maxFalseAlarm>
    <weightTrimRate>0.95</weightTrimRate><maxDepth>1</maxDepth><maxWeakCount>1</maxWeakCount></stageParams>
  <featureParams><maxCatCount>0</maxCatCount><featSize>1</featSize><mode>BASIC</mode></featureParams>
  <stageNum>1</stageNum>
  <stages>
    <_>
      <maxWeakCount>1</maxWeakCount>
      <stageThreshold>-1.</stageThreshold>
      <weakClassifiers>
        <_>
          <internalNodes>0 -1 0 -3.1e-02</internalNodes>
          <leafValues>8.3e-01 -8.3e-01</leafValues></_></weakClassifiers></_></stages>
  <features>
    <_>
      <rects>
        <_>6 4 12 9 -1.</_>
        <_>6 7 12 3 3.</_></rects></_></features></cascade>
</opencv_storage>
"""

CASCADE_OLD = b"""<?xml version="1.0"?>
<opencv_storage>
<tiny type_id="opencv-haar-classifier">
  <size>24 24</size>
  <stages>
    <_>
      <trees>
        <_>
          <_>
            <feature>
              <rects>
                <_>6 4 12 9 -1.</_>
                <_>6 7 12 3 3.</_></rects>
              <tilted>0</tilted></feature>
            <threshold>-3.1e-02</threshold>
            <left_val>8.3e-01</left_val>
            <right_val>-8.3e-01</right_val></_></_></trees>
      <stage_threshold>-1.</stage_threshold>
      <parent>-1</parent>
      <next>-1</next></_></stages></tiny>
</opencv_storage>
"""


def http(method, path, session=b"", ctype=b"", clen=b"", auth=b"", body=b""):
    return bytes([method]) + b"\0".join([path, session, ctype, clen, auth]) + b"\0" + body


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for f in ("tiny_ref.safetensors", "tiny_timm.safetensors"):
        put("fuzz_safetensors", f, fixture("io/" + f))
    put("fuzz_safetensors", "conv_groups.safetensors", fixture("nn/conv_groups.safetensors"))
    for f in ("tiny_zip.pth", "tiny_legacy.pth", "tiny_proto4_legacy.pth", "tiny_proto4_zip.pth", "evil_zip.pth",
              "tiny_nested_module.pth", "short_storage.pth"):
        put("fuzz_pth", f, fixture("io/" + f))
    imgs = tiny_images()
    for name, data in imgs.items():
        put("fuzz_image", name, data)
    put("fuzz_cascade", "new_format.xml", CASCADE_NEW)
    put("fuzz_cascade", "old_format.xml", CASCADE_OLD)
    put("fuzz_manifest", "split.csv", b"path,label,split\nAngry/img0.pgm,Angry,train\nAngry/img1.pgm,Angry,val\n"
        b"Happy/img0.pgm,Happy,test\nSuprise/img2.pgm,Suprise,val\n")
    put("fuzz_manifest", "crlf.csv", b"path,label,split\r\nHappy/img1.pgm,Happy,train\r\n")
    cfg = {"ferc_version": "0.1.0", "data": "data", "arch": "resnet18", "weights": "", "out": "run",
           "augment": "resize(64,64) | hflip | normalize(mean=0.5/0.5/0.5,std=0.25/0.25/0.25)", "split_manifest": "",
           "unfreeze_from": "", "recipe": "fer", "img_size": 64, "batch": 64, "freeze_epochs": 0, "epochs": 50,
           "lr": 0.002, "optimizer": "adamw", "weight_decay": 0.05, "momentum": 0.9, "schedule": "onecycle",
           "warmup_epochs": 1, "clip_value": 0, "clip_norm": 0, "label_smoothing": 0.1, "mixup": 0, "val_split": 0.1,
           "backbone_lr_mult": 0.1, "cache_features": False, "seed": "1", "threads": 2, "balance": "none",
           "patience": 0}
    put("fuzz_config", "config.json", json.dumps(cfg, indent=1).encode())
    png = imgs["rgb.png"]
    put("fuzz_http", "get_health", http(0, b"/healthz"))
    put("fuzz_http", "get_model_token", http(0, b"/api/v1/model", auth=b"Bearer fuzz-token"))
    put("fuzz_http", "post_png", http(1, b"/api/v1/recognize", ctype=b"image/png", clen=str(len(png)).encode(),
                                      auth=b"Bearer fuzz-token", body=png))
    put("fuzz_http", "post_session", http(1, b"/api/v1/recognize", session=b"cam-1", ctype=b"image/jpeg",
                                          auth=b"Bearer fuzz-token", body=imgs["rgb.jpg"]))
    put("fuzz_http", "post_classify", http(1, b"/api/v1/classify", ctype=b"application/octet-stream",
                                           auth=b"Bearer fuzz-token", body=imgs["gray.pgm"]))
    put("fuzz_http", "metrics", http(0, b"/metrics"))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"{OUT}: {sum(len(fs) for _, _, fs in os.walk(OUT))} files, {total} bytes")


if __name__ == "__main__":
    main()

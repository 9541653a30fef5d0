#!/usr/bin/python3
"""Writes tests/fixtures/faces/opencv_boxes.json: the boxes OpenCV's own detector
(cv2.CascadeClassifier.detectMultiScale, Debian's python3-opencv) finds on the shared photos,
for the face-detector parity tests, plus the hand-labelled boxes of dlib's training.xml and
testing.xml and OpenCV's precision/recall against them (IoU >= 0.5).

Usage: /usr/bin/python3 tools/gen_detect_fixtures.py [DATA_DIR]   (default $FERC_DATA or
../shared/data). Run from the repository root. The photos themselves are not copied; only
their relative paths and the boxes go into the fixture (Tom_Cruise_avp_2014_4.jpg, public
domain, is committed next to it for the test that runs without the data set).

Each configuration fixes a cascade and detectMultiScale's parameters; the gray image is
cv2.cvtColor(cv2.imread(path), COLOR_BGR2GRAY), which is what detectMultiScale does itself
with a colour image (imread applies the EXIF orientation). "raw" configurations use
minNeighbors=0, i.e. every window that passed the cascade, before grouping.
"""
import glob
import json
import os
import sys
import xml.etree.ElementTree as ET

import cv2

HAAR = "/usr/share/opencv4/haarcascades/"
LBP = "/usr/share/opencv4/lbpcascades/"

# name, cascade, scaleFactor, minNeighbors, minSize
CONFIGS = [
    ("default", HAAR + "haarcascade_frontalface_default.xml", 1.1, 3, 0),
    ("default_1.3_5_30", HAAR + "haarcascade_frontalface_default.xml", 1.3, 5, 30),
    ("alt2_trees", HAAR + "haarcascade_frontalface_alt2.xml", 1.1, 3, 0),
    ("lbp_improved", LBP + "lbpcascade_frontalface_improved.xml", 1.1, 3, 0),
    ("eyeglasses_tilted_trees", HAAR + "haarcascade_eye_tree_eyeglasses.xml", 1.1, 3, 0),
    ("default_raw", HAAR + "haarcascade_frontalface_default.xml", 1.1, 0, 0),
    ("upperbody_tilted_raw", HAAR + "haarcascade_upperbody.xml", 1.2, 0, 0),
    ("plate_oldformat_raw", HAAR + "haarcascade_licence_plate_rus_16stages.xml", 1.1, 0, 0),
]


def iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = min(ax2, bx2) - max(a[0], b[0])
    ih = min(ay2, by2) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def match_counts(dets, labels, thr=0.5):
    """Greedy one-to-one matching by best IoU; returns (tp, fp, fn)."""
    pairs = sorted(((iou(d, l), i, j) for i, d in enumerate(dets) for j, l in enumerate(labels)), reverse=True)
    used_d, used_l, tp = set(), set(), 0
    for v, i, j in pairs:
        if v < thr:
            break
        if i in used_d or j in used_l:
            continue
        used_d.add(i)
        used_l.add(j)
        tp += 1
    return tp, len(dets) - tp, len(labels) - tp


def read_labels(data):
    labels = {}
    for name in ("training.xml", "testing.xml"):
        root = ET.parse(os.path.join(data, "faces/dlib", name)).getroot()
        for img in root.iter("image"):
            boxes = []
            for b in img.iter("box"):
                if b.get("ignore") == "1":
                    continue
                boxes.append([int(b.get("left")), int(b.get("top")), int(b.get("width")), int(b.get("height"))])
            labels["faces/dlib/" + img.get("file")] = boxes
    return labels


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FERC_DATA", "../shared/data")
    cv2.setNumThreads(1)
    photos = sorted(glob.glob(os.path.join(data, "faces/*/*.jpg")))
    if not photos:
        sys.exit("no photos under %s/faces" % data)
    cascades = {}
    for name, path, sf, mn, ms in CONFIGS:
        c = cv2.CascadeClassifier(path)
        if c.empty():
            sys.exit("cannot load " + path)
        cascades[name] = c
    images = []
    for p in photos:
        rel = os.path.relpath(p, data)
        bgr = cv2.imread(p)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        entry = {"path": rel, "width": gray.shape[1], "height": gray.shape[0], "boxes": {}}
        for name, path, sf, mn, ms in CONFIGS:
            found = cascades[name].detectMultiScale(gray, scaleFactor=sf, minNeighbors=mn, minSize=(ms, ms))
            entry["boxes"][name] = sorted([int(v) for v in b] for b in found)
        images.append(entry)
        print("%-45s %s" % (rel, {k: len(v) for k, v in entry["boxes"].items()}))

    labels = read_labels(data)
    tp = fp = fn = 0
    for e in images:
        if e["path"] in labels:
            a, b, c = match_counts(e["boxes"]["default"], labels[e["path"]])
            tp, fp, fn = tp + a, fp + b, fn + c
    pr = {"config": "default", "iou": 0.5, "tp": tp, "fp": fp, "fn": fn,
          "precision": tp / float(tp + fp) if tp + fp else 0.0, "recall": tp / float(tp + fn) if tp + fn else 0.0}
    print("OpenCV vs hand labels (%d images, %d faces): precision %.3f recall %.3f (tp %d fp %d fn %d)"
          % (len(labels), tp + fn, pr["precision"], pr["recall"], tp, fp, fn))

    out = {
        "generator": "tools/gen_detect_fixtures.py",
        "opencv_version": cv2.__version__,
        "gray": "cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2GRAY)",
        "configs": [{"name": n, "cascade": c, "scale_factor": sf, "min_neighbors": mn, "min_size": ms}
                    for n, c, sf, mn, ms in CONFIGS],
        "images": images,
        "labels": labels,
        "opencv_vs_labels": pr,
    }
    os.makedirs("tests/fixtures/faces", exist_ok=True)
    # One image per line keeps the file small and its diffs readable.
    text = "{\n"
    for k in ("generator", "opencv_version", "gray", "configs", "opencv_vs_labels"):
        text += " %s: %s,\n" % (json.dumps(k), json.dumps(out[k]))
    text += ' "labels": %s,\n' % json.dumps(labels, separators=(",", ":"))
    text += ' "images": [\n' + ",\n".join("  " + json.dumps(e, separators=(",", ":")) for e in images)
    text += "\n ]\n}\n"
    json.loads(text)
    with open("tests/fixtures/faces/opencv_boxes.json", "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

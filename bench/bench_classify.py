#!/usr/bin/python3
"""Per-face classification cost on the default prediction path: ferc against PyTorch, in one
invocation, same thread count.

ferc: build/bench_classify --json (ferc_classify on one face crop: resize to the model's input,
normalize, the network on every test-time-augmentation view, probabilities averaged).
PyTorch: the same work for torchvision's model of the same architecture (eval mode, no_grad):
the face as a tensor, F.interpolate to the input size, normalize, the views stacked into one
batch (none: 1, flip: 2, tencrop: 10), softmax, mean. Both report the median milliseconds per
face over the timed calls after 5 warm-up calls.

Usage (repository root, after building):
    /usr/bin/python3 bench/bench_classify.py [--model M] [--threads 2] [--runs 200]
Run it on an otherwise idle machine.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time


def torch_classify(arch, size, classes, threads, runs):
    import torch
    import torch.nn.functional as F
    import torchvision
    torch.set_num_threads(threads)
    model = getattr(torchvision.models, arch)(num_classes=classes).eval()
    face = torch.randint(0, 256, (1, 1, 48, 48), dtype=torch.uint8)
    out = {}
    for name, views in (("none", 1), ("flip", 2), ("tencrop", 10)):
        times = []
        for i in range(5 + runs):
            t0 = time.perf_counter()
            with torch.no_grad():
                x = face.float().div(255.0)
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                x = ((x - 0.5) / 0.25).expand(1, 3, size, size)
                if views == 2:
                    x = torch.cat([x, x.flip(3)])
                elif views == 10:
                    p = F.pad(x, (size // 12,) * 4, mode="reflect")
                    crops = [p[..., :size, :size], p[..., :size, -size:], p[..., -size:, :size],
                             p[..., -size:, -size:], p[..., size // 12:size // 12 + size, size // 12:size // 12 + size]]
                    x = torch.cat(crops + [c.flip(3) for c in crops])
                model(x).softmax(1).mean(0)
            if i >= 5:
                times.append(1e3 * (time.perf_counter() - t0))
        out[name] = statistics.median(times)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bench_classify")
    ap.add_argument("--ferc", default="build/ferc")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    cmd = [a.bin, "--json", "--threads", str(a.threads), "--runs", str(a.runs)]
    if a.model:
        cmd += ["--model", a.model]
    fr = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    info = subprocess.run([a.ferc, "info", fr["model"]], check=True, capture_output=True, text=True).stdout
    arch, size, classes = "resnet18", 48, 6
    for line in info.splitlines():
        w = line.replace(":", " ").split()
        if len(w) >= 2 and w[0] == "architecture":
            arch = w[1]
        elif len(w) >= 2 and w[0] == "input":
            size = int(w[1].split("x")[-1])
        elif len(w) >= 2 and w[0] == "classes" and w[1].isdigit():
            classes = int(w[1])
    tr = torch_classify(arch, size, classes, a.threads, a.runs)
    print(f"one face on the prediction path, {arch} at {size}x{size}, {a.threads} threads, median of {a.runs} calls")
    print(f"{'tta':<10}{'ferc ms':>10}{'torch ms':>10}{'torch/ferc':>12}")
    for m in ("none", "flip", "tencrop"):
        f, t = fr[m + "_ms"], tr[m]
        print(f"{m:<10}{f:>10.3f}{t:>10.3f}{t / f:>11.2f}x" + ("   <- default" if m == "flip" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

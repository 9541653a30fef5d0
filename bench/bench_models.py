#!/usr/bin/python3
"""Training / inference speed of ferc against PyTorch, same configurations, same thread
count, in one invocation (so both see the same machine load).

For each configuration it runs `ferc bench ... --json` (a subprocess) and the same loop in
PyTorch: torchvision's model with `classes` outputs, random N(0,1) input, random labels;
train = model.train(), forward, F.cross_entropy, backward, SGD(lr 0.01, momentum 0.9) step;
infer = model.eval() under torch.no_grad(). Both report the median images/s over the timed
steps after the warm-up steps, and the peak resident memory of their process.

Usage (from the repository root, after building):
    /usr/bin/python3 bench/bench_models.py                         # the issue's table
    /usr/bin/python3 bench/bench_models.py --configs resnet18:48:4:train --steps 2 --warmup 1
    options: --ferc PATH (default build/ferc) --threads T (default 2) --steps S --warmup W
             --configs ARCH:IMG:BATCH:MODE,...  --json FILE (also write the rows as JSON)
Run it on an otherwise idle machine: a competing process can slow oneDNN down by 100x.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_CONFIGS = ("resnet152:48:64:train,densenet161:48:64:train,"
                   "resnet152:48:64:infer,densenet161:48:64:infer")


def torch_bench(arch, img, batch, mode, threads, steps, warmup, classes):
    import torch
    import torch.nn.functional as F
    import torchvision
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=classes)
    x = torch.randn(batch, 3, img, img)
    y = torch.randint(0, classes, (batch,))
    train = mode == "train"
    model.train(train)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if train else None
    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        if train:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"images_per_s": batch / med, "median_step_s": med,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def torch_subprocess(args):
    """Each torch configuration in a fresh process, so its peak memory is its own."""
    out = subprocess.run([sys.executable, __file__, "--torch-one"] + args, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferc", default=os.path.join("build", "ferc"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS)
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--torch-one", nargs=4, metavar=("ARCH", "IMG", "BATCH", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_one:
        arch, img, batch, mode = a.torch_one
        print(json.dumps(torch_bench(arch, int(img), int(batch), mode, a.threads, a.steps, a.warmup, a.classes)))
        return
    if not os.access(a.ferc, os.X_OK):
        sys.exit("no ferc binary at %s (build first, or pass --ferc)" % a.ferc)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    rows = []
    for cfg in a.configs.split(","):
        arch, img, batch, mode = cfg.split(":")
        common = ["--steps", str(a.steps), "--warmup", str(a.warmup), "--classes", str(a.classes),
                  "--threads", str(a.threads)]
        cmd = [a.ferc, "bench", "--arch", arch, "--img-size", img, "--batch", batch, "--mode", mode,
               "--json"] + common
        fr = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
        tr = torch_subprocess([arch, img, batch, mode] + common[:6] + ["--threads", str(a.threads)])
        row = {"arch": arch, "img_size": int(img), "batch": int(batch), "mode": mode, "threads": a.threads,
               "ferc_images_per_s": fr["images_per_s"], "torch_images_per_s": tr["images_per_s"],
               "ratio": fr["images_per_s"] / tr["images_per_s"],
               "ferc_peak_mib": fr["peak_rss_mib"], "torch_peak_mib": tr["peak_rss_mib"]}
        rows.append(row)
        print("done: %s" % cfg, file=sys.stderr)
    print("| arch | img | batch | mode | threads | ferc img/s | torch img/s | ferc/torch | ferc peak MiB | torch peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | %d | %s | %d | %.2f | %.2f | %.2fx | %.0f | %.0f |" % (
            r["arch"], r["img_size"], r["batch"], r["mode"], r["threads"], r["ferc_images_per_s"],
            r["torch_images_per_s"], r["ratio"], r["ferc_peak_mib"], r["torch_peak_mib"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Training / inference speed and memory of ferc against PyTorch, same configurations, same
thread count, in one invocation (so both see the same machine load).

For each configuration it runs `ferc bench ... --json` (a subprocess) in float32 and in bf16
(--precision bf16: mixed precision) and the same loop in PyTorch, in float32 and under its own
bf16 autocast (torch.autocast("cpu", torch.bfloat16)): torchvision's model with `classes`
outputs, random N(0,1) input, random labels; train = model.train(), forward, F.cross_entropy,
backward, SGD(lr 0.01, momentum 0.9) step; infer = model.eval() under torch.no_grad(). Each
run is its own process and reports the median images/s over the timed steps after the warm-up
steps, and its peak resident memory. Ratios are against PyTorch float32. Batch 1 rows also
give the latency (the median step in milliseconds).

Usage (from the repository root, after building):
    /usr/bin/python3 bench/bench_models.py                         # the issue's table
    /usr/bin/python3 bench/bench_models.py --configs resnet18:48:4:train --steps 2 --warmup 1
    options: --ferc PATH (default build/ferc) --threads T (default 2) --steps S --warmup W
             --configs ARCH:IMG:BATCH:MODE,...  --json FILE (also write the rows as JSON)
             --no-bf16 (float32 only)
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
                   "resnet152:48:64:infer,densenet161:48:64:infer,resnet18:48:1:infer")


def torch_bench(arch, img, batch, mode, threads, steps, warmup, classes, bf16=False):
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
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            loss.backward()
            opt.step()
        else:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
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
    ap.add_argument("--no-bf16", action="store_true", help="float32 only")
    ap.add_argument("--torch-one", nargs=5, metavar=("ARCH", "IMG", "BATCH", "MODE", "PREC"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_one:
        arch, img, batch, mode, prec = a.torch_one
        print(json.dumps(torch_bench(arch, int(img), int(batch), mode, a.threads, a.steps, a.warmup, a.classes,
                                     prec == "bf16")))
        return
    if not os.access(a.ferc, os.X_OK):
        sys.exit("no ferc binary at %s (build first, or pass --ferc)" % a.ferc)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    precs = ["fp32"] if a.no_bf16 else ["fp32", "bf16"]
    rows = []
    for cfg in a.configs.split(","):
        arch, img, batch, mode = cfg.split(":")
        common = ["--steps", str(a.steps), "--warmup", str(a.warmup), "--classes", str(a.classes),
                  "--threads", str(a.threads)]
        row = {"arch": arch, "img_size": int(img), "batch": int(batch), "mode": mode, "threads": a.threads}
        for prec in precs:
            cmd = [a.ferc, "bench", "--arch", arch, "--img-size", img, "--batch", batch, "--mode", mode,
                   "--precision", prec, "--json"] + common
            fr = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
            try:
                tr = torch_subprocess([arch, img, batch, mode, prec] + common)
            except subprocess.CalledProcessError as e:  # PyTorch's bf16 may not run everywhere
                print("torch %s %s failed: %s" % (cfg, prec, (e.stderr or "").strip().splitlines()[-1:]), file=sys.stderr)
                tr = {"images_per_s": float("nan"), "median_step_s": float("nan"), "peak_rss_mib": float("nan")}
            for who, r in (("ferc", fr), ("torch", tr)):
                row["%s_%s_images_per_s" % (who, prec)] = r["images_per_s"]
                row["%s_%s_step_ms" % (who, prec)] = 1000 * r["median_step_s"]
                row["%s_%s_peak_mib" % (who, prec)] = r["peak_rss_mib"]
            print("done: %s %s" % (cfg, prec), file=sys.stderr)
        rows.append(row)

    def ratio(r, who, prec):
        return r["%s_%s_images_per_s" % (who, prec)] / r["torch_fp32_images_per_s"]

    print("Speed, images/s (x PyTorch float32):")
    head = "| arch | img | batch | mode | ferc fp32 | ferc bf16 | torch fp32 | torch bf16 autocast |"
    print(head if len(precs) == 2 else "| arch | img | batch | mode | ferc fp32 | torch fp32 |")
    print("|---|---|---|---|---|---|---|---|" if len(precs) == 2 else "|---|---|---|---|---|---|")
    for r in rows:
        cells = ["%.2f (%.2fx)" % (r["ferc_%s_images_per_s" % p], ratio(r, "ferc", p)) for p in precs]
        cells += ["%.2f" % r["torch_fp32_images_per_s"]]
        if len(precs) == 2:
            cells += ["%.2f (%.2fx)" % (r["torch_bf16_images_per_s"], ratio(r, "torch", "bf16"))]
            cells = [cells[0], cells[1], cells[2], cells[3]]
        print("| %s | %d | %d | %s | %s |" % (r["arch"], r["img_size"], r["batch"], r["mode"], " | ".join(cells)))
    print("\nPeak resident memory, MiB (x PyTorch float32):")
    print("| arch | img | batch | mode | " + " | ".join("ferc %s" % p for p in precs) + " | " +
          " | ".join("torch %s" % p for p in precs) + " |")
    print("|---|---|---|---|" + "---|" * (2 * len(precs)))
    for r in rows:
        t32 = r["torch_fp32_peak_mib"]
        cells = ["%.0f (%.2fx)" % (r["ferc_%s_peak_mib" % p], r["ferc_%s_peak_mib" % p] / t32) for p in precs]
        cells += ["%.0f" % r["torch_%s_peak_mib" % p] for p in precs]
        print("| %s | %d | %d | %s | %s |" % (r["arch"], r["img_size"], r["batch"], r["mode"], " | ".join(cells)))
    lat = [r for r in rows if r["batch"] == 1]
    if lat:
        print("\nBatch-1 latency, ms per image (x PyTorch float32):")
        print("| arch | img | mode | " + " | ".join("ferc %s" % p for p in precs) + " | " +
              " | ".join("torch %s" % p for p in precs) + " |")
        print("|---|---|---|" + "---|" * (2 * len(precs)))
        for r in lat:
            t32 = r["torch_fp32_step_ms"]
            cells = ["%.2f (%.2fx)" % (r["ferc_%s_step_ms" % p], r["ferc_%s_step_ms" % p] / t32) for p in precs]
            cells += ["%.2f" % r["torch_%s_step_ms" % p] for p in precs]
            print("| %s | %d | %s | %s |" % (r["arch"], r["img_size"], r["mode"], " | ".join(cells)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

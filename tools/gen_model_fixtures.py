#!/usr/bin/python3
"""Writes the architecture fixtures of tests/test_models.c from Debian's torchvision (0.14).

For each architecture ferc builds, it records what torchvision's model has, so that the C test
can compare without python:

  tests/fixtures/models/<arch>.keys   one line per state_dict key, in state_dict order:
                                      "<name> <ndim> <dim0> <dim1> ..." (buffers included)
  tests/fixtures/models/summary.txt   "params <arch> <classes> <count>"  trainable parameters
                                      "flops <arch> <img> <flops>"       forward FLOPs, batch 1,
                                           2 x multiply-adds of Conv2d and Linear (forward hooks)
                                      "minsize <arch> <img>"             the smallest square
                                           input torch's eval-mode forward accepts

Run from the repository root:  /usr/bin/python3 tools/gen_model_fixtures.py
"""
import os
import sys

import torch
import torchvision

ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
         "densenet121", "densenet161", "densenet169", "densenet201"]
OUT = os.path.join("tests", "fixtures", "models")


def flops(model, size):
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total[0] += 2 * out.numel() * k
        elif isinstance(mod, torch.nn.Linear):
            total[0] += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total[0]


def min_size(model):
    for s in range(1, 256):
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, s, s))
            return s
        except RuntimeError:
            continue
    raise SystemExit("no valid input size below 256")


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    summary = []
    for arch in ARCHS:
        model = getattr(torchvision.models, arch)(weights=None).eval()
        with open(os.path.join(OUT, arch + ".keys"), "w") as f:
            for name, t in model.state_dict().items():
                f.write("%s %d%s\n" % (name, t.dim(), "".join(" %d" % d for d in t.shape)))
        summary.append("params %s 1000 %d" % (arch, sum(p.numel() for p in model.parameters())))
        six = getattr(torchvision.models, arch)(weights=None, num_classes=6)
        summary.append("params %s 6 %d" % (arch, sum(p.numel() for p in six.parameters())))
        for size in (48, 224):
            summary.append("flops %s %d %d" % (arch, size, flops(model, size)))
        summary.append("minsize %s %d" % (arch, min_size(model)))
        print(summary[-5:], file=sys.stderr)
    with open(os.path.join(OUT, "summary.txt"), "w") as f:
        f.write("# written by tools/gen_model_fixtures.py with torch %s, torchvision %s\n"
                % (torch.__version__, torchvision.__version__))
        f.write("\n".join(summary) + "\n")


if __name__ == "__main__":
    main()

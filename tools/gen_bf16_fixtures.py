#!/usr/bin/env python3
"""PyTorch's own bf16 on the tiny parity networks, the yardstick for ferc's mixed precision.

For tiny_resnet.pth and tiny_densenet.pth (tools/gen_parity_fixtures.py) in training mode, on
the fixture batch (tiny_ref.safetensors "input", labels 0, 3, 5, 1): the first step's
cross-entropy gradients in float32 and under torch.autocast("cpu", torch.bfloat16), and the
losses of ten plain SGD steps (lr 0.05) in each. bf16 rounding moves gradients by itself
(ReLU and max-pool decisions flip, batch norm's backward cancels): test_parity_tiny holds
ferc's bf16 to PyTorch's bf16 distance from float32, not to an absolute bound.

Writes tests/fixtures/parity/bf16_ref.safetensors:
  <net>.fp32.<param>   first-step gradient, float32
  <net>.bf16.<param>   the same under autocast
  <net>.loss_fp32, <net>.loss_bf16   (10,) losses before each SGD step
Run: /usr/bin/python3 tools/gen_bf16_fixtures.py
"""
import collections
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_parity_fixtures as G  # noqa: E402
from gen_pth_fixtures import write_safetensors  # noqa: E402

DIR = os.path.join("tests", "fixtures", "parity")
STEPS, LR = 10, 0.05


def read_input():
    import json
    import struct
    with open(os.path.join(DIR, "tiny_ref.safetensors"), "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    s, e = h["input"]["data_offsets"]
    return torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=torch.float32).reshape(h["input"]["shape"])


def run(cls, name, x, y, bf16):
    net = cls()
    net.load_state_dict(torch.load(os.path.join(DIR, "tiny_%s.pth" % name)))
    net.train()
    losses, first = [], None
    for k in range(STEPS):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        loss.backward()
        losses.append(float(loss))
        if k == 0:
            first = collections.OrderedDict((n, p.grad.detach().float().clone()) for n, p in net.named_parameters())
        with torch.no_grad():
            for p in net.parameters():
                p -= LR * p.grad
    return first, torch.tensor(losses, dtype=torch.float32)


def main():
    torch.set_num_threads(1)
    x, y = read_input(), torch.tensor([0, 3, 5, 1])
    out = collections.OrderedDict()
    for name, cls in (("resnet", G.TinyResNet), ("densenet", G.TinyDenseNet)):
        for prec in ("fp32", "bf16"):
            grads, losses = run(cls, name, x, y, prec == "bf16")
            for k, v in grads.items():
                out["%s.%s.%s" % (name, prec, k)] = v
            out["%s.loss_%s" % (name, prec)] = losses
        g32 = torch.cat([out[k].flatten() for k in out if k.startswith(name + ".fp32.")])
        g16 = torch.cat([out[k].flatten() for k in out if k.startswith(name + ".bf16.")])
        print("%s: torch bf16 first-step gradients %.4f rel L2 from float32; losses %s / %s" % (
            name, float((g16 - g32).norm() / g32.norm()), out[name + ".loss_fp32"][[0, -1]].tolist(),
            out[name + ".loss_bf16"][[0, -1]].tolist()))
    write_safetensors(os.path.join(DIR, "bf16_ref.safetensors"), out)


if __name__ == "__main__":
    main()

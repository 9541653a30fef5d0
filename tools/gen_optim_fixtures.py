#!/usr/bin/python3
"""Writes tests/fixtures/optim/optim.safetensors: torch 1.13's optimizers, clipping and lr
schedules on small random problems, for tests/test_optim.c.

Run from the repository root with Debian's torch:  /usr/bin/python3 tools/gen_optim_fixtures.py

Each update case has a flat parameter vector split into named parameters (SHAPES below, the
same list as in the C test), random initial values `<case>.params0`, and for each step k a
random gradient set `<case>.grads.<k>`. Torch then runs, per step: p.grad = g (only for
parameters that are not frozen), clipping if any, opt.step(), sched.step(); the parameters
after step k are `<case>.params.<k>`, the lr used by step k `<case>.lr` (F64), and the
pre-clip gradient norm `<case>.norm` when clipping by norm.

Schedule cases `sched.<name>.lr` (and `.momentum`) hold the lr of step index k = 0..N-1, i.e.
the lr torch's scheduler holds after k calls of scheduler.step().
"""
import json
import math
import os
import struct

import torch

OUT = os.path.join("tests", "fixtures", "optim", "optim.safetensors")
# Named parameters of the flat buffer, in order: a conv, its bias, a batch norm, a linear.
SHAPES = [("conv.weight", (8, 4, 3, 3)), ("conv.bias", (8,)), ("bn.weight", (8,)),
          ("bn.bias", (8,)), ("fc.weight", (6, 32)), ("fc.bias", (6,))]
STEPS = 8

tensors = {}


def put(name, t):
    tensors[name] = t.detach().contiguous()


def save_safetensors(path, named):
    """safetensors by hand: u64 header length, JSON header, raw little-endian data."""
    header, blobs, off = {"__metadata__": {"generator": "tools/gen_optim_fixtures.py",
                                           "torch": torch.__version__}}, [], 0
    for name in sorted(named):
        t = named[name]
        dt = {torch.float32: "F32", torch.float64: "F64"}[t.dtype]
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def make_params(gen):
    return [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.5) for _, s in SHAPES]


def flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts])


def cosine_warmup_lambda(base_lr, warmup, total, min_lr):
    """The documented sched_cosine formula as a LambdaLR factor."""
    ratio = min_lr / base_lr

    def f(k):
        if k < warmup:
            return (k + 1) / (warmup + 1)
        t = min(k - warmup, total - warmup)
        return ratio + (1 - ratio) * (1 + math.cos(math.pi * t / (total - warmup))) / 2
    return f


def run_case(name, seed, make_opt, make_sched=None, frozen=(), clip_value=None, clip_norm=None,
             grad_scales=None):
    gen = torch.Generator().manual_seed(seed)
    params = make_params(gen)
    for i in frozen:
        params[i].requires_grad_(False)
    put(name + ".params0", flat(params))
    opt = make_opt(params)
    sched = make_sched(opt) if make_sched else None
    lrs, norms = [], []
    for k in range(STEPS):
        scale = grad_scales[k] if grad_scales else 0.1
        grads = [torch.randn(p.shape, generator=gen) * scale for p in params]
        put("%s.grads.%d" % (name, k), flat(grads))
        for i, (p, g) in enumerate(zip(params, grads)):
            p.grad = None if i in frozen else g.clone()
        live = [p for p in params if p.grad is not None]
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(live, clip_value)
        if clip_norm is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(live, clip_norm)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched:
            sched.step()
        put("%s.params.%d" % (name, k), flat(params))
    put(name + ".lr", torch.tensor(lrs, dtype=torch.float64))
    if norms:
        put(name + ".norm", torch.tensor(norms, dtype=torch.float64))


def sched_case(name, make_sched, n, opt_kind="sgd"):
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = (torch.optim.SGD(p, lr=0.1, momentum=0.9) if opt_kind == "sgd"
           else torch.optim.Adam(p, lr=0.1))
    s = make_sched(opt)
    lrs, moms = [], []
    for k in range(n):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["momentum"] if opt_kind == "sgd" else g["betas"][0])
        if k < n - 1:
            opt.step()
            s.step()
    put("sched.%s.lr" % name, torch.tensor(lrs, dtype=torch.float64))
    put("sched.%s.momentum" % name, torch.tensor(moms, dtype=torch.float64))


def main():
    torch.set_num_threads(1)
    # 1. SGD, momentum, nesterov, coupled weight decay, constant lr.
    run_case("sgd_nesterov", 1, lambda ps: torch.optim.SGD(
        ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3))
    # 2. Adam (L2 decay) + OneCycle stepped per step (beta1 cycling) + clip by value.
    run_case("adam_onecycle", 2,
             lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-4),
             lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=STEPS),
             clip_value=0.05)
    # 3. AdamW + cosine with warmup + clip by global norm (some steps above, some below).
    run_case("adamw_cosine", 3,
             lambda ps: torch.optim.AdamW(ps, lr=3e-3, weight_decay=0.05),
             lambda o: torch.optim.lr_scheduler.LambdaLR(
                 o, cosine_warmup_lambda(3e-3, 2, STEPS, 1e-4)),
             clip_norm=1.0, grad_scales=[0.1, 0.01, 0.2, 0.02, 0.1, 0.005, 0.3, 0.05])
    # 4. SGD with parameter groups: weights at lr x1 with decay, biases and bn at lr x0.1
    #    without decay; bn.weight (index 2) frozen; StepLR(3, 0.5).
    def groups_opt(ps):
        return torch.optim.SGD([
            {"params": [ps[0], ps[4]]},
            {"params": [ps[1], ps[2], ps[3], ps[5]], "lr": 0.1 * 0.1, "weight_decay": 0.0},
        ], lr=0.1, momentum=0.9, weight_decay=5e-4)
    run_case("sgd_groups", 4, groups_opt,
             lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), frozen=(2,))
    # 5. Adam with amsgrad and L2 decay, constant lr.
    run_case("adam_amsgrad", 5, lambda ps: torch.optim.Adam(
        ps, lr=5e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-3, amsgrad=True))

    OC = torch.optim.lr_scheduler.OneCycleLR
    sched_case("onecycle_100", lambda o: OC(o, max_lr=0.1, total_steps=100), 101)
    sched_case("onecycle_37_adam", lambda o: OC(o, max_lr=3e-3, epochs=1, steps_per_epoch=37),
               38, "adam")
    sched_case("onecycle_50_three_linear", lambda o: OC(
        o, max_lr=0.2, total_steps=50, pct_start=0.25, anneal_strategy="linear",
        three_phase=True, div_factor=10, final_div_factor=100, base_momentum=0.8,
        max_momentum=0.9), 51)
    sched_case("cosine_warmup", lambda o: torch.optim.lr_scheduler.LambdaLR(
        o, cosine_warmup_lambda(0.1, 10, 100, 1e-5)), 110)
    sched_case("steplr", lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.3),
               100)
    save_safetensors(OUT, tensors)
    print("wrote", OUT, os.path.getsize(OUT), "bytes,", len(tensors), "tensors")


if __name__ == "__main__":
    main()

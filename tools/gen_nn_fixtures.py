#!/usr/bin/env python3
"""Writes the engine's reference fixtures with PyTorch (Debian's python3-torch 1.13).

Run with /usr/bin/python3 from the repository root:
    /usr/bin/python3 tools/gen_nn_fixtures.py            # every case
    /usr/bin/python3 tools/gen_nn_fixtures.py grouped    # only the grouped/SAME/channel-pad cases
Output: tests/fixtures/nn/*.safetensors, one file per case. Each holds
    x, y (output), dy (upstream gradient), dx (input gradient),
    p.<name> (parameters and buffers before the pass, torchvision names),
    g.<name> (parameter gradients), b.<name> (buffers after a training pass),
and, for the end-to-end cases, the parameters after 5 optimizer steps (s.<opt>.<name>).
The C tests (tests/test_nn_*.c) build the same graphs and compare.
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "nn")
torch.set_num_threads(1)


def save(path, tensors, meta=None):
    """Minimal safetensors writer (the safetensors package is not in Debian 12)."""
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype == torch.float32:
            dt = "F32"
        elif t.dtype == torch.int64:
            dt = "I64"
        elif t.dtype == torch.int32:
            dt = "I32"
        else:
            raise ValueError(t.dtype)
        data = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def randomize_bn(m, gen):
    """Non-trivial BN parameters and running statistics so that tests see them."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.weight.copy_(1 + 0.3 * torch.randn(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=gen))
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=gen))
                mod.running_var.copy_(1 + 0.2 * torch.rand(mod.running_var.shape, generator=gen))


def state(m, prefix):
    return {prefix + k: v.clone() for k, v in m.state_dict().items()}


def run_case(name, module, x, train=True, freeze=(), eval_modules=()):
    """One forward/backward pass; saves everything the C test compares."""
    module.train(train)
    for n in eval_modules:
        module.get_submodule(n).eval()
    for pn, p in module.named_parameters():
        if any(pn.startswith(f) for f in freeze):
            p.requires_grad_(False)
    t = state(module, "p.")
    x = x.clone().requires_grad_(True)
    y = module(x)
    gen = torch.Generator().manual_seed(1234)
    dy = torch.randn(y.shape, generator=gen)
    y.backward(dy)
    t["x"], t["y"], t["dy"], t["dx"] = x.detach(), y.detach(), dy, x.grad
    for pn, p in module.named_parameters():
        if p.grad is not None:
            t["g." + pn] = p.grad
    for bn, b in module.named_buffers():
        t["b." + bn] = b.clone()
    save(os.path.join(OUT, name + ".safetensors"), t)
    print(f"{name}: y {tuple(y.shape)}, {len(t)} tensors")


class Seq(nn.Module):
    """A chain of named modules (names become state_dict prefixes)."""

    def __init__(self, **mods):
        super().__init__()
        for k, v in mods.items():
            self.add_module(k, v)

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x


class ConcatAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(3, 16, 3, padding=1)
        self.c1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(16, 32, 1, bias=False)
        self.c3 = nn.Conv2d(64, 16, 1, bias=False)

    def forward(self, x):
        a = self.c0(x)
        b = self.c1(a)
        c = self.c2(a)
        d = self.c3(torch.cat([a, b, c], 1))
        return F.relu(d + b)


class Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(3, 16, 3, padding=1)
        self.mp = nn.MaxPool2d(3, 2, 1)
        self.ap = nn.AvgPool2d(2, 2)
        self.fc = nn.Linear(16, 6)

    def forward(self, x):
        x = self.ap(self.mp(self.c0(x)))
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.fc(torch.flatten(x, 1))


# ---- tiny end-to-end networks, same blocks as torchvision's ----

class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        idt = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            idt = self.downsample(x)
        return self.relu(out + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            idt = self.downsample(x)
        return self.relu(out + idt)


class TinyResNet(nn.Module):
    """conv1/bn1/relu/maxpool stem, layer1 = BasicBlock(16), layer2 = Bottleneck(16->8x4, stride 2)."""

    def __init__(self, classes=6):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(16, 16))
        ds = nn.Sequential(nn.Conv2d(16, 32, 1, 2, bias=False), nn.BatchNorm2d(32))
        self.layer2 = nn.Sequential(Bottleneck(16, 8, 2, ds))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, feats):
        x = torch.cat(feats, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, n, cin, growth, bn_size):
        super().__init__()
        for i in range(n):
            self.add_module("denselayer%d" % (i + 1), DenseLayer(cin + i * growth, growth, bn_size))

    def forward(self, x):
        feats = [x]
        for _, layer in self.items():
            feats.append(layer(feats))
        return torch.cat(feats, 1)


class Transition(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(cin, cout, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, 2))


class TinyDenseNet(nn.Module):
    """Stem, a dense block of 2 layers (growth 16, bn_size 2), a transition, norm5, head."""

    def __init__(self, classes=6):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, 32, 3, 1, 1, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(32))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        self.features.add_module("denseblock1", DenseBlock(2, 32, 16, 2))
        self.features.add_module("transition1", Transition(64, 32))
        self.features.add_module("norm5", nn.BatchNorm2d(32))
        self.classifier = nn.Linear(32, classes)

    def forward(self, x):
        f = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(f, (1, 1)), 1))


def e2e(name, make, x, labels):
    """Logits, loss, every gradient; then 5 steps of each optimizer recipe."""
    torch.manual_seed(7)
    base = make()
    gen = torch.Generator().manual_seed(99)
    randomize_bn(base, gen)
    t = state(base, "p.")
    m = make()
    m.load_state_dict(base.state_dict())
    m.train()
    logits = m(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    t["x"], t["labels"], t["logits"], t["loss"] = x, labels.to(torch.int32), logits.detach(), loss.detach().reshape(1)
    for pn, p in m.named_parameters():
        t["g." + pn] = p.grad.clone()
    for bn, b in m.named_buffers():
        t["b." + bn] = b.clone()

    def steps(tag, opt_fn, sched_fn=None, clip=None, freeze=()):
        mm = make()
        mm.load_state_dict(base.state_dict())
        mm.train()
        frozen_mods = set()
        for pn, p in mm.named_parameters():
            if any(pn.startswith(f) for f in freeze):
                p.requires_grad_(False)
                frozen_mods.add(pn.rsplit(".", 1)[0])
        params = [p for p in mm.parameters() if p.requires_grad]
        opt = opt_fn(params)
        sched = sched_fn(opt) if sched_fn else None
        losses = []
        for _ in range(5):
            for mn in frozen_mods:  # frozen batch norms use running statistics
                mod = mm.get_submodule(mn)
                if isinstance(mod, nn.BatchNorm2d):
                    mod.eval()
            opt.zero_grad()
            l = F.cross_entropy(mm(x), labels)
            l.backward()
            losses.append(l.item())
            if clip == "value":
                torch.nn.utils.clip_grad_value_(params, 0.01)
            elif clip == "norm":
                torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if sched:
                sched.step()
        for k, v in mm.state_dict().items():
            t["s.%s.%s" % (tag, k)] = v.clone()
        t["s.%s.losses" % tag] = torch.tensor(losses)

    steps("sgd", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3))
    steps("adam", lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=0.01),
          lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=5), clip="value")
    # eps 1e-4: with the default 1e-8, Adam turns the ~1e-9 rounding noise of gradients that
    # are exactly zero in exact arithmetic (a BN shift followed by another training-mode BN)
    # into lr-sized steps of random sign, and no two implementations can agree on those.
    steps("adamw", lambda p: torch.optim.AdamW(p, lr=2e-3, weight_decay=0.05, eps=1e-4),
          lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5), clip="norm")
    frozen = ("conv1", "bn1", "layer1") if "resnet" in name else ("features.conv0", "features.norm0", "features.denseblock1")
    steps("frozen", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), freeze=frozen)
    save(os.path.join(OUT, name + ".safetensors"), t, {"frozen": ",".join(frozen)})
    print(f"{name}: loss {loss.item():.6f}, {len(t)} tensors")


def ce_cases():
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(8, 6, generator=gen) * 2
    y = torch.randint(0, 6, (8,), generator=gen)
    w = torch.rand(6, generator=gen) + 0.5
    t = {"logits": z, "labels": y.to(torch.int32), "weights": w}
    for tag, ls, ww in (("plain", 0.0, None), ("smooth", 0.1, None), ("weighted", 0.0, w), ("both", 0.2, w)):
        zz = z.clone().requires_grad_(True)
        l = F.cross_entropy(zz, y, weight=ww, label_smoothing=ls)
        l.backward()
        t["loss." + tag] = l.detach().reshape(1)
        t["grad." + tag] = zz.grad
    save(os.path.join(OUT, "cross_entropy.safetensors"), t)
    print("cross_entropy")


def soft_ce_cases():
    """Cross-entropy with class probabilities as targets (knowledge distillation's soft
    targets; own seed and file, so that adding it changed no other fixture)."""
    gen = torch.Generator().manual_seed(21)
    z = torch.randn(8, 6, generator=gen) * 2
    q = torch.softmax(torch.randn(8, 6, generator=gen) * 1.5, dim=1)
    q[3] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])  # a one-hot row: the hard loss
    u = q.clone()
    u[5] *= 0.5  # a row that does not sum to 1: torch does not renormalize
    t = {"logits": z, "targets": q, "targets_unnormalized": u}
    for tag, tt in (("soft", q), ("unnormalized", u)):
        zz = z.clone().requires_grad_(True)
        l = F.cross_entropy(zz, tt)
        l.backward()
        t["loss." + tag] = l.detach().reshape(1)
        t["grad." + tag] = zz.grad
    save(os.path.join(OUT, "soft_cross_entropy.safetensors"), t)
    print("soft_cross_entropy")


class BlazeBlock(nn.Module):
    """BlazeFace's ops as TensorFlow defines them: a 5x5 stride-2 convolution with "SAME"
    padding (asymmetric: 1 top/left, 2 bottom/right on an even input), a depthwise 3x3 stride-2
    SAME convolution (0 / 1), a 1x1 convolution, and a max-pooled shortcut widened by zero
    channels (tf.pad on C)."""

    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(3, 8, 5, 2, 0)
        self.dw = nn.Conv2d(8, 8, 3, 2, 0, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 16, 1)

    def forward(self, x):
        y1 = F.relu(self.c0(F.pad(x, (1, 2, 1, 2))))
        y2 = self.dw(F.pad(y1, (0, 1, 0, 1)))
        y3 = self.pw(y2)
        sc = F.pad(F.max_pool2d(y1, 2, 2), (0, 0, 0, 0, 0, 8))
        return F.relu(y3 + sc)


def grouped_cases():
    """Grouped/depthwise convolution, TensorFlow SAME padding, channel padding (own seed, so
    that adding them changed no other fixture)."""
    torch.manual_seed(11)
    g = torch.Generator().manual_seed(12)
    run_case("blaze_block", BlazeBlock(), torch.randn(2, 3, 8, 8, generator=g))
    run_case("conv_groups", Seq(c=nn.Conv2d(8, 12, 3, 1, 1, groups=4)), torch.randn(2, 8, 5, 5, generator=g))


def main():
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:] == ["grouped"]:
        return grouped_cases()
    if sys.argv[1:] == ["soft"]:
        return soft_ce_cases()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g)

    run_case("conv_first", Seq(c=nn.Conv2d(3, 16, 3, 1, 1)), r(2, 3, 9, 9))
    run_case("conv_s2", Seq(c0=nn.Conv2d(3, 16, 3, 1, 1), c=nn.Conv2d(16, 32, 3, 2, 1, bias=False)), r(2, 3, 8, 8))
    run_case("conv_1x1_s2", Seq(c0=nn.Conv2d(3, 16, 3, 1, 1), c=nn.Conv2d(16, 32, 1, 2, 0, bias=False)), r(2, 3, 7, 7))
    stem = Seq(c=nn.Conv2d(3, 16, 7, 2, 3, bias=False), bn=nn.BatchNorm2d(16), relu=nn.ReLU(), mp=nn.MaxPool2d(3, 2, 1))
    randomize_bn(stem, g)
    run_case("stem", stem, r(2, 3, 20, 20))
    bnev = Seq(c0=nn.Conv2d(3, 16, 3, 1, 1), bn=nn.BatchNorm2d(16), relu=nn.ReLU())
    randomize_bn(bnev, g)
    run_case("bn_frozen", bnev, r(2, 3, 6, 6), freeze=("bn",), eval_modules=("bn",))
    bninf = Seq(c0=nn.Conv2d(3, 16, 3, 1, 1), bn=nn.BatchNorm2d(16))
    randomize_bn(bninf, g)
    run_case("bn_eval", bninf, r(2, 3, 6, 6), train=False)
    run_case("pools", Pools(), r(2, 3, 9, 9))
    run_case("concat_add", ConcatAdd(), r(2, 3, 6, 6))
    run_case("linear", Seq(fc=nn.Linear(20, 6)), r(4, 20, 1, 1).flatten(1))
    ce_cases()
    e2e("tiny_resnet", TinyResNet, r(4, 3, 12, 12), torch.tensor([0, 3, 5, 1]))
    e2e("tiny_densenet", TinyDenseNet, r(4, 3, 12, 12), torch.tensor([2, 4, 0, 1]))
    grouped_cases()
    soft_ce_cases()


if __name__ == "__main__":
    sys.exit(main())

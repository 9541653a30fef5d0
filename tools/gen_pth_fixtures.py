#!/usr/bin/python3
"""Writes the weight-file fixtures of tests/test_io*.c with Debian's torch (1.13).

Run from the repository root:  /usr/bin/python3 tools/gen_pth_fixtures.py

tests/fixtures/io/ (small, committed, so CI needs no python):
  tiny_zip.pth, tiny_legacy.pth   a tiny conv+bn+linear net's state_dict in both torch.save formats,
                                  with float16 and bfloat16 tensors and three views sharing one
                                  storage (a transpose, a row slice with an offset, a strided
                                  column), so offsets and strides are exercised
  tiny_ref.safetensors            the same tensors as contiguous float32 (int64 for
                                  num_batches_tracked), written by hand here (no safetensors
                                  package): what the importer must produce
  tiny_nested_module.pth          {'epoch': 3, 'state_dict': {'module.<key>': ...}} (zip)
  tiny_network_legacy.pth         {'network.<key>': ...} (legacy), as the original study saved
  tiny_model_key.pth              {'model': state_dict, 'arch': 'tiny'} (zip)
  tiny_proto4_zip.pth             pickle protocol 4, values are nn.Parameters (zip)
  tiny_proto4_legacy.pth          pickle protocol 4 (legacy)
  densenet_oldkeys.pth            a few tensors under torchvision's old DenseNet key names
                                  ('...denselayer1.norm.1.weight'), legacy format
  tiny_timm.safetensors           timm-style safetensors (same keys), F32/F16/BF16/I64 tensors
  no_datapkl.pth                  a zip archive without data.pkl
  evil_zip.pth                    a zip whose data.pkl calls os.system (built by hand, never run)
  short_storage.pth               a zip whose data/<key> is shorter than its tensor needs

--big DIR (optional, not committed: about 700 MB) writes random-initialised torchvision
resnet152 and densenet161 (1000 classes; batch-norm statistics and affine parameters randomised
too, so eval-mode batch norm matters) in both formats:
  resnet152-<sha256[:8]>.pth, densenet161-<sha256[:8]>.pth   zip format, torchvision-style names
  resnet152_legacy.pth, densenet161_legacy.pth              legacy format; the DenseNet one uses
                                                            the old 'norm.1' key names
  resnet152_ref.safetensors, densenet161_ref.safetensors    input_224 (2,3,224,224), logits_224
                                                            (2,1000), input_48 (2,3,48,48),
                                                            logits_48 (2,1000), eval mode, F32
"""
import collections
import hashlib
import io
import json
import os
import re
import struct
import sys
import zipfile

import torch

OUT = os.path.join("tests", "fixtures", "io")

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata=None):
    """Minimal safetensors writer: contiguous little-endian data in dict order."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(x.mean((2, 3)))


def tiny_state_dict():
    torch.manual_seed(1234)
    m = Tiny()
    # Give the batch-norm buffers values that are not their defaults.
    with torch.no_grad():
        m.bn1.running_mean.uniform_(-1, 1)
        m.bn1.running_var.uniform_(0.5, 2)
        m.bn1.num_batches_tracked.fill_(7)
    sd = m.state_dict()
    sd["fc.weight"] = sd["fc.weight"].half()            # float16 storage
    sd["bn1.weight"] = sd["bn1.weight"].bfloat16()      # bfloat16 storage
    # Three views of one storage: base (4,6), its transpose, a row slice with an offset and a
    # strided column; torch.save writes the storage once.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8 - 1
    sd["shared.base"] = base
    sd["shared.transposed"] = base.t()
    sd["shared.rows"] = base[1:3]
    sd["shared.column"] = base[:, 2]
    sd["shared.half_view"] = base.half()[2:, 1::2]    # its own (half) storage, offset + strides
    return sd


def reference(sd):
    ref = collections.OrderedDict()
    for k, v in sd.items():
        ref[k] = v.to(torch.int64) if not v.is_floating_point() else v.float().contiguous()
    return ref


def evil_pickle():
    # GLOBAL os.system, args ('echo pwned',), REDUCE: what a malicious checkpoint does.
    # Assembled by hand and never unpickled here.
    cmd = b"echo pwned"
    return (b"\x80\x02" + b"cos\nsystem\n" + b"X" + struct.pack("<I", len(cmd)) + cmd +
            b"\x85" + b"R" + b".")


def rewrite_zip(src, dst, drop=None, replace=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if drop and drop(info.filename):
                continue
            data = zin.read(info.filename)
            if replace:
                data = replace(info.filename, data)
            zout.writestr(info.filename, data)


def small_fixtures():
    os.makedirs(OUT, exist_ok=True)
    sd = tiny_state_dict()
    p = lambda n: os.path.join(OUT, n)
    torch.save(sd, p("tiny_zip.pth"))
    torch.save(sd, p("tiny_legacy.pth"), _use_new_zipfile_serialization=False)
    write_safetensors(p("tiny_ref.safetensors"), reference(sd))

    nested = {"epoch": 3, "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items())}
    torch.save(nested, p("tiny_nested_module.pth"))
    torch.save(collections.OrderedDict(("network." + k, v) for k, v in sd.items()),
               p("tiny_network_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save({"model": sd, "arch": "tiny"}, p("tiny_model_key.pth"))
    # Pickle protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE, ...) and nn.Parameter values
    # (torch._utils._rebuild_parameter), as a dict of a module's parameters would be saved.
    params = collections.OrderedDict((k, torch.nn.Parameter(v, requires_grad=v.is_floating_point()))
                                     for k, v in sd.items())
    torch.save(params, p("tiny_proto4_zip.pth"), pickle_protocol=4)
    torch.save(sd, p("tiny_proto4_legacy.pth"), pickle_protocol=4, _use_new_zipfile_serialization=False)

    torch.manual_seed(5)
    old = collections.OrderedDict()
    for name, shape in [("features.conv0.weight", (4, 3, 3, 3)),
                        ("features.denseblock1.denselayer1.norm.1.weight", (4,)),
                        ("features.denseblock1.denselayer1.norm.1.running_var", (4,)),
                        ("features.denseblock1.denselayer1.conv.1.weight", (8, 4, 1, 1)),
                        ("features.denseblock1.denselayer12.conv.2.weight", (2, 8, 3, 3)),
                        ("features.denseblock1.denselayer12.relu.2.bias", (2,))]:
        old[name] = torch.randn(shape)
    torch.save(old, p("densenet_oldkeys.pth"), _use_new_zipfile_serialization=False)

    timm = collections.OrderedDict()
    for k, v in reference(sd).items():
        timm[k] = v
    timm["conv1.weight"] = timm["conv1.weight"].half()
    timm["fc.weight"] = timm["fc.weight"].bfloat16()
    write_safetensors(p("tiny_timm.safetensors"), timm, {"format": "pt"})

    rewrite_zip(p("tiny_zip.pth"), p("no_datapkl.pth"), drop=lambda n: n.endswith("data.pkl"))
    rewrite_zip(p("tiny_zip.pth"), p("evil_zip.pth"),
                replace=lambda n, d: evil_pickle() if n.endswith("data.pkl") else d)
    # Storage of 'conv1.weight' (the first one written, key '0') cut to half its bytes.
    rewrite_zip(p("tiny_zip.pth"), p("short_storage.pth"),
                replace=lambda n, d: d[: len(d) // 2] if n.endswith("/data/0") else d)
    for n in sorted(os.listdir(OUT)):
        print("%-28s %7d bytes" % (n, os.path.getsize(p(n))))


def randomise_bn(model, gen):
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                # A residual branch's last batch norm is scaled down so that 50 random
                # bottlenecks keep the activations (and logits) of order one instead of 1e9,
                # which keeps the float32 parity comparison well conditioned.
                scale = 0.2 if name.endswith(".bn3") else 1.0
                m.weight.copy_(scale * (1 + 0.1 * torch.randn(c, generator=gen)))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(100)


def big_fixtures(out):
    import torchvision
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    for arch in ["resnet152", "densenet161"]:
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)()
        randomise_bn(model, torch.Generator().manual_seed(1))
        model.eval()
        sd = model.state_dict()
        tmp = os.path.join(out, arch + "_tmp.pth")
        torch.save(sd, tmp)
        with open(tmp, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        os.replace(tmp, os.path.join(out, "%s-%s.pth" % (arch, digest[:8])))
        legacy = sd
        if arch.startswith("densenet"):
            # torchvision's original DenseNet checkpoints used 'norm.1'; its loader renames them.
            pat = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))((?:[12])\.(?:weight|bias|running_mean|running_var))$")
            legacy = collections.OrderedDict()
            for k, v in sd.items():
                m = pat.match(k)
                legacy[m.group(1) + "." + m.group(2) if m else k] = v
        torch.save(legacy, os.path.join(out, arch + "_legacy.pth"), _use_new_zipfile_serialization=False)
        gen = torch.Generator().manual_seed(2)
        ref = collections.OrderedDict()
        with torch.no_grad():
            for size in (224, 48):
                x = torch.randn(2, 3, size, size, generator=gen)
                ref["input_%d" % size] = x
                ref["logits_%d" % size] = model(x)
        write_safetensors(os.path.join(out, arch + "_ref.safetensors"), ref, {"arch": arch})
        print("%s: max |logit| %.3g at 224, %.3g at 48" % (arch, ref["logits_224"].abs().max(),
                                                           ref["logits_48"].abs().max()))
    for n in sorted(os.listdir(out)):
        print("%-40s %10d bytes" % (n, os.path.getsize(os.path.join(out, n))))


def main():
    args = sys.argv[1:]
    if args[:1] == ["--big"] and len(args) == 2:
        big_fixtures(args[1])
    elif not args:
        small_fixtures()
    else:
        sys.exit("usage: gen_pth_fixtures.py [--big DIR]")


if __name__ == "__main__":
    main()

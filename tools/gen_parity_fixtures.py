#!/usr/bin/python3
"""Writes the fixtures of tests/test_parity_*.c with Debian's torch 1.13 / torchvision 0.14.

Run from the repository root:  /usr/bin/python3 tools/gen_parity_fixtures.py

tests/fixtures/parity/ (small, committed, so CI needs no python):
  Two small networks assembled from torchvision's OWN classes, with torchvision's module
  names, so their state_dict keys look exactly like resnet*/densenet* keys:
    tiny_resnet    conv1(3->16, 7x7/2) bn1 relu maxpool, layer1 = [BasicBlock(16, 16)],
                   layer2 = [Bottleneck(16, 8, stride 2, downsample conv1x1+bn)], avgpool, fc(32->6)
    tiny_densenet  features: conv0(3->16, 7x7/2) norm0 relu0 pool0, denseblock1 = _DenseBlock(2
                   layers, growth 8, bn_size 4), transition1 = _Transition(32->16), denseblock2
                   = _DenseBlock(2, growth 8), norm5; relu, adaptive avgpool, classifier(32->6)
  Batch-norm statistics and affine parameters are randomised so eval-mode batch norm matters.
    tiny_resnet.pth, tiny_densenet.pth           torch.save zip format
    tiny_resnet_legacy.pth                       legacy format
    tiny_densenet_legacy.pth                     legacy format, keys under 'network.' (the
                                                 original study's wrapper) and in torchvision's
                                                 old DenseNet spelling ('norm.1' for 'norm1')
    tiny_resnet_timm.safetensors                 timm-hub style: F32, no num_batches_tracked
    tiny_ref.safetensors                         input (4,3,32,32), resnet_logits, densenet_logits
                                                 (4,6), eval mode; also input_48 / *_logits_48
  Preprocessing reference for ferc predict (torchvision Resize((32, 32)) on PIL + ToTensor +
  Normalize(ImageNet)):
    rgb_40x30.png, gray_50x50.png, gray_32x32.png  and  preprocess_ref.safetensors
                                                 (one (3,32,32) tensor per image, same stem)

--big DIR (optional, not committed): the full-size check uses tools/gen_pth_fixtures.py --big DIR
(random resnet152 / densenet161 in both .pth formats plus reference logits at 224 and 48); this
option simply runs it. Then: FERC_BIG_FIXTURES=DIR ctest -R test_parity_big
"""
import collections
import os
import re
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image
from torchvision.models.densenet import _DenseBlock, _Transition
from torchvision.models.resnet import BasicBlock, Bottleneck

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_pth_fixtures import randomise_bn, write_safetensors  # noqa: E402

OUT = os.path.join("tests", "fixtures", "parity")


class TinyResNet(nn.Module):
    def __init__(self, classes=6):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7, 2, 3, bias=False)
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


class TinyDenseNet(nn.Module):
    def __init__(self, classes=6):
        super().__init__()
        self.features = nn.Sequential(collections.OrderedDict([
            ("conv0", nn.Conv2d(3, 16, 7, 2, 3, bias=False)),
            ("norm0", nn.BatchNorm2d(16)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, 2, 1)),
            ("denseblock1", _DenseBlock(num_layers=2, num_input_features=16, bn_size=4, growth_rate=8, drop_rate=0)),
            ("transition1", _Transition(32, 16)),
            ("denseblock2", _DenseBlock(num_layers=2, num_input_features=16, bn_size=4, growth_rate=8, drop_rate=0)),
            ("norm5", nn.BatchNorm2d(32)),
        ]))
        self.classifier = nn.Linear(32, classes)

    def forward(self, x):
        x = torch.relu(self.features(x))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1))


def old_densenet_keys(sd, prefix):
    pat = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    out = collections.OrderedDict()
    for k, v in sd.items():
        m = pat.match(k)
        out[prefix + (m.group(1) + "." + m.group(2) if m else k)] = v
    return out


def preprocess_fixtures(gen):
    tf = T.Compose([T.Resize((32, 32)), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    yy, xx = np.mgrid[0:64, 0:64]
    noise = torch.randint(0, 256, (64, 64, 3), generator=gen).numpy()
    base = ((xx * 3 + yy * 2) % 256)[..., None] * 0.6 + noise * 0.4
    imgs = {
        "rgb_40x30": Image.fromarray(base[:30, :40].astype(np.uint8), "RGB"),
        "gray_50x50": Image.fromarray(base[:50, :50, 0].astype(np.uint8), "L"),
        "gray_32x32": Image.fromarray(base[:32, :32, 1].astype(np.uint8), "L"),
    }
    ref = collections.OrderedDict()
    for name, im in imgs.items():
        im.save(os.path.join(OUT, name + ".png"))
        ref[name] = tf(im.convert("RGB"))   # gray replicated to 3 channels, as ferc does
    write_safetensors(os.path.join(OUT, "preprocess_ref.safetensors"), ref)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--big"] and len(args) == 2:
        here = os.path.dirname(os.path.abspath(__file__))
        sys.exit(subprocess.call([sys.executable, os.path.join(here, "gen_pth_fixtures.py"), "--big", args[1]]))
    if args:
        sys.exit("usage: gen_parity_fixtures.py [--big DIR]")
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    nets = {"resnet": TinyResNet(), "densenet": TinyDenseNet()}
    ref = collections.OrderedDict()
    x = torch.randn(4, 3, 32, 32, generator=gen)
    x48 = torch.randn(2, 3, 48, 48, generator=gen)
    ref["input"] = x
    ref["input_48"] = x48
    for name, net in nets.items():
        randomise_bn(net, gen)
        net.eval()
        sd = net.state_dict()
        torch.save(sd, os.path.join(OUT, "tiny_%s.pth" % name))
        legacy = old_densenet_keys(sd, "network.") if name == "densenet" else sd
        torch.save(legacy, os.path.join(OUT, "tiny_%s_legacy.pth" % name), _use_new_zipfile_serialization=False)
        with torch.no_grad():
            ref[name + "_logits"] = net(x)
            ref[name + "_logits_48"] = net(x48)
    timm = collections.OrderedDict((k, v) for k, v in nets["resnet"].state_dict().items()
                                   if not k.endswith("num_batches_tracked"))
    write_safetensors(os.path.join(OUT, "tiny_resnet_timm.safetensors"), timm)
    write_safetensors(os.path.join(OUT, "tiny_ref.safetensors"), ref)
    preprocess_fixtures(gen)
    total = 0
    for n in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, n))
        total += size
        print("%-32s %8d bytes" % (n, size))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()

"""The PyTorch side of `cargo bench -p cryoprune-model --bench forward`.

Usage: forward_torch.py CASES_JSON WARMUP TIMED. CASES_JSON is a list of
{"arch", "channels", "size", "batch"}; prints {"torch", "threads", "results": [{"images_per_s"}]}
on stdout. Networks: torchvision's ResNet-18 and ResNet-50, EfficientNet-Lite0 from the package
efficientnet_lite_pytorch (the implementation our reference fixture came from), and the small
network and Topaz's ResNet16 written out below layer for layer as
crates/cryoprune-model/src/small.rs and topaz.rs build them.
Eval mode, torch.inference_mode(), fresh random weights, every core, median of TIMED batches.
"""

import json
import os
import sys
import time

import torch
import torch.nn as nn
import torchvision


def small(channels, classes):
    layers, c_in = [], channels
    widths = [16, 32, 64, 128]
    for i, w in enumerate(widths):
        for a, b in ((c_in, w), (w, w)):
            layers += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        c_in = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes)]
    return nn.Sequential(*layers)


class TopazResid(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv0 = nn.Conv2d(c_in, c_in, 3)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride)
        self.proj = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if c_in != c_out else None
        self.stride = stride

    def forward(self, x):
        y = self.conv1(torch.relu(self.conv0(x)))
        x = x[:, :, 2:-2, 2:-2]
        x = self.proj(x) if self.proj is not None else x[:, :, :: self.stride, :: self.stride]
        return torch.relu(y + x)


def topaz(channels, classes):
    u = 64
    shapes = [(u, u, 2), (u, u, 1), (u, u, 1), (u, u, 1), (u, 2 * u, 2), (2 * u, 2 * u, 1), (2 * u, 2 * u, 1)]
    blocks = [TopazResid(i, o, s) for i, o, s in shapes]
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, classes)]
    return nn.Sequential(nn.Conv2d(channels, u, 7), nn.ReLU(), *blocks, nn.Conv2d(2 * u, 256, 5), nn.ReLU(), *head)


def build(arch, channels):
    if arch in ("resnet18", "resnet50"):
        m = getattr(torchvision.models, arch)(num_classes=2)
        if channels != 3:
            m.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
        return m
    if arch == "topaz-resnet16":
        return topaz(channels, 2)
    if arch == "efficientnet-lite0":
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name("efficientnet-lite0", in_channels=channels, num_classes=2)
    if arch == "small":
        return small(channels, 2)
    raise SystemExit(f"unknown network {arch}")


def run(prepare, report):
    """Times every case of argv (CASES_JSON WARMUP TIMED) on every core and prints the JSON
    answer: `prepare(case)` builds the case and returns one repetition to time, `report(case,
    seconds)` turns the median into the case's result."""
    cases, warmup, timed = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    results = []
    for case in cases:
        once = prepare(case)
        times = []
        for i in range(warmup + timed):
            start = time.perf_counter()
            once()
            if i >= warmup:
                times.append(time.perf_counter() - start)
        times.sort()
        results.append(report(case, times[len(times) // 2]))
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}))


def forward(case):
    model = build(case["arch"], case["channels"]).eval()
    x = torch.randn(case["batch"], case["channels"], case["size"], case["size"])

    def once():
        with torch.inference_mode():
            torch.softmax(model(x), 1).numpy()

    return once


if __name__ == "__main__":
    run(forward, lambda case, seconds: {"images_per_s": case["batch"] / seconds})

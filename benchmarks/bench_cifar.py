"""Training throughput of the Figure 1 net (CIFAR-10, batch 128) on the CPU:
minidl against PyTorch CPU on the same architecture, in the same run.

    python -m benchmarks.bench_cifar [--batch 128] [--steps 10] [--no-torch]

Target (issue 4): minidl at least 0.8x PyTorch's images/s. Also a per-op
breakdown of minidl's step (forward and backward time of each Function class).
"""
from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

import numpy as np

import minidl
from minidl import Tensor, functions as F, optim
from alexnet.model import CifarNet, CifarNetConfig

from .common import median_time, report


def minidl_step(batch, activation="relu"):
    net = CifarNet(CifarNetConfig(activation=activation), seed=0)
    opt = optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=0.0)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((batch, 3, 32, 32)) * 60).astype(np.float32)
    y = rng.integers(0, 10, batch)

    def step():
        loss = F.softmax_cross_entropy(net(Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def torch_step(batch, activation="relu"):
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF
    torch.set_num_threads(os.cpu_count())
    act = torch.relu if activation == "relu" else torch.tanh

    class Net(tnn.Module):          # layers-80sec, as alexnet.model.CifarNet
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 32, 5, padding=2)
            self.conv2 = tnn.Conv2d(32, 32, 5, padding=2)
            self.conv3 = tnn.Conv2d(32, 64, 5, padding=2)
            self.fc = tnn.Linear(64 * 4 * 4, 10)

        def forward(self, x):
            h = TF.max_pool2d(act(self.conv1(x)), 3, 2, ceil_mode=True)
            h = TF.avg_pool2d(act(self.conv2(h)), 3, 2, ceil_mode=True, count_include_pad=False)
            h = TF.avg_pool2d(act(self.conv3(h)), 3, 2, ceil_mode=True, count_include_pad=False)
            return self.fc(h.flatten(1))

    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32) * 60
    y = torch.randint(0, 10, (batch,))

    def step():
        loss = TF.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def breakdown(batch, steps=3):
    """Seconds per step spent in each Function's forward and backward."""
    times = defaultdict(float)
    classes = set()
    stack = [minidl.Function]
    while stack:
        c = stack.pop()
        classes.add(c)
        stack += c.__subclasses__()
    originals = {}
    for c in classes:
        for name in ("forward", "backward"):
            if name in vars(c):
                f = vars(c)[name]
                originals[(c, name)] = f
                def timed(self, *a, _f=f, _k=f"{c.__name__}.{name}"):
                    t = time.perf_counter()
                    try:
                        return _f(self, *a)
                    finally:
                        times[_k] += time.perf_counter() - t
                setattr(c, name, timed)
    try:
        step = minidl_step(batch)
        step()
        times.clear()
        for _ in range(steps):
            step()
    finally:
        for (c, name), f in originals.items():
            setattr(c, name, f)
    return {k: v / steps for k, v in sorted(times.items(), key=lambda kv: -kv[1])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    rows = []
    steps = {"minidl": minidl_step(args.batch)}
    if not args.no_torch:
        try:
            steps["torch"] = torch_step(args.batch)
        except ImportError:
            print("torch not importable: minidl alone")
    # interleave repeats so both see the same machine load
    samples = defaultdict(list)
    for name, f in steps.items():
        f()
    for _ in range(args.steps):
        for name, f in steps.items():
            samples[name].append(median_time(f, repeat=1, warmup=0))
    for name, s in samples.items():
        t = float(np.median(s))
        rows.append({"impl": name, "batch": args.batch, "ms_per_step": 1e3 * t,
                     "images_per_s": args.batch / t})
    if "torch" in samples:
        ratio = rows[1]["ms_per_step"] / rows[0]["ms_per_step"]
        rows[0]["vs_torch"] = ratio
        print(f"minidl / torch throughput: {ratio:.2f}x (target >= 0.8x)")
    report("bench_cifar", rows)
    print("\nminidl step breakdown (ms per step):")
    for k, v in list(breakdown(args.batch).items())[:14]:
        print(f"  {k:<32} {1e3 * v:8.1f}")


if __name__ == "__main__":
    main()

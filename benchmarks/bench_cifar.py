"""Training throughput of the Figure 1 net (CIFAR-10, batch 128) on the CPU:
minidl against PyTorch CPU on the same architecture, in the same run.

    python -m benchmarks.bench_cifar [--batch 128] [--steps 5] [--blocks 4] [--no-torch]

The target: minidl at least 0.8x PyTorch's images/s. Also a per-op
breakdown of minidl's step (forward and backward time of each Function class).
The process keeps freed memory for reuse (minidl.keep_freed_memory(), as
alexnet's Trainer does; it applies to PyTorch's arrays too); --default-malloc
leaves malloc alone.

The two take turns in blocks (so that a change in the machine's load falls on
both), and the first steps of each block are not timed: each library's
threads keep spinning for a while after its last call (OpenBLAS's up to
~0.1 s), so the step right after the other library's runs up to 2x slow
(alternating the libraries step by step about doubles PyTorch's time).
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


WARMUP = 2          # untimed steps at the start of each block


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


def torch_net(activation="relu"):
    """The Figure 1 net (layers-80sec, as alexnet.model.CifarNet) in PyTorch."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF
    act = torch.relu if activation == "relu" else torch.tanh

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 32, 5, padding=2)
            self.conv2 = tnn.Conv2d(32, 32, 5, padding=2)
            self.conv3 = tnn.Conv2d(32, 64, 5, padding=2)
            self.fc = tnn.Linear(64 * 4 * 4, 10)
            self.act = act

        def forward(self, x):
            h = TF.max_pool2d(act(self.conv1(x)), 3, 2, ceil_mode=True)
            h = TF.avg_pool2d(act(self.conv2(h)), 3, 2, ceil_mode=True, count_include_pad=False)
            h = TF.avg_pool2d(act(self.conv3(h)), 3, 2, ceil_mode=True, count_include_pad=False)
            return self.fc(h.flatten(1))

    torch.manual_seed(0)
    return Net()


def torch_step(batch, activation="relu"):
    import torch
    import torch.nn.functional as TF
    torch.set_num_threads(os.cpu_count())
    net = torch_net(activation)
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
    p.add_argument("--steps", type=int, default=5, help="timed steps per block")
    p.add_argument("--blocks", type=int, default=4, help="blocks per library, in turns")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--activation", choices=["relu", "tanh"], nargs="+",
                   default=["relu", "tanh"], help="the nets to time (Figure 1 trains both)")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave malloc as it is (by default freed memory is kept, for both "
                        "libraries, as alexnet's Trainer keeps it: minidl/cpu/memory.py)")
    args = p.parse_args(argv)
    kept = not args.default_malloc and minidl.keep_freed_memory()
    rows = []
    steps = {}
    for act in args.activation:
        steps["minidl", act] = minidl_step(args.batch, act)
        if not args.no_torch:
            try:
                steps["torch", act] = torch_step(args.batch, act)
            except ImportError:
                print("torch not importable: minidl alone")
                args.no_torch = True
    # blocks in turn; each block's first steps untimed (the other's threads spin on)
    samples = defaultdict(list)
    for _ in range(args.blocks):
        for key, f in steps.items():
            for _ in range(WARMUP):
                f()
            samples[key] += [median_time(f, repeat=1, warmup=0) for _ in range(args.steps)]
    ms = {key: 1e3 * float(np.median(s)) for key, s in samples.items()}
    for (impl, act), t in ms.items():
        row = {"impl": impl, "activation": act, "batch": args.batch, "ms_per_step": t,
               "images_per_s": 1e3 * args.batch / t}
        if impl == "minidl" and ("torch", act) in ms:
            row["vs_torch"] = ms["torch", act] / t
            print(f"{act}: minidl / torch throughput {row['vs_torch']:.2f}x (target >= 0.8x)")
        rows.append(row)
    rows.sort(key=lambda r: (r["activation"], r["impl"]))
    report("bench_cifar", rows, notes={"threads": minidl.get_num_threads(),
                                       "blocks": args.blocks, "steps_per_block": args.steps,
                                       "freed_memory_kept": kept})
    print("\nminidl step breakdown (ms per step):")
    for k, v in list(breakdown(args.batch).items())[:14]:
        print(f"  {k:<32} {1e3 * v:8.1f}")


if __name__ == "__main__":
    main()

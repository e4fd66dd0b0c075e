"""Training step of the claims experiments' nets (docs/claims.md) on the CPU: minidl
against the same nets in PyTorch CPU, in the same run.

    python -m benchmarks.bench_claims [--batch 128] [--steps 4] [--blocks 3] [--nets alexnet conv-local]

The nets: the CIFAR-sized two-column AlexNet of claims 2-7 (`CIFAR_ALEXNET`; PyTorch
runs its two columns as groups=2 convolutions, the same arithmetic) and
cuda-convnet's conv-local net of claim 1 with its LRN layers (PyTorch: the locally
connected layers as unfold + einsum, LRN as nn.functional.local_response_norm with
its alpha multiplied by n, as PyTorch divides it by n). Each step is forward, loss,
backward and the SGD update. The libraries take turns in blocks (the first steps of
each block untimed, see bench_cifar.py); the table gives medians and
minidl's throughput over PyTorch's.
"""
from __future__ import annotations

import argparse
import os
from collections import defaultdict

import numpy as np

import minidl
from minidl import Tensor, functions as F, optim
from alexnet import claims as C

from .common import median_time, report

WARMUP = 2


def minidl_step(net_name, batch):
    recipe = C.ALEXNET if net_name == "alexnet" else C.CONV_LOCAL
    net, opt = C.build(recipe, seed=0)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((batch, 3, 24, 24)) * 60).astype(np.float32)
    y = rng.integers(0, 10, batch)

    def step():
        loss = F.softmax_cross_entropy(net(Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def torch_step(net_name, batch):
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)

    class Local(tnn.Module):
        """Locally connected: unfold the windows, one einsum over the positions."""

        def __init__(self, cin, cout, k, size):
            super().__init__()
            self.k, self.size = k, size
            self.weight = tnn.Parameter(torch.randn(size * size, cout, cin * k * k) * 0.04)
            self.bias = tnn.Parameter(torch.zeros(cout, size * size))

        def forward(self, x):
            cols = TF.unfold(x, self.k, padding=self.k // 2)          # (N, K, P)
            y = torch.einsum("pok,nkp->nop", self.weight, cols) + self.bias
            return y.reshape(x.shape[0], -1, self.size, self.size)

    if net_name == "alexnet":
        cfg = C.CIFAR_ALEXNET

        class Net(tnn.Module):          # the two columns as groups=2, as GroupedAlexNet
            def __init__(self):
                super().__init__()
                c1, c2, c3, c4, c5 = cfg.conv_channels
                self.conv1 = tnn.Conv2d(3, c1, 5, padding=2)
                self.conv2 = tnn.Conv2d(c1, c2, 5, padding=2, groups=2)
                self.conv3 = tnn.Conv2d(c2, c3, 3, padding=1)
                self.conv4 = tnn.Conv2d(c3, c4, 3, padding=1, groups=2)
                self.conv5 = tnn.Conv2d(c4, c5, 3, padding=1, groups=2)
                self.fc6 = tnn.Linear(c5 * 9, cfg.fc_features)
                self.fc7 = tnn.Linear(cfg.fc_features, cfg.fc_features)
                self.fc8 = tnn.Linear(cfg.fc_features, 10)

            def lrn(self, h):           # per column, alpha not divided by n in minidl
                return torch.cat([TF.local_response_norm(p, 5, cfg.lrn_alpha * 5, cfg.lrn_beta,
                                                         cfg.lrn_k) for p in h.chunk(2, 1)], 1)

            def forward(self, x):
                pool = lambda h: TF.max_pool2d(h, 3, 2, ceil_mode=True)  # noqa: E731
                h = pool(self.lrn(torch.relu(self.conv1(x))))
                h = pool(self.lrn(torch.relu(self.conv2(h))))
                h = torch.relu(self.conv4(torch.relu(self.conv3(h))))
                h = pool(torch.relu(self.conv5(h))).flatten(1)
                h = TF.dropout(torch.relu(self.fc6(h)), 0.5, self.training)
                h = TF.dropout(torch.relu(self.fc7(h)), 0.5, self.training)
                return self.fc8(h)
    else:
        lc = C.CONV_LOCAL

        class Net(tnn.Module):          # cuda-convnet's layers-conv-local-11pct
            def __init__(self):
                super().__init__()
                self.conv1 = tnn.Conv2d(3, 64, 5, padding=2)
                self.conv2 = tnn.Conv2d(64, 64, 5, padding=2)
                self.local3 = Local(64, 32, 3, 6)
                self.local4 = Local(32, 32, 3, 6)
                self.fc = tnn.Linear(32 * 36, 10)

            def forward(self, x):
                norm = lambda h: TF.local_response_norm(h, 5, 0.001, 0.75, 1.0)  # noqa: E731
                pool = lambda h: TF.max_pool2d(h, 3, 2, ceil_mode=True)  # noqa: E731
                h = pool(norm(torch.relu(self.conv1(x))))
                h = pool(norm(torch.relu(self.conv2(h))))
                h = torch.relu(self.local4(torch.relu(self.local3(h))))
                return self.fc(h.flatten(1))
        assert lc.lrn

    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=0.0005)
    x = torch.randn(batch, 3, 24, 24) * 60
    y = torch.randint(0, 10, (batch,))

    def step():
        loss = TF.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="timed steps per block")
    p.add_argument("--blocks", type=int, default=3, help="blocks per library, in turns")
    p.add_argument("--nets", nargs="+", choices=["alexnet", "conv-local"],
                   default=["alexnet", "conv-local"])
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    kept = minidl.keep_freed_memory()
    steps = {}
    for net in args.nets:
        steps["minidl", net] = minidl_step(net, args.batch)
        if not args.no_torch:
            try:
                steps["torch", net] = torch_step(net, args.batch)
            except ImportError:
                print("torch not importable: minidl alone")
                args.no_torch = True
    samples = defaultdict(list)
    for _ in range(args.blocks):
        for key, f in steps.items():
            for _ in range(WARMUP):
                f()
            samples[key] += [median_time(f, repeat=1, warmup=0) for _ in range(args.steps)]
    ms = {key: 1e3 * float(np.median(s)) for key, s in samples.items()}
    rows = []
    for (impl, net), t in ms.items():
        row = {"net": net, "impl": impl, "batch": args.batch, "ms_per_step": t,
               "images_per_s": 1e3 * args.batch / t}
        if impl == "minidl" and ("torch", net) in ms:
            row["vs_torch"] = ms["torch", net] / t
            print(f"{net}: minidl / torch throughput {row['vs_torch']:.2f}x")
        rows.append(row)
    rows.sort(key=lambda r: (r["net"], r["impl"]))
    report("bench_claims", rows, notes={"threads": minidl.get_num_threads(),
                                        "blocks": args.blocks, "steps_per_block": args.steps,
                                        "freed_memory_kept": kept})


if __name__ == "__main__":
    main()

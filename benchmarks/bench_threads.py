"""What minidl's threads (minidl/cpu/parallel.py) buy: each op at 1 thread and at N.

For the CIFAR net's layers and its whole training step (batch 128), three
configurations, measured in one process, in blocks taken in turns (the first
steps of each block untimed: BLAS threads spin on after their last call):

* ``split``:     minidl's N threads, NumPy's BLAS held at one thread (the default);
* ``one``:       one minidl thread, the BLAS held at one thread: ``split`` / ``one``
                 is how well the ops themselves split;
* ``blas``:      one minidl thread, the BLAS with its own N threads (minidl before
                 the threads): ``split`` / ``blas`` is what the threads gained.

    python -m benchmarks.bench_threads [--threads N] [--blocks 4] [--steps 4]
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

import minidl
from minidl import Tensor, functions as F
from minidl.cpu import parallel

from .bench_cifar import minidl_step
from .common import as_chwn, report

WARMUP = 2


def layer_fns(batch, rng):
    """forward+backward of each layer of the CIFAR net, on inputs laid out as in the net."""
    def chwn(shape):            # a conv's output as the net hands it on (layout.py)
        return as_chwn(rng.standard_normal(shape, dtype=np.float32))
    fns = {}
    for name, (c, h, o) in {"conv1": (3, 32, 32), "conv2": (32, 16, 32),
                            "conv3": (32, 8, 64)}.items():
        x = rng.standard_normal((batch, c, h, h), dtype=np.float32)
        if name != "conv1":        # conv2, conv3 read a pooling's CHWN output
            x = chwn((batch, c, h, h))
        W = rng.standard_normal((o, c, 5, 5), dtype=np.float32) * 0.01

        def conv(x=x, W=W, first=name == "conv1"):
            tx, tW = Tensor(x, requires_grad=not first), Tensor(W, requires_grad=True)
            y = F.conv2d(tx, tW, pad=2)
            y.backward(np.ones_like(y.data))        # dy laid out as y (CHWN), as in the net
        fns[name] = conv
    for name, op, shape in (("max-pool1", F.max_pool2d, (batch, 32, 32, 32)),
                            ("avg-pool2", F.avg_pool2d, (batch, 32, 16, 16))):
        x = chwn(shape)

        def pool(x=x, op=op):
            t = Tensor(x, requires_grad=True)
            y = op(t, 3, 2, ceil_mode=True)
            y.backward(np.ones_like(y.data))        # laid out as y (CHWN), as the net's dy is
        fns[name] = pool
    x = chwn((batch, 32, 32, 32))

    def tanh(x=x):
        t = Tensor(x, requires_grad=True)
        y = F.tanh(t)
        y.backward(np.ones_like(y.data))
    fns["tanh1"] = tanh
    fns["step relu"] = minidl_step(batch, "relu")
    fns["step tanh"] = minidl_step(batch, "tanh")
    return fns


def configure(name, threads):
    if name == "split":
        minidl.set_num_threads(threads)
    elif name == "one":
        minidl.set_num_threads(1)
        parallel._hold_blas()                   # BLAS at one thread, as inside a split
    else:                                       # "blas": the BLAS with its own threads
        minidl.set_num_threads(1)               # (gives back the BLAS's thread count)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=parallel.available_cores())
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--steps", type=int, default=4, help="timed calls per block")
    args = p.parse_args(argv)
    fns = layer_fns(args.batch, np.random.default_rng(0))
    samples = defaultdict(list)
    for _ in range(args.blocks):
        for config in ("split", "one", "blas"):
            configure(config, args.threads)
            for name, fn in fns.items():
                for _ in range(WARMUP):
                    fn()
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    fn()
                    samples[name, config].append(time.perf_counter() - t0)
    minidl.set_num_threads(None)
    rows = []
    for name in fns:
        ms = {c: 1e3 * float(np.median(samples[name, c])) for c in ("split", "one", "blas")}
        rows.append({"op": name, "split_ms": ms["split"], "one_ms": ms["one"],
                     "blas_ms": ms["blas"], "one/split": ms["one"] / ms["split"],
                     "blas/split": ms["blas"] / ms["split"]})
    report("bench_threads", rows, notes={"threads": args.threads, "batch": args.batch,
                                         "blocks": args.blocks, "steps": args.steps})


if __name__ == "__main__":
    main()

"""Where a training step's time goes, layer by layer, minidl against PyTorch CPU; and how
close each whole step comes to the machine's single-precision GEMM peak.

    python -m benchmarks.bench_ops                    # the CIFAR net and the paper's net, batch 128
    python -m benchmarks.bench_ops --net cifar --steps 7

For each net (the Figure 1 net of bench_cifar, ReLU; the paper's net of
bench_alexnet) one training step of each library, built as those benchmarks
build it, runs `--steps` times, the two libraries taking turns step by step
after a warm-up step each. Every layer's forward and backward is timed
inside the step: minidl's by timing each Function's forward and backward (the
paper's net's two columns add up in one row, and its exchanges between
columns are a row of their own); PyTorch's by clock readings between its
layers in forward and, in backward, at a hook on each layer's output (the
moment its gradient arrives), so that a layer's backward runs from its
output's gradient to its input's. Medians over the steps. The layers follow
each library's own order (minidl's CIFAR net max-pools before its activation,
bench_cifar's PyTorch net after it, so those two rows read different sizes).

Then each whole step's arithmetic (2 flops per multiply-add of every
convolution and fully connected layer, forward, dW and dx) over the step's
median time, against the machine's peak: one 4096^3 float32 GEMM through
NumPy's BLAS on all cores, timed in the same run (`peak_GFLOPs`). Writes
benchmarks/results/bench_ops.json: its rows are the layers, its "steps" the
whole steps.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

import numpy as np

from .bench_conv import ALEXNET, CIFAR
from .common import report


# ----------------------------------------------------------------------------
# The layers of each net, in forward order: name, minidl's Function (class and
# input shape per column, N for the batch), and the flops of the layer
# ----------------------------------------------------------------------------
def cifar_layers(N):
    act = "ReLU"
    return [("conv1", "Convolution", (N, 3, 32, 32)), ("pool1", "MaxPool2d", (N, 32, 32, 32)),
            ("act1", act, (N, 32, 16, 16)), ("conv2", "Convolution", (N, 32, 16, 16)),
            ("act2", act, (N, 32, 16, 16)), ("pool2", "AvgPool2d", (N, 32, 16, 16)),
            ("conv3", "Convolution", (N, 32, 8, 8)), ("act3", act, (N, 64, 8, 8)),
            ("pool3", "AvgPool2d", (N, 64, 8, 8)), ("flatten", "Reshape", (N, 64, 4, 4)),
            ("fc", "Linear", (N, 1024)), ("loss", "SoftmaxCrossEntropy", (N, 10))]


def alexnet_layers(N):
    return [("conv1", "Convolution", (N, 3, 227, 227)), ("relu1", "ReLU", (N, 48, 55, 55)),
            ("lrn1", "LocalResponseNorm", (N, 48, 55, 55)),
            ("pool1", "MaxPool2d", (N, 48, 55, 55)),
            ("conv2", "Convolution", (N, 48, 27, 27)), ("relu2", "ReLU", (N, 128, 27, 27)),
            ("lrn2", "LocalResponseNorm", (N, 128, 27, 27)),
            ("pool2", "MaxPool2d", (N, 128, 27, 27)),
            ("exchange2", "Concat", (N, 128, 13, 13)),
            ("conv3", "Convolution", (N, 256, 13, 13)), ("relu3", "ReLU", (N, 192, 13, 13)),
            ("conv4", "Convolution", (N, 192, 13, 13)), ("relu4", "ReLU", (N, 192, 13, 13)),
            ("conv5", "Convolution", (N, 192, 13, 13)), ("relu5", "ReLU", (N, 128, 13, 13)),
            ("pool5", "MaxPool2d", (N, 128, 13, 13)), ("flatten", "Reshape", (N, 128, 6, 6)),
            ("exchange5", "Concat", (N, 4608)),
            ("fc6", "Linear", (N, 9216)), ("relu6", "ReLU", (N, 2048)),
            ("drop6", "Dropout", (N, 2048)), ("exchange6", "Concat", (N, 2048)),
            ("fc7", "Linear", (N, 4096)), ("relu7", "ReLU", (N, 2048)),
            ("drop7", "Dropout", (N, 2048)), ("exchange7", "Concat", (N, 2048)),
            ("fc8", "Linear", (N, 4096)), ("loss", "SoftmaxCrossEntropy", (N, 1000))]


def step_flops(N, convs, fcs):
    """Flops of one training step: 2 per multiply-add of each conv (bench_conv's
    specs) and fully connected layer (in, out), forward, dW and dx (none for the image)."""
    total = 0
    for _, C, H, W, C_out, KH, KW, s, p, G, need_x in convs:
        OH, OW = (H + 2 * p - KH) // s + 1, (W + 2 * p - KW) // s + 1
        macs = N * OH * OW * C_out * C // G * KH * KW
        total += 2 * macs * (3 if need_x else 2)
    for n_in, n_out in fcs:
        total += 2 * N * n_in * n_out * 3
    return total


NETS = {
    "cifar": dict(layers=cifar_layers, columns=1,
                  flops=lambda N: step_flops(N, CIFAR, [(1024, 10)])),
    "alexnet": dict(layers=alexnet_layers, columns=2,
                    flops=lambda N: step_flops(N, ALEXNET,
                                               [(9216, 4096), (4096, 4096), (4096, 1000)])),
}


# ----------------------------------------------------------------------------
# minidl: each Function's forward and backward, named by its layer
# ----------------------------------------------------------------------------
def _subclasses(cls):
    out = []
    for sub in cls.__subclasses__():
        out += [sub] + _subclasses(sub)
    return out


class MinidlLayers:
    """Times every Function's forward and backward during a ``with`` block; `named()`
    gives them by layer: the k-th call of a (class, input shape) in forward
    order is layer k // columns among the layers of that class and shape."""

    def __init__(self, layers, columns):
        from minidl.autograd import Function
        self.layers, self.columns = layers, columns
        self.classes = _subclasses(Function)
        self.calls = []                 # (instance, class name, input shape) in forward order
        self.times = defaultdict(float)  # (id(instance), pass) -> s
        self.saved = {}

    def __enter__(self):
        me = self
        for cls in self.classes:
            for name in ("forward", "backward"):
                if name not in vars(cls):
                    continue
                original = self.saved[cls, name] = vars(cls)[name]

                def timed(fn_self, *args, _original=original, _name=name):
                    t0 = time.perf_counter()
                    out = _original(fn_self, *args)
                    me.times[id(fn_self), _name] += time.perf_counter() - t0
                    if _name == "forward":
                        me.calls.append((fn_self, type(fn_self).__name__, tuple(args[0].shape)))
                    return out
                setattr(cls, name, timed)
        return self

    def __exit__(self, *exc):
        for (cls, name), original in self.saved.items():
            setattr(cls, name, original)

    def named(self):
        """{(layer, pass): seconds} of the calls so far (one step); unmatched calls under 'other'."""
        out, seen = defaultdict(float), defaultdict(int)
        for fn, cls, shape in self.calls:
            names = [n for n, c, s in self.layers if c == cls and s == shape]
            k = seen[cls, shape]
            seen[cls, shape] += 1
            name = names[min(k // self.columns, len(names) - 1)] if names else "other"
            for which in ("forward", "backward"):
                out[name, which] += self.times.get((id(fn), which), 0.0)
        self.calls, self.times = [], defaultdict(float)
        return out


def minidl_runner(net, N):
    """A function running one minidl step and returning ({(layer, pass): s}, its seconds)."""
    import minidl
    from minidl import Tensor, functions as F, optim
    if net == "cifar":
        from alexnet.model import CifarNet, CifarNetConfig
        model = CifarNet(CifarNetConfig(activation="relu"), seed=0)
        opt = optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=0.0)
        rng = np.random.default_rng(0)
        x = Tensor((rng.standard_normal((N, 3, 32, 32)) * 60).astype(np.float32))
        labels = rng.integers(0, 10, N)
    else:                                   # as bench_alexnet.minidl_step_fn
        from alexnet.model import AlexNet
        rng = np.random.default_rng(0)
        model = AlexNet(seed=0)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
        minidl.random.manual_seed(0)
        x = Tensor(rng.standard_normal((N, 3, 227, 227), dtype=np.float32))
        labels = rng.integers(0, 1000, N)
    timer = MinidlLayers(NETS[net]["layers"](N), NETS[net]["columns"])

    def step():
        with timer:
            t0 = time.perf_counter()
            loss = F.softmax_cross_entropy(model(x), labels)
            opt.zero_grad()
            loss.backward()
            t1 = time.perf_counter()
            opt.step()
            t2 = time.perf_counter()
        times = timer.named()
        times["update", "step"] = t2 - t1
        return times, t2 - t0
    return step


# ----------------------------------------------------------------------------
# PyTorch: clock readings between layers, hooks at each output's gradient
# ----------------------------------------------------------------------------
def torch_layers(net, N):
    """(layers [(name, fn)], optimizer, x, labels) of the PyTorch net."""
    import torch
    import torch.nn.functional as TF
    torch.set_num_threads(os.cpu_count())
    if net == "cifar":
        from .bench_cifar import torch_net
        m = torch_net("relu")
        layers = [("conv1", m.conv1), ("act1", torch.relu),
                  ("pool1", lambda h: TF.max_pool2d(h, 3, 2, ceil_mode=True)),
                  ("conv2", m.conv2), ("act2", torch.relu),
                  ("pool2", lambda h: TF.avg_pool2d(h, 3, 2, ceil_mode=True,
                                                    count_include_pad=False)),
                  ("conv3", m.conv3), ("act3", torch.relu),
                  ("pool3", lambda h: TF.avg_pool2d(h, 3, 2, ceil_mode=True,
                                                    count_include_pad=False)),
                  ("flatten", lambda h: h.flatten(1)), ("fc", m.fc)]
        opt = torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9)
        x, labels = torch.randn(N, 3, 32, 32) * 60, torch.randint(0, 10, (N,))
    else:
        from .bench_alexnet import torch_net
        torch.manual_seed(0)
        m = torch_net()
        pool = lambda h: TF.max_pool2d(h, 3, 2)  # noqa: E731
        drop = lambda h: TF.dropout(h, 0.5, True)  # noqa: E731
        layers = [("conv1", m.conv1), ("relu1", TF.relu), ("lrn1", m.lrn), ("pool1", pool),
                  ("conv2", m.conv2), ("relu2", TF.relu), ("lrn2", m.lrn), ("pool2", pool),
                  ("conv3", m.conv3), ("relu3", TF.relu), ("conv4", m.conv4), ("relu4", TF.relu),
                  ("conv5", m.conv5), ("relu5", TF.relu), ("pool5", pool),
                  ("flatten", lambda h: h.flatten(1)),
                  ("fc6", m.fc6), ("relu6", TF.relu), ("drop6", drop),
                  ("fc7", m.fc7), ("relu7", TF.relu), ("drop7", drop), ("fc8", m.fc8)]
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
        x, labels = torch.randn(N, 3, 227, 227), torch.randint(0, 1000, (N,))
    return layers, opt, x, labels


def torch_runner(net, N):
    import torch.nn.functional as TF
    layers, opt, x, labels = torch_layers(net, N)
    clock = time.perf_counter

    def step():
        times, arrived = {}, []                    # arrived: (layer, when its output's grad came)
        t_start = clock()
        h = x
        for name, fn in layers:
            t0 = clock()
            h = fn(h)
            times[name, "forward"] = clock() - t0
            h.register_hook(lambda g, name=name: arrived.append((name, clock())))
        t0 = clock()
        loss = TF.cross_entropy(h, labels)
        times["loss", "forward"] = clock() - t0
        opt.zero_grad(set_to_none=True)
        t0 = clock()
        loss.backward()
        t_end = clock()
        marks = [("loss", t0)] + arrived            # each layer's backward starts at its mark
        ends = [t for _, t in arrived] + [t_end]    # and ends at the next one's
        for (name, start), end in zip(marks, ends):
            times[name, "backward"] = end - start
        t1 = clock()
        opt.step()
        t2 = clock()
        times["update", "step"] = t2 - t1
        return times, t2 - t_start
    return step


# ----------------------------------------------------------------------------
def sgemm_peak(size=4096, repeat=3):
    """GFLOP/s of one size^3 float32 GEMM through NumPy's BLAS (its threads as
    they are: every core unless limited), the best of `repeat`."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    np.matmul(a, b, out=c)
    best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(repeat))
    return 2 * size ** 3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(net, N, steps):
    """Rows per (layer, pass) and one summary row per library for `net`."""
    runners = {"minidl": minidl_runner(net, N), "torch": torch_runner(net, N)}
    for run in runners.values():
        run()                                                  # warm-up
    samples = {lib: defaultdict(list) for lib in runners}
    totals = {lib: [] for lib in runners}
    for _ in range(steps):
        for lib, run in runners.items():
            times, total = run()
            for key, t in times.items():
                samples[lib][key].append(t)
            totals[lib].append(total)
    keys = list(dict.fromkeys(list(samples["minidl"]) + list(samples["torch"])))
    order = [name for name, _, _ in NETS[net]["layers"](N)] + ["other", "update"]
    keys.sort(key=lambda k: (order.index(k[0]) if k[0] in order else len(order),
                             ("forward", "backward", "step").index(k[1])))
    rows = []
    for layer, which in keys:
        ms = {lib: 1e3 * float(np.median(samples[lib][layer, which]))
              if samples[lib].get((layer, which)) else None for lib in runners}
        row = {"net": net, "layer": layer, "pass": which, "minidl_ms": ms["minidl"],
               "torch_ms": ms["torch"]}
        if ms["minidl"] and ms["torch"]:
            row["torch/minidl"] = ms["torch"] / ms["minidl"]
        rows.append(row)
    return rows, {lib: float(np.median(t)) for lib, t in totals.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=sorted(NETS), nargs="+", default=["cifar", "alexnet"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps per library (medians)")
    args = p.parse_args(argv)
    import minidl
    kept = minidl.keep_freed_memory()
    rows, totals = [], {}
    peaks = [sgemm_peak()]
    for net in args.net:
        net_rows, totals[net] = measure(net, args.batch, args.steps)
        rows += net_rows
    peaks.append(sgemm_peak())
    peak = max(peaks)                    # the machine's, as near as a busy machine lets us see it
    steps = []
    for net in args.net:
        flops = NETS[net]["flops"](args.batch)
        for lib, t in totals[net].items():
            steps.append({"net": net, "impl": lib, "batch": args.batch, "ms_per_step": 1e3 * t,
                          "GFLOP_per_step": flops / 1e9, "GFLOPs": flops / t / 1e9,
                          "of_peak": flops / t / 1e9 / peak})
    report("bench_ops", rows, notes={"peak_GFLOPs": peak, "peak_before_after": peaks,
                                     "threads": minidl.get_num_threads(),
                                     "steps": args.steps, "freed_memory_kept": kept},
           extra={"steps": steps})
    for row in steps:
        print(f"{row['net']:8s} {row['impl']:7s} {row['ms_per_step']:8.1f} ms/step "
              f"{row['GFLOPs']:6.1f} GFLOP/s = {row['of_peak']:.0%} of the SGEMM peak")


if __name__ == "__main__":
    main()

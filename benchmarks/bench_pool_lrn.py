"""Max-pooling 3/2 and LRN (n=5), forward + backward, on the shapes of the paper's nets.

Each timing is a ratio against references measured in the same run:

* vs_conv:  the conv layer that feeds the layer (minidl's conv2d forward +
  backward; if conv2d is unusable, the GEMM of the same shape times 3).
  Says what share of a training step the layer costs next to its conv.
* vs_torch: PyTorch CPU's max_pool2d / local_response_norm forward + backward
  on the same array (only if torch imports; it is never a dependency).
  Below 1 means minidl is faster.
* vs_slicing (pooling): the CPU fast path's compiled loops
  (minidl/cpu/pool_kernels.py, numba) against the plain path's slicing
  (minidl/functions/pool.py), samples taken in turns. Below 1 means the
  loops are faster.

Each input lies in memory as its net hands it over (minidl/cpu/layout.py): CHWN after a
convolution whose chunks are long enough (the CIFAR net's pools, AlexNet's
pool5), NCHW after LRN (AlexNet's pool1 and pool2).

    python -m benchmarks.bench_pool_lrn              # everything (~2 minutes on 2 cores)
    python -m benchmarks.bench_pool_lrn --batch 16   # AlexNet at batch 16 only
"""
from __future__ import annotations

import argparse

import numpy as np

import minidl as md
from minidl.functions import avg_pool2d, conv2d, local_response_norm, max_pool2d
from minidl.cpu import pool as cpu_pool

from .common import as_chwn, interleaved, median_time, report

try:
    import torch
    import torch.nn.functional as TF
except Exception:  # noqa: BLE001  (torch is optional here)
    torch = None

# (net, layer, op, input shape of the layer, its layout, conv before it: input
# shape, W shape, stride, pad, groups)
ALEXNET = [
    ("alexnet", "lrn1", "lrn", (96, 55, 55), "nchw", ((3, 227, 227), (96, 3, 11, 11), 4, 0, 1)),
    ("alexnet", "pool1", "max", (96, 55, 55), "nchw", ((3, 227, 227), (96, 3, 11, 11), 4, 0, 1)),
    ("alexnet", "lrn2", "lrn", (256, 27, 27), "nchw", ((96, 27, 27), (256, 48, 5, 5), 1, 2, 2)),
    ("alexnet", "pool2", "max", (256, 27, 27), "nchw", ((96, 27, 27), (256, 48, 5, 5), 1, 2, 2)),
    ("alexnet", "pool5", "max", (256, 13, 13), "chwn",
     ((384, 13, 13), (256, 192, 3, 3), 1, 1, 2)),
]
# cuda-convnet's layers-80sec (conv 5x5, pad 2; pools 3/2 rounded up)
CIFAR = [
    ("cifar", "pool1", "max_ceil", (32, 32, 32), "chwn", ((3, 32, 32), (32, 3, 5, 5), 1, 2, 1)),
    ("cifar", "pool2", "max_ceil", (32, 16, 16), "chwn", ((32, 16, 16), (32, 32, 5, 5), 1, 2, 1)),
    ("cifar", "pool2-avg", "avg_ceil", (32, 16, 16), "chwn",
     ((32, 16, 16), (32, 32, 5, 5), 1, 2, 1)),
    ("cifar", "pool3", "max_ceil", (64, 8, 8), "chwn", ((32, 8, 8), (64, 32, 5, 5), 1, 2, 1)),
]


def laid_out(a, layout):
    """a (N, C, H, W) in memory as `layout`: "nchw", or "chwn" (a (C, H, W, N) array's view)."""
    return as_chwn(a) if layout == "chwn" else np.ascontiguousarray(a)


def on_path(fast, fn):
    """fn run on the CPU fast path (True: compiled pooling loops) or the plain path."""
    def run():
        with md.cpu.use_fast_path(fast):
            return fn()
    return run

OURS = {
    "lrn": lambda t: local_response_norm(t, n=5, k=2.0, alpha=1e-4, beta=0.75),
    "max": lambda t: max_pool2d(t, 3, 2),
    "max_ceil": lambda t: max_pool2d(t, 3, 2, ceil_mode=True),
    "avg_ceil": lambda t: avg_pool2d(t, 3, 2, ceil_mode=True),
}
if torch is not None:
    THEIRS = {  # PyTorch divides alpha by the window size: 1e-4 * 5
        "lrn": lambda t: TF.local_response_norm(t, size=5, alpha=5e-4, beta=0.75, k=2.0),
        "max": lambda t: TF.max_pool2d(t, 3, 2),
        "max_ceil": lambda t: TF.max_pool2d(t, 3, 2, ceil_mode=True),
        # PyTorch counts the clipped cells of a ceil-mode window unless padding is 0:
        # with padding=0 it divides by the elements inside, like ours
        "avg_ceil": lambda t: TF.avg_pool2d(t, 3, 2, ceil_mode=True),
    }


def fwd_bwd(op, x, g):
    """One forward + backward through minidl's autograd."""
    t = md.Tensor(x, requires_grad=True)
    op(t).backward(g)
    return t.grad


def conv_reference(N, conv, rng):
    """Seconds per forward + backward of the conv layer before the measured one."""
    (cin, h, w), wshape, stride, pad, groups = conv
    x = rng.standard_normal((N, cin, h, w), dtype=np.float32)
    W = rng.standard_normal(wshape, dtype=np.float32) * 0.01
    b = np.zeros(wshape[0], np.float32)
    oh = (h + 2 * pad - wshape[2]) // stride + 1
    try:
        def run():
            tx = md.Tensor(x, requires_grad=True)
            tW, tb = md.Tensor(W, requires_grad=True), md.Tensor(b, requires_grad=True)
            y = conv2d(tx, tW, tb, stride=stride, pad=pad, groups=groups)
            y.backward(np.ones(y.shape, np.float32))
        run()
        return median_time(run, repeat=3), "conv2d"
    except NotImplementedError:
        # (C_out/g x C/g*KH*KW) @ (C/g*KH*KW x N*OH*OW) per group, x3 for fwd + bwd
        a = rng.standard_normal((wshape[0] // groups, int(np.prod(wshape[1:]))), dtype=np.float32)
        c = rng.standard_normal((a.shape[1], N * oh * oh), dtype=np.float32)
        return 3 * groups * median_time(lambda: a @ c, repeat=3), "gemm x3"


def bench(cases, batch, rows, rng):
    convs = {}   # one measurement per conv layer (lrn1 and pool1 share conv1)
    for net, layer, op, shape, layout, conv in cases:
        x = np.abs(rng.standard_normal((batch,) + shape, dtype=np.float32))  # like a ReLU output
        x = laid_out(x, layout)
        y = OURS[op](md.Tensor(x))
        g = laid_out(rng.standard_normal(y.shape, dtype=np.float32), layout)
        repeat = 5 if batch * np.prod(shape) < 2e7 else 3
        run = lambda: fwd_bwd(OURS[op], x, g)        # noqa: E731
        slicing = None
        if op == "lrn" or cpu_pool.compiled_kernels(md.cpu.current_plan()) is None:
            ours = median_time(run, repeat=repeat, min_time=0.05)
        else:
            ours, slicing = interleaved(
                [on_path(True, run), on_path(False, run)], repeat,
                lambda fn: median_time(fn, repeat=1, warmup=0, min_time=0.05))
        if conv not in convs:
            convs[conv] = conv_reference(batch, conv, rng)
        conv_s, conv_kind = convs[conv]
        row = {"net": net, "layer": layer, "op": op, "batch": batch,
               "shape": "x".join(map(str, shape)), "layout": layout, "ours_ms": 1e3 * ours,
               "conv_ms": 1e3 * conv_s, "vs_conv": ours / conv_s}
        if slicing is not None:
            row.update(slicing_ms=1e3 * slicing, vs_slicing=ours / slicing)
        if torch is not None:
            tx, tg = torch.from_numpy(x), torch.from_numpy(g)

            def theirs():
                t = tx.detach().requires_grad_()
                THEIRS[op](t).backward(tg)
                return t.grad
            ref = theirs().numpy()
            got = fwd_bwd(OURS[op], x, g)
            assert np.allclose(got, ref, rtol=1e-3, atol=1e-4), f"{layer}: differs from torch"
            t_s = median_time(theirs, repeat=repeat, min_time=0.05)
            row.update(torch_ms=1e3 * t_s, vs_torch=ours / t_s)
        row["reference"] = conv_kind
        rows.append(row)
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="*", default=[16, 128],
                   help="AlexNet batch sizes (default: 16 128)")
    p.add_argument("--no-cifar", action="store_true", help="skip the CIFAR-10 net's shapes")
    p.add_argument("--only", nargs="*", help="layers to run, e.g. lrn1 pool1")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    keep = (lambda c: args.only is None or c[1] in args.only)
    rows = []
    for n in args.batch:
        bench([c for c in ALEXNET if keep(c)], n, rows, rng)
    if not args.no_cifar:
        bench([c for c in CIFAR if keep(c)], 128, rows, rng)
    notes = ("forward+backward, float32; ratios: ours / reference in the same run; "
             f"torch threads: {torch.get_num_threads() if torch is not None else 'n/a'}")
    report("bench_pool_lrn", rows, notes=notes,
           columns=["net", "layer", "batch", "shape", "layout", "ours_ms", "vs_slicing",
                    "vs_conv", "vs_torch", "torch_ms", "conv_ms", "reference"])


if __name__ == "__main__":
    main()

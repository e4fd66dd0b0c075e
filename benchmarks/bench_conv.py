"""conv2d forward+backward against the GEMMs it cannot avoid, measured in one run.

For each conv layer of the paper's net (227x227 input) and of the CIFAR-10 net
(cuda-convnet's layers-80sec: three 5x5 convs), times ``Convolution.forward``
+ ``backward`` (float32) and divides by the time of the same GEMMs alone: per
group, on preallocated arrays,

    y  (Og, N*P)    = W  (Og, Kg)  @ cols (Kg, N*P)
    dW.T (Kg, Og)   = cols @ dy.T       (this order runs faster in OpenBLAS, as in conv2d)
    dcols (Kg, N*P) = W.T @ dy          (not for conv1: the image needs no gradient)

(Og = C_out/groups, Kg = K/groups, P = OH*OW), their columns split over
minidl's threads in blocks, each thread with a one-thread BLAS, as conv2d runs
them (minidl/cpu/parallel.py). x and dy come laid out as the layer meets them
in its net (CHWN for the CIFAR net's conv2 and conv3, minidl/cpu/layout.py). Everything
above 1.0 is im2col, col2im, bias, padding and memory traffic. When PyTorch is installed
its CPU conv forward+backward on the same shapes is an extra column (for
comparison only; minidl never imports torch).

    python -m benchmarks.bench_conv                  # batch 16 and 128, + CIFAR
    python -m benchmarks.bench_conv --batch 16       # quicker
    python -m benchmarks.bench_conv --threads 1 --cpu-time   # on a busy shared machine
    python -m benchmarks.bench_conv --options        # each part of each layer, each way

On a machine shared with other jobs, wall times of multi-threaded BLAS swing
10x (a GEMM thread waiting for a descheduled partner), and conv2d suffers
more than the reference: it makes one GEMM call per chunk of images (10-30
per layer) where the reference makes one, and each call can wait a time
slice. So quote the 2-core wall ratio only from a quiet machine (``uptime``
load < 1); ``--threads 1 --cpu-time`` runs everything on one thread and
counts CPU time, which other jobs barely disturb: the ratio then says how
much work the copies add.
Writes benchmarks/results/bench_conv.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

if "--threads" in sys.argv:  # BLAS reads its thread count once, when numpy loads
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import numpy as np  # noqa: E402

from benchmarks.common import as_chwn, report  # noqa: E402
from benchmarks.common import interleaved as common_interleaved  # noqa: E402
import minidl  # noqa: E402
from minidl.cpu import conv as cpu_conv  # noqa: E402
from minidl.cpu.layout import is_chwn  # noqa: E402
from minidl.cpu.parallel import parallel_for  # noqa: E402
from minidl.functions.conv import Convolution  # noqa: E402

# name, C, H, W, C_out, KH, KW, stride, pad, groups, needs dx
ALEXNET = [
    ("conv1", 3, 227, 227, 96, 11, 11, 4, 0, 1, False),
    ("conv2", 96, 27, 27, 256, 5, 5, 1, 2, 2, True),
    ("conv3", 256, 13, 13, 384, 3, 3, 1, 1, 1, True),
    ("conv4", 384, 13, 13, 384, 3, 3, 1, 1, 2, True),
    ("conv5", 384, 13, 13, 256, 3, 3, 1, 1, 2, True),
]
CIFAR = [
    ("cifar1", 3, 32, 32, 32, 5, 5, 1, 2, 1, False),
    ("cifar2", 32, 16, 16, 32, 5, 5, 1, 2, 1, True),
    ("cifar3", 32, 8, 8, 64, 5, 5, 1, 2, 1, True),
]


# layers whose input arrives as CHWN in their net (layout.py): the CIFAR net's
# conv2 and conv3 read the output of a pooling of a CHWN conv output
CHWN_INPUT = {"cifar2", "cifar3"}


def make_inputs(spec, N, rng):
    """x, W, b and dy, x and dy laid out as the layer meets them in its net (dy:
    as the layer lays out its output)."""
    name, C, H, Wd, C_out, KH, KW, s, p, G, need_x = spec
    f32 = np.float32
    OH, OW = (H + 2 * p - KH) // s + 1, (Wd + 2 * p - KW) // s + 1
    x = rng.standard_normal((N, C, H, Wd), dtype=f32)
    W = rng.standard_normal((C_out, C // G, KH, KW), dtype=f32) * 0.01
    b = rng.standard_normal(C_out, dtype=f32)
    gy = rng.standard_normal((N, C_out, OH, OW), dtype=f32)
    if name in CHWN_INPUT:
        x = as_chwn(x)
    if is_chwn(Convolution(s, p, G).forward(x, W, b)):       # one forward to see
        gy = as_chwn(gy)
    return x, W, b, gy


def bench_layer(spec, N, repeat):
    """ours and the GEMMs alone, their samples interleaved."""
    name, C, H, Wd, C_out, KH, KW, s, p, G, need_x = spec
    rng = np.random.default_rng(0)
    f32 = np.float32
    x, W, b, gy = make_inputs(spec, N, rng)
    OH, OW = gy.shape[2:]

    def ours():
        f = Convolution(s, p, G)
        f.needs_input_grad = (need_x, True, True)
        f.forward(x, W, b)
        f.backward(gy)


    # the GEMMs alone, same shapes, preallocated (one set of arrays serves every
    # group), their columns split over the threads as conv2d splits them: one
    # share per thread, each multiplied with a one-thread BLAS (as fast as one
    # two-thread BLAS call on the whole, measured), dW.T summed at the end. Where
    # conv2d cuts its GEMMs into blocks of columns, so does the reference: the
    # same products, the same sizes, each block its own contiguous array (what
    # suits the BLAS best): blocks of output positions (conv.py's schedule 1),
    # or blocks of output rows of a thread's images (schedule 2, short K).
    Og, Kg, NP = C_out // G, C * KH * KW // G, N * OH * OW
    T = max(1, min(minidl.get_num_threads(), N))
    plan = minidl.cpu.current_plan()
    if cpu_conv.Conv2d(s, p, G, plan).by_positions_for(x, W):
        blocks = [(r1 - r0) * (w1 - w0) * N for r0, r1, w0, w1 in
                  cpu_conv.position_blocks(OH, OW, N, C * KH * KW, plan, T)]
        T = min(T, len(blocks))
        thread_sizes = [blocks[len(blocks) * t // T:len(blocks) * (t + 1) // T]
                        for t in range(T)]
    else:
        width = cpu_conv.block_columns(C * KH * KW, plan)
        thread_sizes = []
        for t in range(T):
            n = NP * (t + 1) // T - NP * t // T
            thread_sizes.append([n] if width is None else
                                [min(width, n - c0) for c0 in range(0, n, width)])
    shares = []
    for sizes in thread_sizes:
        shares.append([{"cols": rng.standard_normal((Kg, m), dtype=f32),
                        "dy": rng.standard_normal((Og, m), dtype=f32),
                        "y": np.empty((Og, m), f32), "dWT": np.empty((Kg, Og), f32),
                        "dcols": np.empty((Kg, m), f32) if need_x else None}
                       for m in sizes])
    Wg = rng.standard_normal((Og, Kg), dtype=f32)

    def share_gemms(t0, t1):
        for share in shares[t0:t1]:
            for a in share:
                for _ in range(G):
                    np.matmul(Wg, a["cols"], out=a["y"])
                    np.matmul(a["cols"], a["dy"].T, out=a["dWT"])
                    if need_x:
                        np.matmul(Wg.T, a["dy"], out=a["dcols"])
            for a in share[1:]:
                share[0]["dWT"] += a["dWT"]

    def gemms():
        parallel_for(share_gemms, T)
        for share in shares[1:]:
            shares[0][0]["dWT"] += share[0]["dWT"]

    t_ours, t_gemm = interleaved([ours, gemms], repeat)
    return {"layer": name, "batch": N, "ours_ms": 1e3 * t_ours, "gemm_ms": 1e3 * t_gemm,
            "ours/gemm": t_ours / t_gemm}


def bench_torch(spec, N, repeat, row):
    """PyTorch on the same shapes, measured in a pass of its own after all of ours:
    its OpenMP threads spin for a while after each op and, interleaved, stole a
    core from the next NumPy run (conv1 looked 2x slower)."""
    name, C, H, Wd, C_out, KH, KW, s, p, G, need_x = spec
    x, W, b, gy = make_inputs(spec, N, np.random.default_rng(0))
    (t_torch,) = interleaved([torch_conv(x, W, b, gy, s, p, G, need_x)], repeat)
    row["torch_ms"] = 1e3 * t_torch
    row["ours/torch"] = row["ours_ms"] / row["torch_ms"]


CPU_TIME = False  # --cpu-time: time.process_time instead of wall time

# --options: each part of each layer with each way of the CPU fast path to run it
OPTIONS = {"blas": minidl.cpu.Plan(compiled_conv=False),        # the positions/chunks schedules
           "loops": minidl.cpu.Plan(conv_schedule="direct")}    # conv_kernels.py where it can
PARTS = ("forward", "dW+db", "dx")


def bench_parts(spec, N, repeat):
    """Rows (layer, part, ms with each option, the Plan's choice) for one layer: its
    forward, its dW+db and its dx timed apart (each backward part after an untimed
    forward), the options' samples taken in turns."""
    name, C, H, Wd, C_out, KH, KW, s, p, G, need_x = spec
    x, W, b, gy = make_inputs(spec, N, np.random.default_rng(0))
    clock = time.process_time if CPU_TIME else time.perf_counter
    parts = [part for part in PARTS if part != "dx" or need_x]
    wanted = {"forward": None, "dW+db": (False, True, True), "dx": (True, False, False)}

    def sample(option, part):
        with minidl.cpu.use_fast_path(plan=OPTIONS[option]):
            f = Convolution(s, p, G)
            f.needs_input_grad = (need_x, True, True)
            t0 = clock()
            f.forward(x, W, b)
            if part != "forward":
                t0 = clock()
                f.fast.backward(gy, *wanted[part])
            return clock() - t0, f.fast.direct

    times = {(o, part): [] for o in OPTIONS for part in parts}
    for key in times:
        sample(*key)                                       # warm-up: compile, scratch
    for _ in range(repeat):
        for key in times:
            times[key].append(sample(*key)[0])
    with minidl.cpu.use_fast_path(plan=minidl.cpu.Plan()):
        f = Convolution(s, p, G)
        f.needs_input_grad = (need_x, True, True)
        f.forward(x, W, b)
        chosen = f.fast.direct
    picks = {"forward": chosen.forward, "dW+db": chosen.weights, "dx": chosen.inputs}
    rows = []
    for part in parts:
        ms = {o: 1e3 * float(np.median(times[o, part])) for o in OPTIONS}
        rows.append({"layer": name, "batch": N, "part": part, "blas_ms": ms["blas"],
                     "loops_ms": ms["loops"], "blas/loops": ms["blas"] / ms["loops"],
                     "auto": "loops" if picks[part] else "blas"})
    return rows


def interleaved(fns, repeat):
    """common.interleaved, each sample the CPU time under --cpu-time (the order:
    ours, gemm, torch, ours, ...)."""
    return common_interleaved(fns, repeat, cpu_time if CPU_TIME else None)


def cpu_time(fn):
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def torch_conv(x, W, b, gy, s, p, G, need_x):
    import torch
    tx = torch.from_numpy(x).requires_grad_(need_x)
    tW = torch.from_numpy(W).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    tg = torch.from_numpy(gy)

    def run():
        tW.grad = tb.grad = tx.grad = None
        torch.nn.functional.conv2d(tx, tW, tb, stride=s, padding=p, groups=G).backward(tg)

    return run


def total_row(rows, label, N):
    row = {"layer": label, "batch": N,
           "ours_ms": sum(r["ours_ms"] for r in rows), "gemm_ms": sum(r["gemm_ms"] for r in rows)}
    row["ours/gemm"] = row["ours_ms"] / row["gemm_ms"]
    if all("torch_ms" in r for r in rows):
        row["torch_ms"] = sum(r["torch_ms"] for r in rows)
        row["ours/torch"] = row["ours_ms"] / row["torch_ms"]
    row["img/s"] = N / (row["ours_ms"] / 1e3)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 128],
                    help="batch sizes for the paper's conv layers (default: 16 128)")
    ap.add_argument("--cifar-batch", type=int, default=128, help="batch for the CIFAR net")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats per measurement")
    ap.add_argument("--only", choices=["alexnet", "cifar"], help="run one of the two nets")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    ap.add_argument("--threads", type=int, help="threads for minidl, BLAS and torch "
                    "(default: all cores)")
    ap.add_argument("--cpu-time", action="store_true", help="count CPU time, not wall time "
                    "(meaningful with --threads 1 on a busy machine)")
    ap.add_argument("--options", action="store_true",
                    help="each part (forward, dW+db, dx) of each layer with each way the CPU "
                         "fast path can run it (the BLAS schedules, the compiled loops) and "
                         "the one the default Plan picks; writes bench_conv_options.json")
    args = ap.parse_args(argv)
    global CPU_TIME
    CPU_TIME = args.cpu_time
    if args.threads:
        minidl.set_num_threads(args.threads)
    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch
            if args.threads:
                torch.set_num_threads(args.threads)
        except ImportError:
            use_torch = False

    rows = []
    plan = []
    if args.only != "cifar":
        plan += [(ALEXNET, N, "alexnet conv1-5") for N in args.batch]
    if args.only != "alexnet":
        plan += [(CIFAR, args.cifar_batch, "cifar conv1-3")]
    if args.options:
        rows = [row for specs, N, _ in plan for spec in specs
                for row in bench_parts(spec, N, args.repeat)]
        clock = "CPU time" if CPU_TIME else "wall time"
        report("bench_conv_options", rows,
               notes=f"float32, {clock}, threads={args.threads or 'all'}, medians of "
                     f"{args.repeat} samples taken in turns; blas = Plan(compiled_conv=False) "
                     "(the positions or chunks schedule), loops = Plan(conv_schedule='direct') "
                     "(minidl/cpu/conv_kernels.py), auto = what the default Plan runs; "
                     "blas/loops above 1: the loops are faster")
        return
    layer_rows = {(N, label): [bench_layer(spec, N, args.repeat) for spec in specs]
                  for specs, N, label in plan}
    if use_torch:
        for specs, N, label in plan:
            for spec, row in zip(specs, layer_rows[N, label]):
                bench_torch(spec, N, args.repeat, row)
    for specs, N, label in plan:
        rows += layer_rows[N, label] + [total_row(layer_rows[N, label], label, N)]
    columns = ["layer", "batch", "ours_ms", "gemm_ms", "ours/gemm"]
    if use_torch:
        columns += ["torch_ms", "ours/torch"]
    clock = "CPU time" if CPU_TIME else "wall time"
    report("bench_conv", rows, columns + ["img/s"],
           notes=f"float32 forward+backward, {clock}, threads={args.threads or 'all'}; "
                 "gemm = the same matmuls alone on preallocated arrays; torch = "
                 "torch.nn.functional.conv2d forward+backward (CPU); img/s from ours_ms")


if __name__ == "__main__":
    main()

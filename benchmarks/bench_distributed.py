"""Data parallelism (alexnet.distributed): what communication costs, here and on paper.

Measured with R ranks under mpiexec on this machine, one thread per rank
(MINIDL_NUM_THREADS=1, BLAS at one thread), the paper's net (60,965,224
parameters: a gradient of 244 MB in float32), the global batch of 128 split R ways:

* a training step as the Trainer runs it: forward + backward on the rank's share,
  `allreduce_gradients` (the communication), the SGD step; the share of the step
  spent communicating (waiting for the slower rank included, as in a real run);
* the Allreduce of that gradient three ways, in turns, each after a barrier:
  ours (`allreduce_gradients`: copied into a few 64 MiB buckets, a gradient
  that size or larger summed where it lies, then scaled, left as views), MPI's
  own (one Allreduce of one 244 MB buffer, the same bytes) and one call per
  tensor; as bandwidth, bytes / time (GB/s).

Then, on paper, the expected step time for 1, 2, 8 and 64 GPUs: compute of the
global batch split R ways plus a ring Allreduce of the gradient (2 (R-1)/R of its
bytes through each GPU's link, and 2 (R-1) latencies), with published link speeds:
NVLink 3 inside a machine of 8 GPUs (A100: 300 GB/s each way per GPU), InfiniBand
HDR between machines (200 Gb/s = 25 GB/s, one adapter per GPU, as in a DGX
A100), and, for comparison, the MPI bandwidth measured here. Inside a machine the
ring runs over NVLink; across machines a hierarchical Allreduce (NCCL's) sends
the inter-machine part over InfiniBand. The GPU compute time is an input
(`--gpu-step`, seconds for one GPU to run forward + backward + SGD on 128
images); the default is the paper's: 90 epochs of 1.2M images in about 5.5 days
on two GTX 580 is 0.56 s per step of 128 on two GPUs, ~1.13 s on one. Compute is
assumed to split perfectly (a GPU with 2 of 128 images is not 64x faster: the
figures for 64 GPUs are a bound), and nothing overlaps (our Allreduce runs
after the backward pass).

    python -m benchmarks.bench_distributed                      # 2 ranks, 3 steps (a minute)
    python -m benchmarks.bench_distributed --ranks 2 --steps 2 --gpu-step 0.05
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import RESULTS, report
from .machine import machine as describe_machine

ROOT = Path(__file__).resolve().parent.parent
GB = 1e9
PAPER_STEP_ONE_GPU = 2 * 5.5 * 86400 / (90 * 1_200_000 / 128)   # s per step of 128, one GTX 580
LINKS = {   # bytes/s each way per GPU, latency per ring step (published figures)
    "NVLink 3 (A100)": (300e9, 5e-6),
    "InfiniBand HDR": (25e9, 10e-6),
}


# ---------------------------------------------------------------------- under mpiexec
def worker(args):
    import minidl
    from minidl import Tensor, functions as F, optim
    from alexnet.distributed import world
    from alexnet.model import AlexNet, AlexNetConfig

    comm = world()
    mpi, MPI = comm.comm, comm.MPI
    share = args.batch // comm.size
    minidl.keep_freed_memory()
    model = AlexNet(AlexNetConfig(), devices=("cpu", "cpu"), seed=0)
    comm.share_dropout(model)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    rng = np.random.default_rng(comm.rank)
    x = rng.standard_normal((share, 3, 227, 227), dtype=np.float32)   # (B/R, 3, 227, 227)
    y = rng.integers(0, 1000, share)

    steps = []
    for i in range(args.steps + 1):                                   # the first: warm-up
        mpi.Barrier()
        t0 = time.perf_counter()
        loss = F.softmax_cross_entropy(model(Tensor(x)), y)
        comm.sum_counts(np.array([loss.item() * share]), share)
        opt.zero_grad()
        loss.backward()
        t1 = time.perf_counter()
        comm.allreduce_gradients(opt.params)
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i:
            steps.append((t1 - t0, t2 - t1, t3 - t2))
    compute, communicate, sgd = (float(np.median(c)) for c in zip(*steps))

    params = opt.params
    grads = [p.grad.copy() for p in params]
    nbytes = sum(g.nbytes for g in grads)
    flat = np.ones(nbytes // 4, np.float32)

    def ours():
        for p, g in zip(params, grads):
            p.grad = g
        comm.allreduce_gradients(params)

    def mpi_own():
        mpi.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)

    def per_tensor():
        for g in grads:
            mpi.Allreduce(MPI.IN_PLACE, g, op=MPI.SUM)

    fns = {"ours": ours, "mpi": mpi_own, "per_tensor": per_tensor}
    times = {k: [] for k in fns}
    for _ in range(args.repeat + 1):
        for name, fn in fns.items():
            mpi.Barrier()
            t0 = time.perf_counter()
            fn()
            elapsed = mpi.allreduce(time.perf_counter() - t0, op=MPI.MAX)   # the slowest rank
            times[name].append(elapsed)
    allreduce = {k: float(np.median(v[1:])) for k, v in times.items()}
    if comm.is_root:
        result = {"ranks": comm.size, "batch": args.batch, "share": share,
                  "threads_per_rank": minidl.get_num_threads(),
                  "parameters": int(sum(p.size for p in params)), "gradient_bytes": int(nbytes),
                  "buckets": len(comm._buckets.buckets), "tensors": len(params),
                  "step": {"compute_s": compute, "allreduce_s": communicate, "sgd_s": sgd},
                  "allreduce_s": allreduce,
                  "mpi_library": MPI.Get_library_version().splitlines()[0].strip()}
        Path(args.worker).write_text(json.dumps(result))


# ---------------------------------------------------------------------- on paper
def ring_seconds(nbytes, ranks, bandwidth, latency):
    """A ring Allreduce: each GPU sends and receives 2 (R-1)/R of the bytes, in 2 (R-1) steps."""
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * latency


def expected(nbytes, gpu_step, measured_bw, per_machine=8):
    """Rows of the expected step time for 1, 2, 8, 64 GPUs (see the module docstring)."""
    nvlink, ib = LINKS["NVLink 3 (A100)"], LINKS["InfiniBand HDR"]
    rows = []
    for gpus in (1, 2, 8, 64):
        machines = max(1, gpus // per_machine)
        inside = min(gpus, per_machine)
        compute = gpu_step / gpus
        comm = ring_seconds(nbytes, inside, *nvlink)
        if machines > 1:   # hierarchical: each GPU's 1/8 of the gradient over its own adapter
            comm += ring_seconds(nbytes / inside, machines, *ib)
        here = ring_seconds(nbytes, gpus, measured_bw, 0.0)
        rows.append({"gpus": gpus, "machines": machines, "compute_s": compute,
                     "allreduce_s": comm, "step_s": compute + comm,
                     "speedup": gpu_step / (compute + comm), "comm_share": comm / (compute + comm),
                     "allreduce_s_at_measured_bw": here})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up)")
    p.add_argument("--repeat", type=int, default=5, help="timed Allreduce samples of each kind")
    p.add_argument("--batch", type=int, default=128, help="the global batch (Section 5: 128)")
    p.add_argument("--gpu-step", type=float, default=PAPER_STEP_ONE_GPU,
                   help="seconds for ONE GPU to train a step of the global batch "
                        f"(default {PAPER_STEP_ONE_GPU:.2f}: the paper's GTX 580)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    mpiexec = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if not mpiexec:
        sys.exit("bench_distributed: no mpiexec; install the MPI extra: pip install -e \".[mpi]\"")
    env = dict(os.environ, MINIDL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "measured.json"
        cmd = [mpiexec, "-n", str(args.ranks), sys.executable, "-m", "benchmarks.bench_distributed",
               "--worker", str(out), "--steps", str(args.steps), "--repeat", str(args.repeat),
               "--batch", str(args.batch)]
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, timeout=3600)
        m = json.loads(out.read_text())

    nbytes, step, ar = m["gradient_bytes"], m["step"], m["allreduce_s"]
    total = step["compute_s"] + step["allreduce_s"] + step["sgd_s"]
    bw = {k: nbytes / v / GB for k, v in ar.items()}
    print(f"{m['ranks']} ranks x {m['share']} images, {m['threads_per_rank']} thread each, "
          f"{m['mpi_library']}")
    print(f"gradient: {m['parameters']:,} parameters = {nbytes / 1e6:.0f} MB in {m['tensors']} "
          f"tensors -> {m['buckets']} buckets")
    print(f"step {total:.2f} s: forward+backward {step['compute_s']:.2f} s, allreduce "
          f"{step['allreduce_s']:.3f} s ({100 * step['allreduce_s'] / total:.1f}% of the step), "
          f"SGD {step['sgd_s']:.2f} s")
    print("allreduce of the gradient: " + ", ".join(
        f"{k} {ar[k]:.3f} s = {bw[k]:.2f} GB/s" for k in ("ours", "mpi", "per_tensor")) +
        f"; ours / MPI's own: {ar['mpi'] / ar['ours']:.2f}x the bandwidth")
    print(f"\nexpected step time, global batch {m['batch']}, one GPU {args.gpu_step:.3f} s per "
          f"step; NVLink 3 inside a machine of 8, InfiniBand HDR between:")
    rows = expected(nbytes, args.gpu_step, nbytes / ar["mpi"])
    notes = (f"one GPU's step: {args.gpu_step:.3g} s (--gpu-step); links: "
             + ", ".join(f"{k} {v[0] / GB:g} GB/s, {v[1] * 1e6:g} us" for k, v in LINKS.items())
             + "; 8 GPUs per machine; compute assumed to split perfectly, no overlap")
    report("bench_distributed", rows, notes=notes)
    # the measured figures before the table (docs/results.md shows each list of rows)
    path = RESULTS / "bench_distributed.json"
    written = json.loads(path.read_text())
    command_line = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    data = {
        "benchmark": written["benchmark"],
        "machine": describe_machine(command_line),
        "notes": written["notes"],
        "mpi_library": m["mpi_library"], "parameters": m["parameters"],
        "gradient_MB": nbytes / 1e6, "buckets": m["buckets"], "tensors": m["tensors"],
        "measured_step": [{"ranks": m["ranks"], "images_per_rank": m["share"],
                           "threads_per_rank": m["threads_per_rank"], **step, "step_s": total,
                           "comm_share": step["allreduce_s"] / total}],
        "measured_allreduce": [{"call": name, "seconds": ar[key], "GB_per_s": bw[key],
                                "vs_mpi_own": ar["mpi"] / ar[key]}
                               for key, name in (("ours", "ours (64 MiB buckets)"),
                                                 ("mpi", "MPI's own, one buffer"),
                                                 ("per_tensor", "one call per tensor"))],
        "rows": written["rows"],
    }
    path.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()

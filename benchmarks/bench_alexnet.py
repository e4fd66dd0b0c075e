"""One training step of the paper's net on the CPU: images/s and peak memory.

A step is what `alexnet train` does per batch: forward through the two-column
`AlexNet` (both columns on ``cpu``), softmax cross-entropy, backward, and the
Section 5 SGD update (momentum 0.9, weight decay 0.0005) of all 60,965,224
parameters. Input: random float32 images (N, 3, 227, 227), random labels.

Measured in the same run, each configuration in its own subprocess (so that
one's memory does not count against the other's), both built first, then
their steps interleaved: minidl, torch, minidl, torch, ... (the machines are
shared; a change of load then falls on both alike). After one warm-up step
each, the median of ``--steps`` steps. Both processes keep freed memory for
reuse (minidl.keep_freed_memory(), as alexnet's Trainer does;
``--default-malloc`` leaves malloc alone in both).

* minidl: the two-column `AlexNet`, both columns on ``cpu``.
* torch (if it imports; never a dependency): the SAME architecture on
  PyTorch CPU: conv2, conv4, conv5 as ``groups=2`` convolutions, LRN run on
  each column's half of the channels (``local_response_norm`` divides alpha
  by the window size, so it gets alpha = 1e-4 * 5), the same initial
  distributions (N(0, 0.01^2), Section 5's biases), dropout 0.5 in fc6/fc7,
  ``torch.optim.SGD(momentum=0.9, weight_decay=5e-4)``, and
  ``torch.set_num_threads(os.cpu_count())``.

Reported: img/s of each; the ratio torch-time / minidl-time (above 1: minidl
is faster), by wall time and by CPU seconds per step (all threads of the
process); each subprocess's resident-set high-water mark (VmHWM). Then, for
one minidl step in a fresh process, where the time goes: forward and
backward of every op, labelled by op and shapes (which name the layer),
plus the SGD step and the autograd bookkeeping left over.

    python -m benchmarks.bench_alexnet                       # batch 128, 3 steps (minutes)
    python -m benchmarks.bench_alexnet --batch 32 --steps 2 --no-torch
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np

from .common import report

GiB = 2 ** 30


# ----------------------------------------------------------------------------
# Peak memory of this process
# ----------------------------------------------------------------------------
def peak_rss_bytes() -> int:
    """The resident-set high-water mark of this process (VmHWM; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024            # kB
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024        # bytes on macOS


# ----------------------------------------------------------------------------
# minidl
# ----------------------------------------------------------------------------
def minidl_step_fn(batch, seed=0):
    """A function running one training step of minidl's AlexNet, and its optimizer."""
    import minidl
    from minidl import functions as F
    from minidl.optim import SGD
    from alexnet.model import AlexNet

    rng = np.random.default_rng(seed)
    model = AlexNet(seed=seed)
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    minidl.random.manual_seed(seed)
    x = minidl.Tensor(rng.standard_normal((batch, 3, 227, 227), dtype=np.float32))
    labels = rng.integers(0, 1000, batch)

    def step():
        loss = F.softmax_cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step, opt


class OpTimer:
    """Wall time of every Function's forward and backward, keyed by op and shapes.

    The key is (op, "input shape -> output shape", pass): the shapes name the
    layer (conv3 reads 256 channels, conv4 192), and both columns of a layer
    add up in one row.

    Wraps ``forward``/``backward`` of each Function subclass for the duration of
    a ``with`` block. Nested calls are not expected (minidl's ops call plain
    array code, not other Functions).
    """

    def __init__(self):
        from minidl.autograd import Function
        self.times = defaultdict(float)
        self.classes = _subclasses(Function)
        self.saved = {}

    def __enter__(self):
        timer = self
        for cls in self.classes:
            for name in ("forward", "backward"):
                if name not in vars(cls):
                    continue
                original = vars(cls)[name]
                self.saved[cls, name] = original

                def timed(fn_self, *args, _original=original, _name=name):
                    t0 = time.perf_counter()
                    out = _original(fn_self, *args)
                    elapsed = time.perf_counter() - t0
                    if _name == "forward":   # args: the input arrays
                        x, y = args[0], (out[0] if isinstance(out, tuple) else out)
                    else:                    # args: the output gradients
                        x, y = fn_self.inputs[0], args[0]
                    key = f"{_shape(x.shape)} -> {_shape(y.shape)}"
                    timer.times[type(fn_self).__name__, key, _name] += elapsed
                    return out
                setattr(cls, name, timed)
        return self

    def __exit__(self, *exc):
        for (cls, name), original in self.saved.items():
            setattr(cls, name, original)


def _shape(shape):
    return "x".join(map(str, shape))


def _subclasses(cls):
    out = []
    for sub in cls.__subclasses__():
        out += [sub] + _subclasses(sub)
    return out


def minidl_breakdown(batch):
    """Seconds of one (warm) minidl step, split by op, SGD and the rest."""
    step, opt = minidl_step_fn(batch)
    step()                                                 # warm-up (allocations, BLAS threads)
    timer = OpTimer()
    sgd = [0.0]
    original_step = opt.step

    def timed_step():
        t0 = time.perf_counter()
        original_step()
        sgd[0] += time.perf_counter() - t0
    opt.step = timed_step
    with timer:
        t0 = time.perf_counter()
        step()
        total = time.perf_counter() - t0
    rows = [{"op": op, "shapes": shapes, "pass": which, "ms": 1e3 * t}
            for (op, shapes, which), t in timer.times.items()]
    ops = sum(timer.times.values())
    rows += [{"op": "SGD.step", "shapes": "61M params", "pass": "update", "ms": 1e3 * sgd[0]},
             {"op": "(autograd, python)", "shapes": "", "pass": "rest",
              "ms": 1e3 * (total - ops - sgd[0])},
             {"op": "TOTAL", "shapes": "", "pass": "step", "ms": 1e3 * total}]
    return rows


def minidl_setup(batch):
    step, _ = minidl_step_fn(batch)
    return step, {}


# ----------------------------------------------------------------------------
# PyTorch, the same architecture
# ----------------------------------------------------------------------------
# The paper's net in PyTorch's terms, what `torch_net` builds from, and what
# tests/test_bench_alexnet.py compares with minidl's GroupedAlexNet (without torch).
TORCH_CONVS = (  # name, in, out, kernel, stride, padding, groups (2: the columns of Figure 2)
    ("conv1", 3, 96, 11, 4, 0, 1), ("conv2", 96, 256, 5, 1, 2, 2),
    ("conv3", 256, 384, 3, 1, 1, 1), ("conv4", 384, 384, 3, 1, 1, 2),
    ("conv5", 384, 256, 3, 1, 1, 2))
TORCH_FCS = (("fc6", 9216, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000))
TORCH_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")   # Section 5; the others start at 0
TORCH_LRN = dict(size=5, alpha=5e-4, beta=0.75, k=2.0)     # torch divides alpha by size: 1e-4 x 5
PAPER_PARAMETERS = 60_965_224


def torch_net():
    """AlexNet of Figure 2 in PyTorch: groups=2 convs and LRN per column's half."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF

    class GroupedAlexNetTorch(tnn.Module):
        def __init__(self):
            super().__init__()
            for name, c_in, c_out, k, stride, pad, groups in TORCH_CONVS:
                setattr(self, name, tnn.Conv2d(c_in, c_out, k, stride=stride, padding=pad,
                                               groups=groups))
            for name, f_in, f_out in TORCH_FCS:
                setattr(self, name, tnn.Linear(f_in, f_out))
            with torch.no_grad():                      # Section 5's initialisation
                for name, m in self.named_children():
                    m.weight.normal_(0, 0.01)
                    m.bias.fill_(1.0 if name in TORCH_BIAS_ONE else 0.0)

        @staticmethod
        def lrn(x):  # per column
            return torch.cat([TF.local_response_norm(h, **TORCH_LRN) for h in x.chunk(2, dim=1)],
                             dim=1)

        def forward(self, x):
            pool = lambda h: TF.max_pool2d(h, 3, 2)  # noqa: E731
            h = pool(self.lrn(TF.relu(self.conv1(x))))          # (N, 96, 27, 27)
            h = pool(self.lrn(TF.relu(self.conv2(h))))          # (N, 256, 13, 13)
            h = TF.relu(self.conv3(h))
            h = TF.relu(self.conv4(h))
            h = pool(TF.relu(self.conv5(h))).flatten(1)         # (N, 9216)
            h = TF.dropout(TF.relu(self.fc6(h)), 0.5, self.training)
            h = TF.dropout(TF.relu(self.fc7(h)), 0.5, self.training)
            return self.fc8(h)                                  # (N, 1000)

    net = GroupedAlexNetTorch()
    count = sum(p.numel() for p in net.parameters())
    if count != PAPER_PARAMETERS:     # never time another net than the paper's
        raise RuntimeError(f"torch_net: expected the paper's {PAPER_PARAMETERS:,} parameters, "
                           f"found {count:,}; fix TORCH_CONVS / TORCH_FCS")
    return net


def torch_setup(batch):
    import torch
    import torch.nn.functional as TF
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    net = torch_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    x = torch.randn(batch, 3, 227, 227)
    labels = torch.randint(0, 1000, (batch,))

    def step():
        loss = TF.cross_entropy(net(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step, {"params": sum(p.numel() for p in net.parameters()),
                  "torch": torch.__version__, "threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------
# Driver: one subprocess per configuration, their steps interleaved
# ----------------------------------------------------------------------------
SETUPS = {"minidl": minidl_setup, "torch": torch_setup}


def serve(worker, batch, keep_memory=True):
    """A worker process: build the net, then run one timed step per 'step' line on stdin.

    Answers each with {"wall": s, "cpu": s} (CPU: this process, all threads);
    on 'done' answers with its peak memory and exits.
    """
    if keep_memory:
        import minidl                     # noqa: PLC0415
        minidl.keep_freed_memory()        # as alexnet's Trainer: for either library
    step, info = SETUPS[worker](batch)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "done":
            print(json.dumps({**info, "peak_bytes": peak_rss_bytes()}), flush=True)
            return
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}),
              flush=True)


class Worker:
    """The driver's end of a `serve` process."""

    def __init__(self, name, batch, default_malloc=False):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_alexnet", "--worker", name,
             "--batch", str(batch)] + (["--default-malloc"] if default_malloc else []), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)
        self.samples = []
        self.ask(None)

    def ask(self, command):
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench_alexnet: the {self.name} worker died "
                               f"(exit status {self.proc.wait()}); its error is above")
        return json.loads(line)

    def step(self, keep=True):
        sample = self.ask("step")
        if keep:
            self.samples.append(sample)

    def finish(self):
        info = self.ask("done")
        self.proc.wait()
        return {**info, "seconds": float(np.median([s["wall"] for s in self.samples])),
                "cpu_seconds": float(np.median([s["cpu"] for s in self.samples]))}


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except Exception:  # noqa: BLE001
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-op breakdown")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave malloc as it is (by default both processes keep freed memory, "
                        "as alexnet's Trainer does: minidl/cpu/memory.py)")
    p.add_argument("--worker", choices=sorted(SETUPS) + ["breakdown"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker == "breakdown":
        if not args.default_malloc:
            import minidl                 # noqa: PLC0415
            minidl.keep_freed_memory()    # as in the timed steps
        print(json.dumps(minidl_breakdown(args.batch)))
        return
    if args.worker:
        serve(args.worker, args.batch, keep_memory=not args.default_malloc)
        return

    # Both nets stay built; their steps alternate (minidl, torch, minidl, ...), so a
    # change in the shared machine's load falls on both alike.
    names = ["minidl"] + (["torch"] if not args.no_torch and torch_available() else [])
    workers = [Worker(name, args.batch, args.default_malloc) for name in names]
    for w in workers:
        w.step(keep=False)                                       # warm-up
    for _ in range(args.steps):
        for w in workers:
            w.step()
    results = {w.name: w.finish() for w in workers}
    rows = []
    for name, r in results.items():
        rows.append({"impl": name, "batch": args.batch, "s/step": r["seconds"],
                     "img/s": args.batch / r["seconds"], "cpu_s/step": r["cpu_seconds"],
                     "peak_GiB": r["peak_bytes"] / GiB})
    if "torch" in results:   # above 1: minidl is faster (by wall time; by CPU time)
        t, m = results["torch"], results["minidl"]
        rows[0]["vs_torch"] = t["seconds"] / m["seconds"]
        rows[0]["vs_torch_cpu"] = t["cpu_seconds"] / m["cpu_seconds"]
    notes = {"steps": args.steps, "cpus": os.cpu_count(),
             "freed_memory_kept": not args.default_malloc,
             "target": "minidl >= 1.0x torch img/s; minidl peak <= 3 GiB at batch 128",
             "torch": {k: v for k, v in results.get("torch", {}).items()
                       if k in ("torch", "threads", "params")}}
    report(f"bench_alexnet_b{args.batch}", rows, notes=notes)

    if not args.no_breakdown:
        print("\nOne minidl step, by op (forward / backward; both columns together; the shapes name the layer):")
        cmd = [sys.executable, "-m", "benchmarks.bench_alexnet", "--worker", "breakdown",
               "--batch", str(args.batch)] + (["--default-malloc"] if args.default_malloc else [])
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"bench_alexnet: the breakdown failed:\n{done.stderr[-3000:]}")
        brows = json.loads(done.stdout.strip().splitlines()[-1])
        total = next(r["ms"] for r in brows if r["op"] == "TOTAL")
        for r in brows:
            r["share"] = r["ms"] / total
        brows.sort(key=lambda r: (r["op"] == "TOTAL", -r["ms"]))
        report(f"bench_alexnet_b{args.batch}_breakdown", brows,
               columns=["op", "shapes", "pass", "ms", "share"])


if __name__ == "__main__":
    main()

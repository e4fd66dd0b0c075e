"""GPU check: every op and the paper's net on CuPy, compared with NumPy.

    python -m benchmarks.gpu_check                 # on a machine with CuPy and a CUDA GPU
    python -m benchmarks.gpu_check --device cpu:1  # the same checks on a virtual CPU device
                                                   # (what CI can run: it has no GPU)

Sections, each printing a table (and all of it to results/gpu_check.json):

1. gradcheck: every Function in float64 on the device (central differences).
2. layers: every layer's forward and backward at AlexNet-like shapes, float32,
   device vs NumPy: the worst absolute and relative differences.
3. alexnet: both columns on the device (and on the device and a second one,
   cuda:0/cuda:1 when there are two GPUs), in float64: logits and every
   parameter gradient against the same net on the CPU, to 1e-10.
4. speed: training-step throughput of the paper's net (batch 128) on the
   device, and PyTorch CUDA on the same architecture when torch is importable;
   under the test suite's CuPy stand-in, the kernels and host syncs of a step.
5. pipeline: a few hundred training steps from a synthetic 256x256 cache
   through the real loader (worker processes), images/s end to end and the
   share of time the device waits for data.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import minidl
from minidl import Tensor, functions as F, optim
from minidl.backend import cuda_device_count, get_device, to_numpy

from .common import RESULTS, machine, median_time


def synchronize(device):
    if device.is_cuda:
        device.xp.cuda.Device(device.index).synchronize()


# ----------------------------------------------------------------------------
# 1. gradient checks on the device
# ----------------------------------------------------------------------------
def gradchecks(device, rng):
    x4 = lambda *s: rng.standard_normal(s)  # noqa: E731
    distinct = lambda *s: rng.permutation(int(np.prod(s))).reshape(s) / 7.0  # noqa: E731  (no ties)
    cases = {
        "conv2d s2 p1": (lambda x, w, b: F.conv2d(x, w, b, stride=2, pad=1), x4(2, 3, 7, 6), x4(4, 3, 3, 3), x4(4)),
        "conv2d groups=2": (lambda x, w: F.conv2d(x, w, groups=2, pad=2), x4(1, 4, 6, 6), x4(6, 2, 5, 5)),
        "max_pool2d 3/2": (lambda x: F.max_pool2d(x, 3, 2), distinct(2, 3, 9, 7)),
        "max_pool2d ceil": (lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True), distinct(1, 2, 8, 8)),
        "avg_pool2d ceil": (lambda x: F.avg_pool2d(x, 3, 2, ceil_mode=True), x4(1, 2, 8, 8)),
        "lrn paper": (lambda x: F.local_response_norm(x), x4(2, 7, 3, 4) * 10),
        "lrn alpha=1 k=1": (lambda x: F.local_response_norm(x, 5, 1.0, 1.0, 0.75), x4(2, 7, 3, 4)),
        "relu": (F.relu, x4(3, 5) + 0.01),
        "tanh": (F.tanh, x4(3, 5)),
        "linear": (F.linear, x4(4, 6), x4(3, 6), x4(3)),
        "cross-entropy": (lambda z: F.softmax_cross_entropy(z, np.array([0, 2, 1])), x4(3, 4)),
        "log_softmax": (lambda z: F.log_softmax(z, 1), x4(3, 4)),
        "dropout (test)": (lambda z: F.dropout(z, 0.5, False), x4(3, 4)),
        "concat/split": (lambda a, b: F.split(F.concat([a, b], 1), [2, 5], 1)[1] * 2, x4(2, 3), x4(2, 4)),
    }
    rows = []
    for name, (f, *inputs) in cases.items():
        tensors = [Tensor(a, device=device) for a in inputs]
        err = minidl.gradcheck(f, *tensors)
        rows.append({"op": name, "max_rel_error": err, "ok": bool(err < 1e-5)})
    return rows


# ----------------------------------------------------------------------------
# 2. every layer, float32, device vs NumPy
# ----------------------------------------------------------------------------
def layer_comparisons(device, rng, batch=8):
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    cases = {
        "conv1 11x11 s4": (lambda x, w, b: F.conv2d(x, w, b, stride=4), f32(batch, 3, 227, 227),
                           f32(96, 3, 11, 11) * 0.01, f32(96)),
        "conv2 groups=2": (lambda x, w, b: F.conv2d(x, w, b, pad=2, groups=2), f32(batch, 96, 27, 27),
                           f32(256, 48, 5, 5) * 0.01, f32(256)),
        "conv3": (lambda x, w, b: F.conv2d(x, w, b, pad=1), f32(batch, 256, 13, 13),
                  f32(384, 256, 3, 3) * 0.01, f32(384)),
        "lrn1": (lambda x: F.local_response_norm(x), f32(batch, 96, 55, 55) * 30),
        "pool1 3/2": (lambda x: F.max_pool2d(x, 3, 2), f32(batch, 96, 55, 55)),
        "relu": (F.relu, f32(batch, 96, 55, 55)),
        "fc6": (F.linear, f32(batch, 9216), f32(4096, 9216) * 0.01, f32(4096)),
        "cross-entropy": (lambda z: F.softmax_cross_entropy(z, np.arange(batch) % 1000),
                          f32(batch, 1000) * 5),
    }
    rows = []
    for name, (f, *inputs) in cases.items():
        results = []
        for dev in (get_device("cpu"), device):
            ts = [Tensor(a, requires_grad=True, device=dev) for a in inputs]
            y = f(*ts)
            g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
            y.backward(dev.put(g))
            results.append([to_numpy(y.data)] + [to_numpy(t.grad) for t in ts])
        worst_abs = worst_rel = 0.0
        for a, b in zip(*results):
            diff = np.abs(a.astype(np.float64) - b)
            worst_abs = max(worst_abs, float(diff.max()))
            worst_rel = max(worst_rel, float(diff.max() / (np.abs(a).max() + 1e-30)))
        rows.append({"layer": name, "max_abs_diff": worst_abs, "max_diff/max|ref|": worst_rel,
                     "ok": bool(worst_rel < 1e-4)})
    return rows


# ----------------------------------------------------------------------------
# 3. the whole net on the device vs the CPU
# ----------------------------------------------------------------------------
def alexnet_comparison(devices, rng, batch=4):
    """In float64, so that a difference means a bug, not rounding (in float32 a pool
    window's maximum can move between two nearly equal values)."""
    from alexnet.model import AlexNet, AlexNetConfig
    x = rng.standard_normal((batch, 3, 227, 227)) * 50
    labels = np.arange(batch) % 1000
    outs = []
    for devs in (("cpu", "cpu"), devices):
        net = AlexNet(AlexNetConfig(), devices=devs, seed=0).astype(np.float64).eval()
        logits = net(Tensor(x, device=devs[0]))
        F.softmax_cross_entropy(logits, labels).backward()
        outs.append((to_numpy(logits.data), {n: to_numpy(p.grad) for n, p in net.named_parameters()}))
    (la, ga), (lb, gb) = outs
    rows = [{"what": "logits", "max_abs_diff": float(np.abs(la - lb).max()),
             "max_diff/max|ref|": float(np.abs(la - lb).max() / np.abs(la).max())}]
    worst = max(((float(np.abs(ga[n] - gb[n]).max() / (np.abs(ga[n]).max() + 1e-30)), n) for n in ga))
    rows.append({"what": f"gradients (worst: {worst[1]})", "max_abs_diff": None,
                 "max_diff/max|ref|": worst[0]})
    for r in rows:
        r["devices"] = ",".join(map(str, devices))
        r["ok"] = bool(r["max_diff/max|ref|"] < 1e-10)
    return rows


# ----------------------------------------------------------------------------
# 4. speed of a training step: minidl vs PyTorch on the same device
# ----------------------------------------------------------------------------
def training_step(devices, batch):
    """One SGD step of the paper's net with its columns on `devices`, as a function
    of no arguments: a batch of random images and labels waits on the first device."""
    from alexnet.model import AlexNet
    device = get_device(devices[0])
    net = AlexNet(devices=devices, seed=0)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    x = device.put(np.random.default_rng(0).standard_normal((batch, 3, 227, 227)).astype(np.float32))
    y = device.put(np.arange(batch) % 1000)

    def step():
        loss = F.softmax_cross_entropy(net(Tensor(x, device=device)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def train_step_speed(devices, batch, steps):
    device = get_device(devices[0])
    train_step = training_step(devices, batch)

    def step():
        train_step()
        for d in set(map(get_device, devices)):
            synchronize(d)
    t = median_time(step, repeat=steps, warmup=2)
    rows = [{"impl": f"minidl {','.join(map(str, devices))}", "batch": batch,
             "seconds_per_step": t, "images_per_s": batch / t}]
    counts = getattr(getattr(device.xp, "standin", None), "count", None)
    if counts is not None:                        # the test suite's CuPy stand-in counts work
        with counts() as c:
            train_step()
        rows[0].update(_launches(c))
    try:
        import torch
        from .bench_alexnet import torch_net
    except ImportError:
        return rows
    if device.is_cuda and torch.cuda.is_available():
        tdev = torch.device(f"cuda:{device.index}")
    elif not device.is_cuda:
        tdev = torch.device("cpu")
    else:
        return rows
    net_t = torch_net().to(tdev)
    opt_t = torch.optim.SGD(net_t.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    xt = torch.randn(batch, 3, 227, 227, device=tdev)
    yt = torch.arange(batch, device=tdev) % 1000

    def tstep():
        loss = torch.nn.functional.cross_entropy(net_t(xt), yt)
        opt_t.zero_grad(set_to_none=True)
        loss.backward()
        opt_t.step()
        if tdev.type == "cuda":
            torch.cuda.synchronize(tdev)
    tt = median_time(tstep, repeat=steps, warmup=2)
    rows.append({"impl": f"torch {tdev}", "batch": batch, "seconds_per_step": tt,
                 "images_per_s": batch / tt})
    rows[0]["vs_torch"] = tt / t            # > 1: minidl faster
    return rows


def _launches(counts) -> dict:
    """Kernels and host syncs of one step, as the CuPy stand-in counted them."""
    waits = {k: n for k, n in counts["syncs_by_kind"].items() if k != "synchronize" and n}
    return {"kernels per device": counts["kernels_per_device"], "host reads": waits}


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------
def table(title, rows):
    print(f"\n== {title}")
    if not rows:
        print("(nothing)")
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for x in cells:
        print("  ".join(v.ljust(w) for v, w in zip(x, widths)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda:0", help="cuda:0, or cpu:1 for a CPU dry run")
    p.add_argument("--batch", type=int, default=128, help="batch of the speed section")
    p.add_argument("--check-batch", type=int, default=4,
                   help="batch of the layer and net comparisons (the layers use twice as many)")
    p.add_argument("--steps", type=int, default=10, help="timed steps of the speed section")
    p.add_argument("--pipeline-steps", type=int, default=300)
    p.add_argument("--pipeline-images", type=int, default=None,
                   help="images in the pipeline's synthetic cache (default 2,000 on a GPU)")
    p.add_argument("--pipeline-workers", type=int, default=None,
                   help="loader processes (default: all cores but one, at most 8, on a GPU)")
    p.add_argument("--pipeline-warmup", type=int, default=None,
                   help="untimed pipeline steps first (default 5 on a GPU)")
    p.add_argument("--pipeline-batch", type=int, default=None,
                   help="batch of the pipeline section (default 128 on a GPU, 4 on the CPU)")
    p.add_argument("--second-device", default="auto",
                   help="the other column's device in the two-device runs: 'auto' (cuda:1 when "
                        "there are two GPUs), 'none', or a device such as cuda:1")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: "
                                              "gradcheck,layers,alexnet,speed,pipeline")
    p.add_argument("--results", default=str(RESULTS), help="folder for gpu_check.json")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    try:
        device = get_device(args.device)
        second = args.second_device
        if second == "auto":
            second = "cuda:1" if device.is_cuda and cuda_device_count() >= 2 else "none"
        second = None if second == "none" else get_device(second)
    except (RuntimeError, ValueError) as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    report = {"machine": machine(), "device": str(device)}
    if device.is_cuda:
        cp = device.xp
        props = cp.cuda.runtime.getDeviceProperties(device.index)
        report["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        report["cupy"] = cp.__version__
        print(f"device {device}: {report['gpu']}, CuPy {cp.__version__}, "
              f"{cuda_device_count()} GPU(s)")
    sections = []
    t0 = time.time()
    if "gradcheck" not in skip:
        sections.append(("gradcheck (float64, on the device)", gradchecks(device, rng)))
    if "layers" not in skip:
        sections.append(("layers (float32, device vs NumPy)",
                         layer_comparisons(device, rng, batch=2 * args.check_batch)))
    if "alexnet" not in skip:
        rows = alexnet_comparison((device, device), rng, args.check_batch)
        if second is not None:
            rows += alexnet_comparison((device, second), rng, args.check_batch)
        sections.append(("alexnet: both columns vs the CPU", rows))
    if "speed" not in skip:
        rows = train_step_speed((device, device), args.batch, args.steps)
        if second is not None:
            rows += train_step_speed((device, second), args.batch, args.steps)
        sections.append(("speed: training step of the paper's net", rows))
    if "pipeline" not in skip:
        from .gpu_pipeline import pipeline_check
        sections.append(("pipeline: synthetic cache -> loader -> training steps",
                         pipeline_check(device, args.pipeline_steps, batch=args.pipeline_batch,
                                        images=args.pipeline_images, warmup=args.pipeline_warmup,
                                        workers=args.pipeline_workers)))
    for title, rows in sections:
        table(title, rows)
        report[title] = rows
    failed = [r for _, rows in sections for r in rows if r.get("ok") is False]
    print(f"\n{len(failed)} check(s) failed; {time.time() - t0:.0f} s")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

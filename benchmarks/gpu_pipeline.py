"""Section 5 of the GPU check: the whole input pipeline feeding the paper's net.

    synthetic 256x256 cache (memmap, written directly in prepare's format)
      -> Loader (worker processes: random 227 crops, flips, PCA colour, mean)
      -> the two-column AlexNet on (device, device): forward, loss, backward, SGD

Section 4.1 says the augmentation is "computationally free" because the CPU builds
the next batch while the GPU trains on this one. This measures whether ours is:
images/s end to end, and the share of the loop's time spent blocked in
next(batches) (0 = the device never waits for data). Two references measured in
the same run: the loader alone (no model) and the training step alone (one batch
kept on the device, no loader); `vs_compute` = end-to-end / step-alone throughput
(1.0 = the loader costs nothing).

    from benchmarks.gpu_pipeline import pipeline_check
    pipeline_check("cuda:0", 300)            # batch 128, 2,000 cached images
    pipeline_check("cpu:1", 3, batch=4)      # a dry run on a virtual CPU device
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import minidl
from minidl import Tensor, functions as F, optim
from minidl.backend import get_device

from alexnet.data.cache import CACHE_VERSION, FORMAT, array_record, file_record

# The RGB PCA published with the original ImageNet training code (pixel/255 units):
# plausible colour noise for a synthetic cache.
EIGVALS = np.array([0.2175, 0.0188, 0.0045])
EIGVECS = np.array([[-0.5675, 0.7192, 0.4009],
                    [-0.5808, -0.0045, -0.8140],
                    [-0.5836, -0.6948, 0.4203]])


def synthetic_cache(folder, images=2000, classes=1000, size=256, seed=0) -> Path:
    """A cache `open_split` reads, as `prepare` would write it, without decoding anything:
    random pixels (N, size, size, 3) uint8, labels i % classes, a mean image and the PCA."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = np.lib.format.open_memmap(folder / "train_images.npy", "w+", np.uint8,
                                  (images, size, size, 3))
    tile = rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8)
    for a in range(0, images, 64):                  # 64 random images, rolled: fast to make
        n = min(64, images - a)
        x[a:a + n] = np.roll(tile[:n], a // 64, axis=1)
    x.flush()
    labels = np.arange(images, dtype=np.int64) % classes
    mean = np.full((size, size, 3), 127.5, np.float32)
    np.save(folder / "train_labels.npy", labels)
    np.save(folder / "mean.npy", mean)
    np.savez(folder / "pca.npz", eigvals=EIGVALS, eigvecs=EIGVECS)
    wnids = [f"n{k:08d}" for k in range(classes)]
    manifest = {"format": FORMAT, "version": CACHE_VERSION, "size": size, "wnids": wnids,
                "words": [""] * classes, "source": "synthetic (benchmarks/gpu_pipeline.py)",
                "splits": {"train": {"count": images, "valid": images, "skipped": 0,
                                     "complete": True, "fingerprint": "synthetic",
                                     "images": "train_images.npy", "labels": "train_labels.npy"}},
                "arrays": {"train_images": array_record("train_images.npy", x, 256),
                           "train_labels": array_record("train_labels.npy", labels),
                           "mean": array_record("mean.npy", mean),
                           "pca": file_record(folder / "pca.npz")}}
    del x
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _sync(device):
    if device.is_cuda:
        device.xp.cuda.Device(device.index).synchronize()


def pipeline_check(device, steps, batch=None, images=None, workers=None, warmup=None) -> list:
    """Train the paper's net for `steps` steps from a synthetic cache through the real
    Loader; returns table rows (dicts) for benchmarks/gpu_check.py.

    device:  "cuda:0" (both columns on it) or "cpu:1" (a dry run).
    batch:   default 128 on a GPU (the paper's), 4 on the CPU (one step of the full
             net at 128 takes about a minute on two cores).
    images:  cached images (default 2,000 on a GPU, 8 batches on the CPU); epochs wrap.
    workers: loader processes (default: all cores but one, at most 8, on a GPU; 2 on the CPU).
    warmup:  untimed steps first (CuPy kernel compilation, worker start-up).
    """
    from alexnet.data.loader import Loader
    from alexnet.data.cache import open_split
    from alexnet.model import AlexNet

    device = get_device(device)
    gpu = device.is_cuda
    batch = batch or (128 if gpu else 4)
    images = images or (2000 if gpu else 8 * batch)
    workers = workers if workers is not None else (
        max(1, min(8, (os.cpu_count() or 2) - 1)) if gpu else 2)
    warmup = warmup if warmup is not None else (5 if gpu else 1)

    minidl.random.manual_seed(0)
    net = AlexNet(devices=(device, device), seed=0)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)

    def step(x, y):
        loss = F.softmax_cross_entropy(net(Tensor(x, device=device)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()          # as the trainer does: waits for the device

    with tempfile.TemporaryDirectory(prefix="alexnet-pipeline-") as tmp:
        t = time.perf_counter()
        cache = synthetic_cache(tmp, images)
        made = time.perf_counter() - t
        split = open_split(cache, "train")
        with Loader(split, batch, train=True, crop=227, seed=0, workers=workers) as loader:
            def forever():
                e = 0
                while True:
                    yield from loader.epoch(e)
                    e += 1
            batches = forever()

            # reference 1: the loader alone
            for _ in range(warmup):
                next(batches)
            t = time.perf_counter()
            for _ in range(steps):
                next(batches)
            loader_s = time.perf_counter() - t

            # reference 2: the training step alone, one batch kept on the device
            x, y = next(batches)
            x_dev, y = device.put(np.array(x)), np.array(y)
            for _ in range(warmup):
                step(x_dev, y)
            _sync(device)
            compute = []
            for _ in range(steps):
                t = time.perf_counter()
                step(x_dev, y)
                compute.append(time.perf_counter() - t)

            # end to end: the trainer's loop, timing how long next() blocks
            waited, losses = 0.0, []
            t0 = time.perf_counter()
            for _ in range(steps):
                t = time.perf_counter()
                x, y = next(batches)
                waited += time.perf_counter() - t
                losses.append(step(x, y))
            total = time.perf_counter() - t0
    step_s = statistics.median(compute)
    e2e = steps * batch / total
    common = {"device": str(device), "batch": batch, "workers": workers, "steps": steps}
    return [
        {"stage": "loader alone", **common, "images_per_s": steps * batch / loader_s},
        {"stage": "train step alone (batch on device)", **common, "seconds_per_step": step_s,
         "images_per_s": batch / step_s},
        {"stage": "end to end (loader -> net)", **common, "seconds_per_step": total / steps,
         "images_per_s": e2e, "wait_fraction": waited / total, "vs_compute": e2e * step_s / batch,
         "cache_images": images, "cache_seconds": made,
         "ok": bool(np.all(np.isfinite(losses)))},
    ]

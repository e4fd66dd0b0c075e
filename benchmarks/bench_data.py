"""The ImageNet data path: `prepare` throughput and `Loader` throughput.

Two questions, each timed against a reference measured in the same run:

* prepare: images/s per core turning ImageNet-like JPEGs (about 500x375, ~110 KB
  with noise like a photo's) into 256x256 cache rows (decode with draft mode,
  resize, crop, write, mean/PCA sums). Reference: a plain
  ``Image.open(f).convert("RGB")`` of the same files (decode only). Also one
  big photo (2000x1500) with and without JPEG draft mode.
* checksum: the CRC-32 of the cached images that opening a cache and
  `alexnet prepare --verify` compute (alexnet/data/cache.py), seconds per GiB.
* loader: augmented 227x227 float32 NCHW training batches (random crop, flip,
  mean patch, PCA colour) from a memory-mapped cache, with 0 and N workers.
  Reference: a plain copy of the same number of bytes (np.copyto of one batch).
  The paper's target here: >= 2,000 img/s on 2 cores, so a GPU machine's cores
  can feed a fast GPU.

    python -m benchmarks.bench_data                 # ~1 minute on 2 cores
    python -m benchmarks.bench_data --images 100 --workers 2
"""
from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet.data.cache import crc32_blocks
from alexnet.data.loader import Loader
from alexnet.data.prepare import CacheSplit, load_image, prepare

from .common import median_time, report


def cpu_time(fn, repeat=3):
    """Median CPU seconds of this process for fn() (robust to other load on a shared machine)."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        samples.append(time.process_time() - t0)
    return float(np.median(samples))


def photo(w, h, rng):
    """A JPEG-able picture with smooth structure plus photo-like noise."""
    small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    base = np.asarray(small.resize((w, h), Image.BICUBIC), np.int16)
    noise = rng.normal(0, 18, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def make_source(root, n, rng):
    """n JPEGs of ImageNet-like sizes in root/train/nXXXXXXXX/ (4 classes)."""
    sizes = []
    for i in range(n):
        wnid = f"n0{i % 4}000000"
        (root / "train" / wnid).mkdir(parents=True, exist_ok=True)
        w, h = (500, 375) if i % 3 else (375, 500)
        w, h = w + int(rng.integers(-40, 40)), h + int(rng.integers(-30, 30))
        path = root / "train" / wnid / f"{i:05d}.JPEG"
        photo(w, h, rng).save(path, quality=90)
        sizes.append(path.stat().st_size)
    return sorted((root / "train").rglob("*.JPEG")), float(np.mean(sizes))


def bench_prepare(tmp, n, workers, rng):
    files, avg = make_source(tmp / "src", n, rng)
    blobs = [f.read_bytes() for f in files]

    def decode_only():
        for b in blobs:
            Image.open(io.BytesIO(b)).convert("RGB")

    def run(w):
        out = tmp / f"cache{w}"
        def go():
            import shutil
            shutil.rmtree(out, ignore_errors=True)
            prepare(tmp / "src", out, workers=w, splits=("train",), chunk_size=32, progress=False)
        return go

    t_ref = median_time(decode_only, repeat=3)
    c_ref = cpu_time(decode_only)
    t_one = median_time(run(0), repeat=3)
    c_one = cpu_time(run(0))
    t_par = median_time(run(workers), repeat=3, warmup=1)
    rows = [
        dict(case=f"decode only (reference), {n} JPEGs ~500x375, {avg / 1e3:.0f} KB", cores=1,
             img_s=n / t_ref, img_cpu_s=n / c_ref, ratio=1.0),
        dict(case="prepare, in process", cores=1, img_s=n / t_one, img_cpu_s=n / c_one,
             ratio=c_ref / c_one),
        dict(case=f"prepare, {workers} workers", cores=workers, img_s=n / t_par,
             ratio=t_ref / t_par),
    ]
    big = io.BytesIO()
    photo(2000, 1500, rng).save(big, "JPEG", quality=90)
    big = big.getvalue()

    def no_draft():
        img = Image.open(io.BytesIO(big)).convert("RGB")
        img.resize((256, 256), Image.BICUBIC, box=(250, 0, 1750, 1500))

    t_nd = median_time(no_draft, repeat=5)
    t_d = median_time(lambda: load_image(big), repeat=5)
    rows += [dict(case="one 2000x1500 JPEG, full decode + resize (reference)", cores=1,
                  img_s=1 / t_nd, ratio=1.0),
             dict(case="one 2000x1500 JPEG, load_image (draft: 1/4-scale decode)", cores=1,
                  img_s=1 / t_d, ratio=t_nd / t_d)]
    return rows, tmp / f"cache{workers}"


def bench_loader(tmp, n_cache, batch, workers, batches, rng):
    path = tmp / "loader_cache.npy"
    images = np.lib.format.open_memmap(path, "w+", np.uint8, (n_cache, 256, 256, 3))
    for i in range(0, n_cache, 64):
        images[i:i + 64] = rng.integers(0, 256, (min(64, n_cache - i), 256, 256, 3), dtype=np.uint8)
    images.flush()
    del images
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    split = CacheSplit(np.load(path, mmap_mode="r"), np.arange(n_cache) % 1000,
                       rng.uniform(0, 255, (256, 256, 3)).astype(np.float32),
                       np.array([0.2175, 0.0188, 0.0045]), q)
    x = np.empty((batch, 3, 227, 227), np.float32)
    src = np.random.default_rng(0).random(x.shape, dtype=np.float32)
    t_copy = median_time(lambda: np.copyto(x, src), repeat=5, min_time=0.2)
    c_copy = cpu_time(lambda: [np.copyto(x, src) for _ in range(5)]) / 5
    rows = [dict(case=f"memcpy of one batch ({x.nbytes / 1e6:.0f} MB, reference)", cores=1,
                 img_s=batch / t_copy, img_cpu_s=batch / c_copy, ratio=1.0)]
    # the checksum `open_split` and `alexnet prepare --verify` compute over image files
    # (alexnet/data/cache.py), per CPU second: what checking a cache at open costs
    c = cpu_time(lambda: crc32_blocks(split.images, 256), repeat=3)
    rows.append(dict(case=f"CRC-32 of the cached images ({split.images.nbytes / 2**20:.0f} MiB, "
                          "in the page cache; ratio per byte against the memcpy)", cores=1,
                     img_cpu_s=n_cache / c, ratio=(c_copy / x.nbytes) / (c / split.images.nbytes),
                     s_per_GiB=c / (split.images.nbytes / 2**30)))
    for w in (0, workers):
        loader = Loader(split, batch, train=True, crop=227, seed=0, workers=w, prefetch=4)
        total = len(loader)
        state = {"epoch": 0}

        def some_batches():
            k = 0
            for _ in loader.epoch(state["epoch"]):
                k += 1
                if k == batches:
                    break
            state["epoch"] += 1

        assert total >= batches, (total, batches)
        t = median_time(some_batches, repeat=3, warmup=1) / batches
        row = dict(case=f"Loader train batches of {batch}, crop+flip+mean+PCA, workers={w}",
                   cores=max(w, 1), img_s=batch / t, ratio=t_copy / t)
        if w == 0:  # in process: CPU seconds are the per-core cost, whatever the load
            c = cpu_time(some_batches) / batches
            row.update(img_cpu_s=batch / c, ratio=c_copy / c)
        loader.close()
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=192, help="JPEGs for prepare (default 192)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--cache", type=int, default=1024, help="images in the loader's cache")
    p.add_argument("--batches", type=int, default=6, help="batches timed per loader sample")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as d:
        tmp = Path(d)
        t0 = time.time()
        rows, _ = bench_prepare(tmp, args.images, args.workers, rng)
        rows += bench_loader(tmp, args.cache, args.batch, args.workers, args.batches, rng)
    notes = (f"img_s: images per wall-clock second; img_cpu_s: per CPU second of this process "
             f"(the per-core rate, robust to other load). ratio: reference time / this time, by CPU "
             f"time where measured, else wall (above 1 = faster than the reference). "
             f"Worker rows are wall clock, including the workers' start-up (~0.4 s per prepare "
             f"run: a pool of fresh processes importing numpy and Pillow), on a machine others share. "
             f"{time.time() - t0:.0f} s total; "
             f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")
    report("bench_data", rows, ["case", "cores", "img_s", "img_cpu_s", "ratio", "s_per_GiB"],
           notes)
    print(notes)


if __name__ == "__main__":
    main()

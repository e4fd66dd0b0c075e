"""Batches from the 256x256 cache, assembled in worker processes while the model
computes (Section 4.1: "generated on the CPU while the GPU is training on the
previous batch of images ... these data augmentation schemes are, in effect,
computationally free").

    loader = Loader(open_split(cache, "train"), 128, train=True, crop=227, seed=0, workers=2)
    for x, y in loader.epoch(epoch, start=batch):  # x (128, 3, 227, 227) float32, y (128,) int64
        ...                                        # resume: the same (epoch, batch) -> the same batches
    loader.position                                # (epoch, batch) of the next batch

(`Loader.epoch` is the trainer's `Batches` protocol; `start(epoch, batch)` then
`iter(loader)` is the same thing in two steps.)

Determinism: the epoch's order is a permutation drawn from (seed, epoch), and each
batch's crops, flips and colour alphas from (seed, epoch, batch index). Which
worker builds a batch, how many workers there are, and where a run was resumed
change nothing.

Shares (data parallelism, alexnet.distributed): `shard=(r, R)` yields only images
[r*B/R, (r+1)*B/R) of every batch; the random draws are made for the whole batch
and depend on an image's position in it, never on r, so the R shares put together
are exactly the batch of `shard=(0, 1)`. A share that would be empty (the short
last batch of an evaluation) is skipped.

Workers write each batch into one of `prefetch` slots of shared memory
(multiprocessing RawArray: anonymous, so nothing can leak even after SIGKILL)
and send back only the slot number. Without copy=True, the yielded arrays are
views of a slot, valid until the next batch is requested (move them to the
device, or copy them, before asking for the next one).
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
import signal
import traceback
import weakref
from dataclasses import dataclass

import numpy as np

from .augment import eval_batch, mean_chw, train_batch
from .cache import CacheError, CacheSplit
from .prepare import default_context


@dataclass
class _Recipe:
    """Everything needed to build batch b of epoch e, in any process (picklable)."""
    split: CacheSplit
    batch_size: int
    train: bool
    crop: int
    seed: int
    mean_t: np.ndarray | None
    eigvecs: np.ndarray | None
    eigvals: np.ndarray | None
    color_std: float
    ten: bool
    drop_last: bool
    shard: tuple = (0, 1)    # (index, count): this process's share of every batch

    def __post_init__(self):
        self._order = (None, None)

    def __len__(self):
        n, b = len(self.split), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch):
        """The rows of the cache in this epoch's order (a permutation of the usable rows)."""
        if self._order[0] != epoch:
            rows = self.split.rows
            if self.train:
                rows = np.random.default_rng([self.seed, epoch, 0]).permutation(rows)
            self._order = (epoch, rows)
        return self._order[1]

    @property
    def share_size(self):
        """The most images a share of one batch can hold."""
        return -(-self.batch_size // self.shard[1])

    def x_shape(self, n):
        s = (n, 3, self.crop, self.crop)
        return s[:1] + (10,) + s[1:] if self.ten else s

    def make(self, epoch, b, x=None, y=None):
        """This process's share of batch b of `epoch` into x, y (allocated if None).
        Returns (x, y) cut to its size."""
        batch = self.order(epoch)[b * self.batch_size:(b + 1) * self.batch_size]
        part = share(len(batch), *self.shard)
        rows = batch[part]
        n = len(rows)
        x = np.empty(self.x_shape(n), np.float32) if x is None else x[:n]
        images = self.split.images
        if self.train:   # the draws of the whole batch; this share keeps its rows'
            rng = np.random.default_rng([self.seed, epoch, 1, b])
            train_batch(images, batch, self.crop, rng, None, self.eigvecs, self.eigvals,
                        self.color_std, out=x, mean_t=self.mean_t, part=part)
        else:
            eval_batch(images, rows, self.crop, None, self.ten, out=x, mean_t=self.mean_t)
        y_rows = self.split.labels[rows]
        if y is None:
            y = y_rows.astype(np.int64)
        else:
            y = y[:n]
            y[...] = y_rows
        return x, y


def share(n, index, count):
    """The slice of a batch of n images that share `index` of `count` holds:
    [index*n//count, (index+1)*n//count), so equal shares when count divides n."""
    return slice(index * n // count, (index + 1) * n // count)


def _slot_views(buffer, recipe):
    """The (x, y) arrays of one shared slot: y first, so both are aligned."""
    b = recipe.share_size
    y = np.frombuffer(buffer, np.int64, b)
    x = np.frombuffer(buffer, np.float32, int(np.prod(recipe.x_shape(b))), offset=8 * b)
    return x.reshape(recipe.x_shape(b)), y


def _slot_bytes(recipe):
    return 8 * recipe.share_size + 4 * int(np.prod(recipe.x_shape(recipe.share_size)))


def _failure(e):
    """What a worker reports of an exception: the message of a known kind of failure
    (a damaged, changed or missing cache), the traceback of anything else (a bug)."""
    if isinstance(e, (CacheError, OSError)):
        return f"{e}"
    return traceback.format_exc()


def _worker(recipe, buffers, tasks, results):
    """Build the batches asked for in `tasks` into shared slots until told to stop
    (None) or the parent process is gone. `recipe` comes pickled: opening the cache
    happens here, where a failure can be reported, not in the process start-up."""
    # Ctrl-C and SIGTERM are the parent's to handle (a terminal and a scheduler send them
    # to every process of the job): it stops after a step, saves, then stops the workers
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    try:
        recipe = pickle.loads(recipe)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        results.put((None, None, None, 0, _failure(e)))
        return
    views = [_slot_views(buf, recipe) for buf in buffers]
    parent = mp.parent_process()
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if task is None:
            return
        gen, slot, epoch, b = task
        try:
            x, _ = recipe.make(epoch, b, *views[slot])
            results.put((gen, slot, b, len(x), None))
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
            results.put((gen, slot, b, 0, _failure(e)))


def _shutdown(procs, tasks, results):
    """Stop the workers: ask, wait a little, then kill (they ignore SIGTERM). Idempotent."""
    for p in procs:
        if p.is_alive():
            try:
                tasks.put(None)
            except (OSError, ValueError):
                pass
    for p in procs:
        p.join(timeout=2.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=2.0)
    for q in (tasks, results):
        q.cancel_join_thread()
        q.close()
    procs.clear()


class Loader:
    """Iterate over (x, y) batches of a cache split, augmented as in Section 4.1.

    split:      a `CacheSplit` (`open_split(cache, "train")`).
    batch_size: images per batch (the paper: 128).
    train:      True: shuffled, random crops + flips + PCA colour noise, last partial
                batch dropped. False: in order, centre crop (or ten=True: the 10
                patches, x of shape (N, 10, 3, crop, crop)), every image once.
    crop:       patch size: 227 (the arithmetic of Figure 2 with pad 0) or 224 (the text).
    seed:       with (epoch, batch index) determines everything random.
    workers:    processes building batches; 0 builds them here, on demand.
    prefetch:   batches built ahead (shared-memory slots).
    mean:       mean image (256, 256, 3); default the split's; False: none.
    pca:        (eigvecs, eigvals); default the split's; False: no colour noise.
    color_std:  std of the alphas (0.1 in the paper).
    copy:       yield copies instead of views of the shared slots.
    shard:      (index, count): yield only this process's share of every batch
                (alexnet.distributed; see the module docstring).
    context:    multiprocessing start method (default: forkserver on Linux).
    """

    def __init__(self, split, batch_size, train=True, crop=227, seed=0, workers=2, prefetch=4,
                 mean=None, pca=None, color_std=0.1, ten=False, drop_last=None, copy=False,
                 context=None, shard=(0, 1)):
        if not isinstance(split, CacheSplit):
            raise TypeError(f"Loader wants a CacheSplit (open_split(cache, 'train')), got {type(split).__name__}")
        full = split.images.shape[1]
        if not 0 < crop <= full:
            raise ValueError(f"crop must be in 1..{full} (the cache's size), got {crop}")
        mean = split.mean if mean is None else (None if mean is False else mean)
        if pca is None:
            pca = (split.eigvecs, split.eigvals) if train and split.eigvecs is not None else False
        eigvecs, eigvals = (None, None) if pca is False or not train else pca
        self.recipe = _Recipe(split, int(batch_size), bool(train), int(crop), int(seed), mean_chw(mean),
                              None if eigvecs is None else np.asarray(eigvecs, np.float64),
                              None if eigvals is None else np.asarray(eigvals, np.float64),
                              float(color_std), bool(ten),
                              bool(train) if drop_last is None else bool(drop_last),
                              (int(shard[0]), int(shard[1])))
        if not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
        if len(self.recipe) == 0:
            raise ValueError(f"{len(split)} images make no batch of {batch_size} (drop_last={self.recipe.drop_last})")
        if int(workers) < 0:
            raise ValueError(f"workers must be >= 0 (0: build batches in this process), found "
                             f"{workers}")
        self.workers, self.prefetch = int(workers), max(1, int(prefetch))
        self.copy, self.context = copy, context
        self._epoch, self._batch = 0, 0
        self._procs, self._gen = [], 0
        self._finalizer = None

    def __len__(self):
        """Batches per epoch."""
        return len(self.recipe)

    @property
    def position(self):
        """(epoch, index of the next batch): what a checkpoint records."""
        return self._epoch, self._batch

    def start(self, epoch, batch=0):
        """Continue from batch index `batch` of `epoch` (a checkpoint's `position`)."""
        if not 0 <= batch <= len(self):
            raise ValueError(f"batch must be in 0..{len(self)}, got {batch}")
        self._epoch, self._batch = int(epoch), int(batch)
        return self

    def epoch(self, epoch, start=0):
        """The batches of `epoch` from batch index `start` on (the trainer's Batches protocol)."""
        return iter(self.start(epoch, start))

    def __iter__(self):
        """The remaining batches of the current epoch; afterwards the position is (epoch + 1, 0)."""
        return self._run(self._epoch, self._batch)  # the position is read now, not at the first next()

    def _run(self, epoch, first):
        if self.workers == 0:
            for b in range(first, len(self)):
                x, y = self.recipe.make(epoch, b)
                self._batch = b + 1
                if len(y):                     # an empty share (see the module docstring)
                    yield x, y
        else:
            yield from self._from_workers(epoch, first)
        self._epoch, self._batch = epoch + 1, 0

    # ------------------------------------------------------------------ worker processes

    def _ensure_workers(self):
        if self._procs and all(p.is_alive() for p in self._procs):
            return
        self.close()
        ctx = mp.get_context(self.context or default_context())
        nbytes = _slot_bytes(self.recipe)
        self._buffers = [ctx.RawArray("b", nbytes) for _ in range(self.prefetch)]
        self._views = [_slot_views(buf, self.recipe) for buf in self._buffers]
        self._tasks, self._results = ctx.Queue(), ctx.Queue()
        recipe = pickle.dumps(self.recipe)
        args = (recipe, self._buffers, self._tasks, self._results)
        procs = [ctx.Process(target=_worker, args=args,
                             daemon=True, name=f"alexnet-loader-{i}") for i in range(self.workers)]
        for p in procs:
            p.start()
        self._procs = procs
        self._inflight = set()
        # Runs on close(), garbage collection or interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, _shutdown, procs, self._tasks, self._results)

    def _receive(self):
        """The next finished batch from any worker; raises if a worker failed or died."""
        while True:
            try:
                gen, slot, b, n, error = self._results.get(timeout=0.5)
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead:
                    codes = [p.exitcode for p in dead]
                    self.close()
                    raise RuntimeError(f"loader worker(s) exited unexpectedly (exit codes {codes}); "
                                       "out of memory, or killed?") from None
                continue
            self._inflight.discard(slot)
            if error is not None:
                self.close()
                if b is None:
                    raise RuntimeError(f"a loader worker could not open the data: {error}")
                raise RuntimeError(f"loader worker failed building batch {b}:\n{error}")
            return gen, slot, b, n

    def _from_workers(self, epoch, first):
        self._ensure_workers()
        self._gen += 1
        gen, total = self._gen, len(self)
        free = [s for s in range(self.prefetch) if s not in self._inflight]
        ready, ahead = {}, first

        def submit():
            nonlocal ahead
            while free and ahead < total:
                slot = free.pop()
                self._inflight.add(slot)
                self._tasks.put((gen, slot, epoch, ahead))
                ahead += 1

        def check():
            if gen != self._gen:
                raise RuntimeError("this iteration was superseded by a newer iter(loader)")

        submit()
        for b in range(first, total):
            check()
            while b not in ready:
                g, slot, bb, n = self._receive()
                if g != gen:  # finished work of an abandoned iteration: reuse its slot
                    free.append(slot)
                    submit()
                    continue
                ready[bb] = (slot, n)
            slot, n = ready.pop(b)
            x, y = self._views[slot]
            x, y = x[:n], y[:n]
            self._batch = b + 1
            if n:                              # an empty share (see the module docstring)
                yield (x.copy(), y.copy()) if self.copy else (x, y)
                check()  # the slot may belong to a newer iteration by now
            free.append(slot)
            submit()

    def close(self):
        """Stop the worker processes (also done on garbage collection and at exit)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def pids(self):
        """Process ids of the running workers (for tests and monitoring)."""
        return [p.pid for p in self._procs if p.is_alive()]

"""The loader: determinism for a seed whatever the workers, exact mid-epoch resume,
and no process left behind however it ends."""
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from alexnet.data.augment import train_batch
from alexnet.data.loader import Loader
from alexnet.data.prepare import CacheSplit, open_split, prepare
from conftest import session_processes


def numbered(n=40, skipped=()):
    """A split whose image r is the constant r (so a patch says which row it came
    from), with labels r % 4, -1 for `skipped` rows."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 256, 256, 3)).copy()
    labels = np.arange(n) % 4
    labels[list(skipped)] = -1
    return CacheSplit(images, labels)


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (44, 256, 256, 3), dtype=np.uint8)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return CacheSplit(images, np.arange(44) % 5, images.mean(0).astype(np.float32),
                      np.array([0.2, 0.02, 0.005]), q)


def collect(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x1, x2) and np.array_equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b))


def gone(pids, timeout=5.0):
    """True once none of `pids` is a live process (zombies count as gone)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alive = []
        for p in pids:
            try:
                with open(f"/proc/{p}/stat") as f:
                    if f.read().split(")")[-1].split()[0] != "Z":
                        alive.append(p)
            except FileNotFoundError:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_in_process_batches(split):
    loader = Loader(split, 8, seed=1, workers=0)
    assert len(loader) == 5  # 44 // 8, the last partial batch dropped in training
    batches = collect(loader)
    assert len(batches) == 5 and loader.position == (1, 0)
    x, y = batches[0]
    assert x.shape == (8, 3, 227, 227) and x.dtype == np.float32 and y.dtype == np.int64
    # batch 0 of epoch 0: the rows of the (seed, epoch) permutation, augmented with rng (seed, epoch, 1, 0)
    rows = np.random.default_rng([1, 0, 0]).permutation(44)[:8]
    expected = train_batch(split.images, rows, 227, np.random.default_rng([1, 0, 1, 0]), split.mean,
                           split.eigvecs, split.eigvals)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(y, split.labels[rows])
    assert not same(batches, collect(loader))  # epoch 1 differs


def test_workers_give_the_same_batches_as_in_process(split):
    ref = collect(Loader(split, 8, seed=3, workers=0).start(2))
    with Loader(split, 8, seed=3, workers=2, prefetch=3, copy=True) as loader:
        assert same(collect(loader.start(2)), ref)
        tail = collect(loader.epoch(2, start=3))  # resume mid-epoch = the tail of the full epoch
        assert same(tail, ref[3:])
        assert loader.position == (3, 0)
        # views (copy=False) hold the same values while they are current
        loader.copy = False
        for (x, y), (rx, ry) in zip(loader.epoch(2), ref):
            assert np.array_equal(x, rx) and np.array_equal(y, ry)


def test_resume_mid_epoch_in_process(split):
    loader = Loader(split, 4, seed=5, workers=0)
    full = collect(loader.epoch(7))
    it = loader.epoch(7)
    for _ in range(4):
        next(it)
    assert loader.position == (7, 4)  # what a checkpoint would store
    resumed = Loader(split, 4, seed=5, workers=0)
    assert same(collect(resumed.epoch(*loader.position)), full[4:])


def test_epoch_visits_every_usable_row_once():
    data = numbered(40, skipped=(3, 17))
    loader = Loader(data, 2, seed=0, workers=0, mean=False, pca=False, drop_last=False)
    seen = np.concatenate([x[:, 0, 0, 0] for x, _ in loader]).astype(int)
    assert sorted(seen) == sorted(set(range(40)) - {3, 17})  # skipped rows never appear
    orders = [np.concatenate([x[:, 0, 0, 0] for x, _ in loader.epoch(e)]) for e in (0, 1)]
    assert not np.array_equal(orders[0], orders[1])  # a new permutation each epoch
    ys = np.concatenate([y for _, y in loader])
    assert (ys >= 0).all()


def test_eval_mode_in_order_centre_and_ten(split):
    data = numbered(10)
    loader = Loader(data, 4, train=False, crop=224, workers=0, mean=False)
    assert len(loader) == 3  # every image once: 4 + 4 + 2
    xs = [x for x, _ in loader]
    assert [x.shape[0] for x in xs] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(xs)[:, 0, 0, 0], np.arange(10))
    small = CacheSplit(split.images[:6], split.labels[:6], split.mean)
    ten = Loader(small, 4, train=False, ten=True, workers=0)
    x, y = next(iter(ten))
    assert x.shape == (4, 10, 3, 227, 227)
    c = (256 - 227) // 2
    np.testing.assert_allclose(x[1, 4, 0], split.images[1, c:c + 227, c:c + 227, 0] - split.mean[c:c + 227, c:c + 227, 0],
                               atol=1e-4)
    with Loader(small, 4, train=False, ten=True, workers=2, copy=True) as par:
        assert same(collect(par), collect(ten.epoch(0)))


def test_loader_on_a_prepared_cache(tmp_path):
    src = tmp_path / "src" / "train"
    rng = np.random.default_rng(1)
    for k, w in enumerate(["n01000001", "n02000002"]):
        (src / w).mkdir(parents=True)
        for i in range(5):
            img = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((300 + 9 * i, 280))
            img.save(src / w / f"{i}.JPEG")
    prepare(tmp_path / "src", tmp_path / "cache", workers=0, splits=("train",), progress=False)
    data = open_split(tmp_path / "cache", "train")
    ref = collect(Loader(data, 3, workers=0, seed=2))
    with Loader(data, 3, workers=2, seed=2, copy=True) as loader:  # workers map the cache by path
        assert same(collect(loader), ref)


@linux_only
def test_close_gc_and_exceptions_leave_no_processes(split):
    loader = Loader(split, 4, workers=2)
    next(iter(loader))
    pids = loader.pids
    assert len(pids) == 2
    loader.close()
    assert gone(pids)

    loader = Loader(split, 4, workers=2)
    it = iter(loader)
    next(it)
    pids = loader.pids
    del it, loader
    gc.collect()
    assert gone(pids)

    with pytest.raises(KeyError):
        with Loader(split, 4, workers=2) as loader:
            for _ in loader:
                pids = loader.pids
                raise KeyError("boom")
    assert gone(pids)


@linux_only
def test_worker_errors_and_deaths_are_raised(split):
    bad = Loader(split, 4, workers=2, mean=np.zeros((100, 100, 3), np.float32))  # mean of the wrong size
    with pytest.raises(RuntimeError, match="loader worker failed"):
        list(bad)
    assert bad.pids == []
    loader = Loader(split, 4, workers=2, prefetch=2)
    it = iter(loader)
    next(it)
    pids = loader.pids
    for p in pids:
        os.kill(p, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        for _ in range(20):
            next(it)
    assert gone(pids)


@linux_only
def test_ctrl_c_leaves_no_processes():
    script = textwrap.dedent("""
        import numpy as np, time
        from alexnet.data.loader import Loader
        from alexnet.data.prepare import CacheSplit
        split = CacheSplit(np.zeros((64, 256, 256, 3), np.uint8), np.zeros(64, int))
        loader = Loader(split, 8, workers=2, prefetch=2)
        it = iter(loader)
        next(it)
        print(*loader.pids, flush=True)
        while True:
            for x, y in loader:
                time.sleep(0.01)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2, proc.stderr.read()
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the whole process group
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "KeyboardInterrupt" in err
    assert gone(pids + [proc.pid])
    # nothing at all is left in the session (the forkserver included)
    assert gone(session_processes(proc.pid))

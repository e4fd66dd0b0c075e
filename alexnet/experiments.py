"""Experiments: recipes over the model, the data and the trainer.

Figure 1 (Section 3.1): "A four-layer convolutional neural network with
ReLUs (solid line) reaches a 25% training error rate on CIFAR-10 six times
faster than an equivalent network with tanh neurons (dashed line). The
learning rates for each network were chosen independently to make training
as fast as possible. No regularization of any kind was employed."
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import minidl
from minidl import optim
from minidl.cpu.parallel import available_cores

from .data import cifar10
from .data.arrays import ArrayBatches
from .evaluate import evaluate
from .figures import plot_figure1, plot_training
from .model import CifarNet, CifarNetConfig
from .train import CHECKPOINT, TrainConfig, Trainer, read_metrics

# Learning rates chosen by the sweep recorded in docs/section3_1_relu.md
# (`alexnet figure1-sweep`): for each activation, the rate with the lowest
# training error after three epochs on the whole training set, over
# 0.002 ... 0.032 in factors of 2 (momentum 0.9, batch 128, no decay).
FIGURE1_LR = {"relu": 0.004, "tanh": 0.016}


@dataclass(frozen=True)
class Figure1Config:
    activations: tuple = ("relu", "tanh")
    target: float = 0.25              # Figure 1's line: 25% training error
    max_epochs: int = 60              # a bound for each net (tanh needs 47 to 51)
    batch_size: int = 128             # cuda-convnet's default
    momentum: float = 0.9
    lr: tuple = tuple(sorted(FIGURE1_LR.items()))
    train_images: int = 50000         # --quick uses a balanced subset
    seed: int = 0

    def lr_of(self, activation):
        return dict(self.lr)[activation]


def epochs_to_target(errors, target):
    """Epochs to reach `target` training error, linearly interpolated between epochs.

    errors[i] is the error measured over epoch i+1. Returns None if never reached.
    """
    previous = None
    for i, e in enumerate(errors):
        if e <= target:
            if previous is None or previous == e:
                return float(i + 1)
            return i + (previous - target) / (previous - e)   # between epoch i and i+1
        previous = e
    return None


def figure1(data_dir=None, out="runs/figure1", quick=False, config: Figure1Config = None,
            download=True, progress=True, restart=False, report_only=False, jobs=1,
            allow_unofficial=False, device="cpu") -> dict:
    """Train the CIFAR-10 net with ReLU and with tanh; write figure1.png and the curves.

    Resumable: each net trains in out/<activation>/ with a checkpoint; running
    the command again continues where it stopped (unless `restart`).
    With `jobs` > 1 the nets train side by side in that many processes, the
    cores shared out among them (see `_train_in_processes`): the same curves,
    sooner. With `report_only`, nothing trains: the figure and summary are
    made from the epochs the runs in `out` have finished so far.
    `allow_unofficial`: accept a local CIFAR-10 archive whose MD5 is not the
    official one (see `cifar10.check_official`). `device`: "cpu", or a GPU
    ("cuda:0"), which trains the nets one after the other in this process.
    Returns the summary written to out/figure1.json.
    """
    cfg = config or Figure1Config()
    if quick:
        cfg = replace(cfg, train_images=min(cfg.train_images, 5000), max_epochs=min(cfg.max_epochs, 3))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not report_only:
        if jobs > 1 and len(cfg.activations) > 1 and device == "cpu":
            cifar10.load_cifar10(data_dir, download=download, progress=progress,  # fetch, check
                                 allow_unofficial=allow_unofficial)
            _train_in_processes(data_dir, cfg, out, progress, restart, jobs)
            report_only = True                       # the runs are on disk: report them
        else:
            data, mean = _figure1_data(data_dir, cfg, download, progress, allow_unofficial)

    curves, summary = {}, {"config": asdict(cfg), "runs": {}}
    for act in cfg.activations:
        run_dir = out / act
        if report_only:
            history = read_metrics(run_dir)
            if not history:
                raise FileNotFoundError(f"{run_dir} has no finished epoch to report; "
                                        "train first (alexnet figure1 without --report-only)")
            lr = _saved_meta(run_dir / CHECKPOINT)["lr"]
        else:
            history = train_cifar(data, mean, act, cfg, run_dir, progress, restart,
                                  device=device)
            lr = cfg.lr_of(act)
        errors = [r["train_top1"] for r in history]
        curves[act] = errors
        summary["runs"][act] = {
            "lr": lr, "epochs_run": len(history),
            "epochs_to_target": epochs_to_target(errors, cfg.target),
            "train_error": errors, "test_error": [r.get("test_top1") for r in history],
            "seconds": sum(r["seconds"] for r in history),
            "images_per_s": float(np.median([r["images_per_s"] for r in history])),
        }
        plot_training(history, run_dir / "training.png", title=f"CIFAR-10, {act}")

    summary["ratio"] = _ratio(summary["runs"], cfg)
    plot_figure1(curves, out / "figure1.png", target=cfg.target)
    _write_curves(out, curves)
    (out / "figure1.json").write_text(json.dumps(summary, indent=1))
    return summary


def _figure1_data(data_dir, cfg, download, progress, allow_unofficial=False):
    data = cifar10.load_cifar10(data_dir, download=download, progress=progress,
                                allow_unofficial=allow_unofficial)
    if cfg.train_images < len(data.y_train):
        data = data.subset(cfg.train_images, n_test=min(len(data.y_test), 2000), seed=cfg.seed)
    return data, cifar10.mean_image(data.x_train)


def _train_in_processes(data_dir, cfg, out, progress, restart, jobs):
    """Train cfg.activations in `jobs` processes, the cores shared out among them.

    Each process trains as `train_cifar` does (loading the data, already
    fetched), so the curves are those of one process, up to float rounding.
    Before each batch a process takes its share of the cores as minidl
    threads (parallel.py): cores // (nets training now). On 2 cores the two
    nets train with one thread each (each about 540 img/s: two processes use
    the cores better than one with two threads, as most of a step is NumPy
    that splits imperfectly); once ReLU's net has reached its target, tanh's
    takes both (about 1.5x faster).
    """
    jobs = min(jobs, len(cfg.activations))
    cores = available_cores()
    threads = str(max(1, cores // jobs))
    ctx = multiprocessing.get_context("spawn")
    running = ctx.Value("i", 0)                          # nets training now
    share = "MINIDL_NUM_THREADS" not in os.environ       # else the user's count holds
    with _environment({v: threads for v in _THREAD_VARIABLES}), ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=_child_init,
            initargs=(running if share else None, cores)) as pool:
        futures = []
        try:
            with _sigint_blocked():   # the processes (and the pool's threads) never take Ctrl-C
                futures += [pool.submit(_train_one, data_dir, act, cfg, out / act, progress,
                                        restart, 2 * i) for i, act in enumerate(cfg.activations)]
            for f in futures:
                f.result()                               # re-raises a process's error here
        except BaseException:
            # Ctrl-C (a pending one arrives as the block above ends) or one net's error:
            # stop the others now rather than wait for their runs to end. Their last
            # checkpoints are whole (atomic saves), so the same command resumes them.
            for f in futures:
                f.cancel()
            _stop_processes(pool)
            raise


@contextlib.contextmanager
def _sigint_blocked():
    """Block SIGINT in this thread while the pool starts its processes and threads.

    A blocked signal stays blocked in the threads started meanwhile and across
    fork and exec, so the training processes never see Ctrl-C (no traceback from
    them: this process stops them), and a Ctrl-C that comes meanwhile is not
    lost: it waits, and arrives here as KeyboardInterrupt when the block ends.
    """
    if not hasattr(signal, "pthread_sigmask") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _stop_processes(pool):
    """Terminate a ProcessPoolExecutor's processes and wait for them (a few seconds)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _environment(values):
    """Set environment variables the user has not set (child processes read them)."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


_share = None          # in a process of _train_in_processes: (nets training now, cores)


def _child_init(running, cores):
    global _share
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole group: the parent acts
    # tqdm's default lock is a multiprocessing semaphore, which a process stopped by the
    # parent could not release (a "leaked semaphore" warning); a thread lock does here.
    from tqdm import tqdm
    tqdm.set_lock(threading.RLock())
    _share = None if running is None else (running, cores)


class _CoreShare:
    """Training batches that, before each batch, set this process's minidl
    threads to its share of the cores: cores // (nets training now)."""

    def __init__(self, batches, running, cores):
        self.batches, self.running, self.cores = batches, running, cores

    def __len__(self):
        return len(self.batches)

    def __getattr__(self, name):
        return getattr(self.batches, name)

    def epoch(self, epoch, start=0):
        for batch in self.batches.epoch(epoch, start):
            minidl.set_num_threads(max(1, self.cores // max(1, self.running.value)))
            yield batch


def _train_one(data_dir, activation, cfg, run_dir, progress, restart, bar_position):
    """One net in a process of its own (see `_train_in_processes`)."""
    data, mean = _figure1_data(data_dir, cfg, download=False, progress=False)
    if _share is None:
        return train_cifar(data, mean, activation, cfg, run_dir, progress, restart, bar_position)
    running, cores = _share
    with running.get_lock():
        running.value += 1
    try:
        train_cifar(data, mean, activation, cfg, run_dir, progress, restart, bar_position,
                    share=(running, cores))
    finally:
        with running.get_lock():
            running.value -= 1


def train_cifar(data, mean, activation, cfg: Figure1Config, run_dir, progress=True,
                restart=False, bar_position=0, share=None, device="cpu"):
    """One net of Figure 1: train until `target` training error or `max_epochs`.

    share: (a shared count of the nets training now, cores) to take a share
    of the cores before each batch (see `_train_in_processes`).
    device: where the net trains ("cpu", or "cuda:0" for a GPU)."""
    minidl.random.manual_seed(cfg.seed)
    model = CifarNet(CifarNetConfig(activation=activation), seed=cfg.seed, device=device)
    opt = optim.SGD(model.parameters(), lr=cfg.lr_of(activation), momentum=cfg.momentum,
                    weight_decay=0.0)                        # no regularization of any kind
    batches = ArrayBatches(data.x_train, data.y_train, mean, cfg.batch_size, seed=cfg.seed)
    if share is not None:
        batches = _CoreShare(batches, *share)
    test = ArrayBatches(data.x_test, data.y_test, mean, 500, shuffle=False)

    def on_test(m):
        r = evaluate(m, test, ks=(1,))
        return {"test_loss": r["loss"], "test_top1": r["top1"]}

    # what makes this run this run (max_epochs may grow: the run then continues)
    meta = {"experiment": "figure1", "activation": activation, "lr": cfg.lr_of(activation),
            "target": cfg.target, "batch_size": cfg.batch_size, "momentum": cfg.momentum,
            "train_images": cfg.train_images, "seed": cfg.seed}
    trainer = Trainer(model, opt, batches, run_dir,
                      TrainConfig(max_epochs=cfg.max_epochs, topk=(1,), progress=progress,
                                  run_name=f"figure1 {activation}", bar_position=bar_position),
                      evaluate=on_test, stop=lambda h: h[-1]["train_top1"] <= cfg.target,
                      extra_meta=meta)
    if restart and trainer.checkpoint_path.exists():
        trainer.checkpoint_path.unlink()
    if trainer.checkpoint_path.exists():
        saved = _saved_meta(trainer.checkpoint_path)
        now = json.loads(json.dumps(meta))
        if saved != now:
            differ = [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}"
                      for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
            raise ValueError(f"{run_dir} holds a run with other settings (saved -> now: "
                             f"{'; '.join(differ)}); only --max-epochs may change when a run "
                             "continues. Use another --output-dir, or --restart to discard it")
        trainer.resume()
    return trainer.fit()


def _saved_meta(path) -> dict:
    """The meta of a Figure 1 checkpoint, checked (an edited file is a clear error)."""
    state = minidl.serialize.load(path)
    return minidl.serialize.check(state, {"meta": {"lr": float, "activation": str}}, path)["meta"]


def _ratio(runs, cfg):
    """tanh's epochs to the target over ReLU's; when tanh stopped short of the
    target, a lower bound, and the same ratio at the best error tanh did reach."""
    if "relu" not in runs or "tanh" not in runs or runs["relu"]["epochs_to_target"] is None:
        return None
    relu, tanh = runs["relu"], runs["tanh"]
    if tanh["epochs_to_target"] is not None:
        return {"tanh_over_relu": tanh["epochs_to_target"] / relu["epochs_to_target"]}
    reached = min(tanh["train_error"])          # the lowest error tanh got to
    at_reached = {"error": reached,
                  "relu_epochs": epochs_to_target(relu["train_error"], reached),
                  "tanh_epochs": epochs_to_target(tanh["train_error"], reached)}
    at_reached["tanh_over_relu"] = at_reached["tanh_epochs"] / at_reached["relu_epochs"]
    return {"tanh_over_relu": None,
            "at_least": tanh["epochs_run"] / relu["epochs_to_target"],
            "at_tanh_best": at_reached}


def _write_curves(out, curves):
    n = max(len(v) for v in curves.values())
    lines = ["epoch," + ",".join(f"{a}_train_error" for a in curves)]
    for i in range(n):
        lines.append(f"{i + 1}," + ",".join(f"{v[i]:.5f}" if i < len(v) else ""
                                           for v in curves.values()))
    (Path(out) / "figure1.csv").write_text("\n".join(lines) + "\n")


def describe(summary) -> str:
    """A few lines for the terminal."""
    lines = []
    for act, r in summary["runs"].items():
        e = r["epochs_to_target"]
        where = (f"25% training error after {e:.2f} epochs" if e is not None
                 else f"25% training error not reached in {r['epochs_run']} epochs")
        lines.append(f"{act:>5}: lr {r['lr']:g}, {where} "
                     f"(final {r['train_error'][-1]:.3f}; {r['images_per_s']:.0f} img/s)")
    ratio = summary.get("ratio")
    if ratio and ratio.get("tanh_over_relu"):
        lines.append(f"tanh needs {ratio['tanh_over_relu']:.1f}x the epochs of ReLU "
                     "(the paper: about 6x)")
    elif ratio:
        best = ratio["at_tanh_best"]
        bound = (f" (so it needs at least {ratio['at_least']:.1f}x ReLU's epochs)"
                 if ratio["at_least"] > 1 else "")
        lines.append(f"tanh has not reached 25% yet{bound}; to reach {best['error']:.3f}, "
                     f"tanh's best so far, it took {best['tanh_epochs']:.1f} epochs and ReLU "
                     f"{best['relu_epochs']:.1f}: {best['tanh_over_relu']:.1f}x")
    return "\n".join(lines)


def figure1_sweep(data_dir=None, out="runs/figure1-sweep", lrs=(0.002, 0.004, 0.008, 0.016, 0.032),
                  activations=("relu", "tanh"), train_images=50000, epochs=3, seed=0,
                  download=True, progress=True, allow_unofficial=False) -> dict:
    """The learning-rate sweep behind FIGURE1_LR ("chosen independently to make
    training as fast as possible"): each activation, each rate, a few epochs on
    the training set (or a class-balanced subset); the best rate is the one with
    the lowest training error at the end (ties: the earlier epoch to reach it).
    Diverged runs count as 1.0. With the whole set and seed 0, each run retraces
    the first epochs of `alexnet figure1` at that rate.
    """
    data = cifar10.load_cifar10(data_dir, download=download, progress=progress,
                                allow_unofficial=allow_unofficial)
    data = data.subset(train_images, n_test=1000, seed=seed)
    mean = cifar10.mean_image(data.x_train)
    out = Path(out)
    results = {}
    for act in activations:
        for lr in lrs:
            cfg = Figure1Config(activations=(act,), max_epochs=epochs, lr=((act, lr),),
                                train_images=train_images, seed=seed, target=0.0)
            run = out / f"{act}-lr{lr:g}"
            try:
                history = train_cifar(data, mean, act, cfg, run, progress)
                errors = [r["train_top1"] for r in history]
            except Exception as e:              # TrainingDiverged, most likely
                errors = [1.0] * epochs
                print(f"{act} lr={lr:g}: {e}")
            results.setdefault(act, {})[lr] = errors
            print(f"{act:>5} lr={lr:<7g} training error per epoch: "
                  + " ".join(f"{e:.3f}" for e in errors), flush=True)
    best = {act: min(r, key=lambda lr: (r[lr][-1], r[lr])) for act, r in results.items()}
    summary = {"lrs": list(lrs), "train_images": train_images, "epochs": epochs,
               "errors": {a: {str(lr): e for lr, e in r.items()} for a, r in results.items()},
               "best": best}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"sweep-{'-'.join(activations)}.json").write_text(json.dumps(summary, indent=1))
    return summary

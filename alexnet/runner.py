"""The experiment runner: many training runs, side by side, resumable, with one progress bar.

An experiment (Figure 1, the claims of docs/claims.md) is a list of `Run`s. Each
run trains in a folder of its own through `alexnet.train.Trainer`, so it has a
checkpoint, resumes where it stopped and, once finished, is kept and never
trained again. `run_all` trains the runs that are not finished:

- with ``jobs`` > 1 (CPU), in that many worker processes; before each batch a
  process takes its share of the cores as minidl threads: cores // (runs
  training now). Two processes with one thread each use 2 cores better than one
  process with two (most of a step is NumPy that splits imperfectly), and a
  process left alone takes every core.
- with ``jobs`` = 1 or on a GPU, one after the other in this process.

Progress: one bar for the whole experiment, counting epochs against the runs'
expected epochs (a run that stops early or goes on corrects the total), so its
ETA is the experiment's; a line per finished epoch of any run. Ctrl-C or
SIGTERM stops every run; their last checkpoints are whole (atomic saves), so the
same command continues.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

import minidl
from minidl.cpu.parallel import available_cores

from . import stopping
from .train import read_metrics


@dataclass(frozen=True)
class Run:
    """One training run of an experiment.

    name: its folder under the experiment's output folder (e.g. "relu", "dropout-0/seed1").
    train: a module-level function ``train(run_dir, on_epoch, **kwargs) -> history`` (it
        must pickle: worker processes import it by name). It trains (or resumes) in
        run_dir and calls ``on_epoch(record)`` after each finished epoch.
    kwargs: its settings (picklable).
    expected_epochs: how many epochs it will likely train, for the ETA.
    label: what the progress lines call it (default: its name).
    """
    name: str
    train: Callable
    kwargs: dict = field(default_factory=dict)
    expected_epochs: int = 1
    label: str = ""


def run_all(runs, out, jobs=1, progress=True, device="cpu", title="experiment") -> dict:
    """Train every run of `runs` under `out`; returns {run name: history}.

    Runs already finished are read from their folders, not trained again.
    """
    out = Path(out)
    done = {r.name: len(read_metrics(out / r.name)) for r in runs}
    expected = {r.name: max(r.expected_epochs, done[r.name]) for r in runs}
    bar = tqdm(total=sum(expected.values()), initial=sum(done.values()), desc=title,
               unit="epoch", disable=not progress)
    if any(done.values()):
        bar.write(f"{title}: continuing: {sum(done.values())} epochs of {len(runs)} runs already "
                  f"done in {out} are kept")
    seen = dict(done)
    labels = {r.name: r.label or r.name for r in runs}

    def on_epoch(name, record):
        seen[name] = record["epoch"]
        if seen[name] > expected[name]:               # longer than expected: the total grows
            bar.total += seen[name] - expected[name]
            expected[name] = seen[name]
        bar.update(1)
        line = f"{labels[name]} epoch {record['epoch']}: " + ", ".join(
            f"{k} {record[k]:.4f}" for k in ("train_loss", "train_top1", "test_top1") if k in record)
        if progress:
            bar.write(line)
        else:
            print(f"[{title}] {line}", flush=True)

    def on_finish(name):
        if seen[name] < expected[name]:               # stopped early: the total shrinks
            bar.total -= expected[name] - seen[name]
            expected[name] = seen[name]
        bar.refresh()

    histories = {}
    try:
        with stopping.signals():            # Ctrl-C and SIGTERM alike (alexnet.stopping)
            if jobs > 1 and len(runs) > 1 and device == "cpu":
                histories = _in_processes(runs, out, jobs, on_epoch, on_finish)
            else:
                for r in runs:
                    histories[r.name] = r.train(out / r.name,
                                                lambda rec, n=r.name: on_epoch(n, rec), **r.kwargs)
                    on_finish(r.name)
    finally:
        bar.close()
    return histories


# ---------------------------------------------------------------------------- processes

_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _in_processes(runs, out, jobs, on_epoch, on_finish):
    """Train the runs in `jobs` worker processes; events come back through a queue."""
    jobs = min(jobs, len(runs))
    cores = available_cores()
    ctx = multiprocessing.get_context("spawn")
    running = ctx.Value("i", 0)                          # runs training now
    events = ctx.Queue()
    share = "MINIDL_NUM_THREADS" not in os.environ       # else the user's count holds
    threads = str(max(1, cores // jobs))
    histories = {}
    with _environment({v: threads for v in _THREAD_VARIABLES}), ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=_child_init,
            initargs=(running if share else None, cores, events)) as pool:
        futures = {}
        try:
            with _sigint_blocked():   # the processes never take Ctrl-C: this one stops them
                for r in runs:
                    futures[pool.submit(_child_run, r, out / r.name)] = r.name
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                _drain(events, on_epoch)
                for f in finished:
                    histories[futures[f]] = f.result()   # re-raises a process's error here
                    on_finish(futures[f])
            _drain(events, on_epoch)
        except BaseException:
            # Ctrl-C, SIGTERM or one run's error: stop the others now rather than wait
            # for them. Their last checkpoints are whole, so the same command resumes.
            # (No Future.cancel(): the executor then marks every unfinished future broken,
            # and Python 3.11's does so with a traceback for a cancelled one.)
            _stop_processes(pool)
            raise
    return histories


def _drain(events, on_epoch):
    while True:
        try:
            name, record = events.get_nowait()
        except queue.Empty:
            return
        on_epoch(name, record)


@contextlib.contextmanager
def _sigint_blocked():
    """Block SIGINT in this thread while the pool starts its processes and threads.

    A blocked signal stays blocked in the threads started meanwhile and across
    fork and exec, so the workers never see Ctrl-C (no traceback from them: this
    process stops them), and a Ctrl-C that comes meanwhile is not lost: it waits,
    and arrives here as KeyboardInterrupt when the block ends.
    """
    if not hasattr(signal, "pthread_sigmask") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


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


_child = None          # in a worker process: (runs training now or None, cores, event queue)


def _child_init(running, cores, events):
    global _child
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole group: the parent acts
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):        # the parent's block while it started us
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _die_with_parent()
    # tqdm's default lock is a multiprocessing semaphore, which a process stopped by the
    # parent could not release (a "leaked semaphore" warning); a thread lock does here.
    tqdm.set_lock(threading.RLock())
    _child = (running, cores, events)


def _die_with_parent():
    """Linux: SIGTERM this worker when the parent dies (a SIGKILL gives the parent no time
    to stop it), so an orphan never trains on beside the command that resumes its run."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)              # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:                          # the parent died before prctl
        os._exit(1)


def _child_run(run: Run, run_dir):
    running, cores, events = _child
    on_epoch = lambda record: events.put((run.name, record))  # noqa: E731
    if running is None:
        return run.train(run_dir, on_epoch, **run.kwargs)
    with running.get_lock():
        running.value += 1
    try:
        with core_share(running, cores):
            return run.train(run_dir, on_epoch, **run.kwargs)
    finally:
        with running.get_lock():
            running.value -= 1


_share = None          # (runs training now, cores) while a worker trains a run


@contextlib.contextmanager
def core_share(running, cores):
    global _share
    _share = (running, cores)
    try:
        yield
    finally:
        _share = None


def shared(batches):
    """`batches`, taking this process's share of the cores before each batch when it
    trains in a worker of `run_all` (unchanged otherwise)."""
    return batches if _share is None else CoreShare(batches, *_share)


class CoreShare:
    """Training batches that, before each batch, set this process's minidl
    threads to its share of the cores: cores // (runs training now)."""

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

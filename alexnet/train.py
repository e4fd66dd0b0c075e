"""Training: one readable loop, with checkpoints a crash cannot break.

    for each epoch:
        for each batch:  forward -> loss -> backward -> SGD step -> log
        evaluate -> schedule -> checkpoint

Everything a run depends on is in its checkpoint: weights, momenta, the
global random generator (dropout), the learning-rate schedule, the epoch and
the batch within it, the running sums of the current epoch and the history
of finished ones. The data order and augmentation of a batch are functions of
(seed, epoch, batch index), so resuming continues the *identical* run: a run
killed with SIGKILL mid-epoch and resumed ends with the same weights, bit for
bit, as one never interrupted (tests/test_train.py kills one to check).

Checkpoints are written atomically (minidl.serialize) at the end of every
epoch, every `checkpoint_minutes`, and (for tests) every `checkpoint_steps`.
A loss that becomes NaN/inf or explodes stops the run with `TrainingDiverged`
before anything bad is saved: the last checkpoint is the last good state.

Runs survive the world:
- One owner per run folder: `fit` holds an OS file lock on OUT/train.lock
  (`RunLock`) while it trains; a second process refuses to train there, naming
  the holder. The kernel drops the lock when the process ends, however it ends.
- One stop path (alexnet.stopping): Ctrl-C or SIGTERM within a step is acted on
  after the step; one between steps (waiting for data, evaluating) at once. Either
  way the trainer saves a checkpoint where the state is whole and raises
  `Interrupted`, whose exit status is 130 or 143. Under MPI every rank stops after
  the same step (`comm.decide`, the one collective per step).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import signal
import socket
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol

import numpy as np
from tqdm.auto import tqdm

import minidl
from minidl import Tensor, functions as F, serialize
from minidl.backend import get_device, to_numpy

from . import stopping
from .distributed import Communicator
from .evaluate import topk_wrong
from .stopping import Interrupted

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
LOCK = "train.lock"


class Batches(Protocol):
    """What the trainer reads: batches of (images float32 NCHW, labels int64)."""

    def __len__(self) -> int: ...          # batches per epoch

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of `epoch` from batch index `start` on (a function of seed and epoch)."""
        ...


class TrainingDiverged(RuntimeError):
    pass


class RunInUse(OSError):
    """Another process trains in this run folder (it holds the folder's RunLock)."""


class RunLock:
    """One owner per run folder: an exclusive OS lock (flock) on RUN/train.lock.

        with RunLock(run):        # raises RunInUse if another process holds it
            ...                   # train: checkpoints, metrics, run.json

    The lock is the kernel's: it goes when the holding process ends, however it
    ends (SIGKILL included), so a killed run never leaves a stale lock behind. The
    file says who holds it (pid, host, command, start time) for the refusal
    message, and is removed on release. Re-entrant within a process (the CLI takes
    it before reading the run folder, the Trainer again around `fit`). On a file
    system without locks (some network mounts) it warns and does nothing; on a
    platform without fcntl (Windows) it does nothing.
    """

    _held = {}        # real path -> [fd, count, folder made]: the locks this process holds

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK

    @property
    def key(self):
        return str(self.path.parent.resolve() / LOCK)

    def acquire(self):
        try:
            import fcntl
        except ImportError:                     # not a POSIX system: no locking
            return self
        key = self.key
        if key in RunLock._held:
            RunLock._held[key][1] += 1
            return self
        made = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunInUse(self._in_use(holder)) from None
            except OSError as e:                # no flock on this file system
                os.close(fd)
                warnings.warn(f"cannot lock {self.path} ({e}): a second run started in "
                              f"{self.folder} would not be refused", RuntimeWarning, stacklevel=2)
                return self
            try:                                # the file we locked is still the folder's
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)                        # removed by its last holder meanwhile: again
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(_holder(), indent=1) + "\n").encode())
        RunLock._held[key] = [fd, 1, made]
        return self

    def release(self):
        entry = RunLock._held.get(self.key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1]:
            return
        del RunLock._held[self.key]
        with contextlib.suppress(OSError):
            os.unlink(self.path)                # still locked: nobody can take it meanwhile
        os.close(entry[0])                      # the lock goes with the descriptor
        if entry[2]:                            # a folder made for a run that wrote nothing
            with contextlib.suppress(OSError):
                self.folder.rmdir()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def _in_use(self, holder):
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, started "
               f"{holder.get('started')}: {holder.get('command')}") if holder else \
            "its details are not written yet"
        pid = holder.get("pid") if holder else None
        stop = (f"stop it (Ctrl-C in its terminal, or kill -INT {pid} on its machine: it saves "
                "a checkpoint and exits, and can be resumed)" if pid else "stop it")
        return (f"{self.folder} is in use: another process trains there ({who}). Two runs "
                f"in one folder would overwrite each other's checkpoints. Wait for it to "
                f"finish, {stop}, or choose another --output-dir.")


def _holder() -> dict:
    """Who holds a RunLock: this process."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            command = shlex.join(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
    except OSError:
        command = shlex.join([sys.executable, *sys.argv])
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def _read_holder(fd) -> dict:
    try:
        holder = json.loads(os.pread(fd, 1 << 16, 0).decode())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


# What `Trainer.resume` needs from a checkpoint (minidl.serialize.check names what is wrong).
CHECKPOINT_SCHEMA = {
    "model": dict, "optimizer": {"lr": float, "velocity": list}, "rng": dict,
    "train": {"epoch": int, "batch": int, "step": int, "history": list, "finished": bool},
    "meta": dict,
}


@dataclass
class TrainConfig:
    max_epochs: int = 90                    # Sec 5: "roughly 90 cycles"
    checkpoint_minutes: float = 10.0        # also at the end of every epoch
    checkpoint_steps: int = 0               # every N steps as well (0: off; for tests)
    explode_factor: float = 1e3             # loss > factor * first loss counts as divergence
    topk: tuple = (1, 5)
    log_steps: int = 20                     # loss and errors read from the device every N steps
    progress: bool = True
    run_name: str = "train"
    bar_position: int = 0                   # the epoch bar's line; the batch bar's is +1


@dataclass
class TrainState:
    """Where the run is: saved in every checkpoint."""
    epoch: int = 0                 # the epoch in progress (or next to start)
    batch: int = 0                 # batches of it already done
    step: int = 0                  # SGD steps since the start
    loss_sum: float = 0.0          # running sums of the epoch in progress
    error_sums: dict = field(default_factory=dict)
    seen: int = 0
    seconds: float = 0.0           # training time of the epoch in progress
    first_loss: Optional[float] = None
    history: list = field(default_factory=list)   # one dict per finished epoch
    finished: bool = False

    def check(self):
        """Raise ValueError naming the entry unless a run can continue from this state
        (a checkpoint's `train`: counts >= 0, one record of numbers per finished epoch)."""
        for name in ("epoch", "batch", "step", "seen"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"train/{name} should be a whole number >= 0, found {v!r}")
        if len(self.history) != self.epoch:
            raise ValueError(f"train/history should hold one record per finished epoch "
                             f"({self.epoch}), found {len(self.history)}")
        for i, r in enumerate(self.history):
            numbers = isinstance(r, dict) and all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                for v in r.values())
            if not numbers or r.get("epoch") != i + 1:
                raise ValueError(f"train/history/{i} should be the record of epoch {i + 1} (a "
                                 f"dict of numbers, e.g. {{'epoch': {i + 1}, 'train_loss': "
                                 f"2.3}}), found {r!r:.80}")


def input_device(model):
    """The device images are sent to: the first column's (AlexNet) or the model's."""
    devices = getattr(model, "devices", None)
    if devices:
        return devices[0]
    return model.parameters()[0].device


class Trainer:
    """Train `model` on `batches` with `optimizer`; evaluate and checkpoint each epoch.

    Args:
        model: a minidl Module returning logits.
        optimizer: minidl.optim.SGD.
        batches: a `Batches` source for training.
        out_dir: where checkpoint.npz and metrics.jsonl go.
        evaluate: optional ``evaluate(model) -> dict`` run after each epoch
            (e.g. {"val_loss":..., "val_top1":..., "val_top5":...}).
        schedule: optional; ``schedule.step(metric)`` after each epoch (ReduceOnPlateau),
            or a StepSchedule (``set_epoch``).
        schedule_metric: the key of the evaluate() dict the schedule watches.
        stop: optional ``stop(history) -> bool`` checked after each epoch
            (Figure 1 stops at 25% training error).
        comm: an `alexnet.distributed` communicator when several processes train one
            model (`batches` then yields this process's share of each batch); the
            default is one process.
        on_epoch: optional ``on_epoch(record)`` after each finished (and saved) epoch
            (the experiment runner's progress).
    """

    def __init__(self, model, optimizer, batches: Batches, out_dir, config: TrainConfig = None,
                 evaluate: Callable = None, schedule=None, schedule_metric="val_top1",
                 stop: Callable = None, extra_meta: dict = None, comm: Communicator = None,
                 on_epoch: Callable = None):
        self.model, self.optimizer, self.batches = model, optimizer, batches
        self.out = Path(out_dir)
        self.cfg = config or TrainConfig()
        self.evaluate, self.schedule, self.schedule_metric = evaluate, schedule, schedule_metric
        self.stop, self.on_epoch = stop, on_epoch
        self.extra_meta = extra_meta or {}
        self.state = TrainState()
        self.device = get_device(input_device(model))
        self._pending, self._pending_seen = None, 0   # sums of steps not yet read (device)
        self._last_save = time.monotonic()
        self._whole = False                           # the state may be checkpointed now
        self.comm = comm or Communicator()
        self.comm.share_dropout(model)
        self.show = self.cfg.progress and self.comm.is_root     # bars and logs: rank 0's

    # --- checkpoints -------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def state_dict(self) -> dict:
        """The whole training state: what a checkpoint holds."""
        return {
            "model": dict(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "rng": minidl.random.get_state(),
            "train": asdict(self.state),
            "config": asdict(self.cfg),
            "meta": self.extra_meta,
        }

    def save(self):
        """Write the whole training state atomically (never a diverged one); rank 0 only."""
        state = self.state_dict()                          # the weights on the host, once
        for name, w in state["model"].items():
            if not np.all(np.isfinite(w)):
                raise TrainingDiverged(f"refusing to checkpoint: parameter {name} is not finite")
        if self.comm.is_root:
            serialize.save(self.checkpoint_path, state)
        self._last_save = time.monotonic()

    def resume(self) -> bool:
        """Load checkpoint.npz from out_dir if there is one; True if it did."""
        if not self.checkpoint_path.exists():
            return False
        path = self.checkpoint_path
        state = serialize.check(serialize.load(path), CHECKPOINT_SCHEMA, path)
        try:
            self.load_state_dict(state)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise ValueError(f"{path}: cannot restore the run from it ({type(e).__name__}: {e}); "
                             "the checkpoint was edited or belongs to another model. Use an "
                             "earlier checkpoint, or start afresh in another folder.") from None
        return True

    def load_state_dict(self, state):
        """Continue from a `state_dict()` (a checkpoint's, or rank 0's)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None and state.get("schedule") is not None:
            self.schedule.load_state_dict(state["schedule"])
        minidl.random.set_state(state["rng"])
        self.state = TrainState(**state["train"])
        self.state.check()

    # --- the loop ----------------------------------------------------------------
    def fit(self) -> list:
        """Train until max_epochs or `stop`; returns the history (one dict per epoch).

        Holds the run folder's RunLock (rank 0) while it trains. A signal (Ctrl-C,
        SIGTERM: alexnet.stopping) ends it with a checkpoint where the state is whole
        and `Interrupted` (its `saved` says where); any other error keeps the last
        checkpoint as it is."""
        lock = RunLock(self.out) if self.comm.is_root else contextlib.nullcontext()
        with lock:
            try:
                return self._fit()
            except Interrupted as e:
                if e.saved is None:
                    e.saved = self._save_at_stop()
                raise
            except KeyboardInterrupt as e:        # a plain one (no alexnet.stopping handler)
                raise Interrupted(signal.SIGINT, self._save_at_stop()) from e

    def _fit(self):
        self.out.mkdir(parents=True, exist_ok=True)
        if self.device.kind == "cpu":
            minidl.keep_freed_memory()    # each step's arrays reuse the last one's pages
        self.comm.synchronize(self)       # every rank starts from rank 0's state
        self._whole = True                # the state is one a checkpoint may hold
        s, cfg = self.state, self.cfg
        epochs = tqdm(total=cfg.max_epochs, initial=s.epoch, desc=cfg.run_name, unit="epoch",
                      disable=not self.show, position=cfg.bar_position)
        try:
            while not s.finished and s.epoch < cfg.max_epochs:
                self._train_epoch()
                record = self._end_epoch()
                if self.on_epoch is not None and self.comm.is_root:
                    self.on_epoch(record)
                epochs.update(1)
                epochs.set_postfix_str(_short(record))
                if not cfg.progress and self.comm.is_root and self.on_epoch is None:
                    print(f"[{cfg.run_name}] epoch {record['epoch']}: {_short(record)}", flush=True)
                self._stop_if_asked(saved=True)     # a signal during the evaluation
            self._stop_if_asked(saved=True)
        finally:
            epochs.close()
        return s.history

    @contextlib.contextmanager
    def _changing(self):
        """A part that changes the training state (a step, the end of an epoch): a
        signal inside waits for its end, and a checkpoint is never taken from its
        middle (an error inside leaves the state marked as not whole)."""
        with stopping.deferred():
            self._whole = False
            yield
            self._whole = True

    def _stop_if_asked(self, saved=False):
        """Stop every rank here if a signal came to any of them (one collective)."""
        _, signum = self.comm.decide(False, stopping.requested())
        if signum:
            self._stop(signum, self._position() if saved else None)

    def _stop(self, signum, saved):
        stopping.clear()
        raise Interrupted(signum, saved, together=True)

    def _save_at_stop(self):
        """At a stop by signal: a checkpoint if the state is whole and finite (one
        process: under MPI the ranks stop together at `decide` and save there)."""
        if not self._whole or self.comm.size > 1:
            return None
        try:
            with stopping.deferred():
                self._read_tally()
                self.save()
        except (TrainingDiverged, OSError, ValueError):
            return None
        return self._position()

    def _position(self) -> str:
        s = self.state
        where = (f"after epoch {s.epoch}" if s.batch == 0 else
                 f"epoch {s.epoch + 1}, after batch {s.batch} of {len(self.batches)}")
        return f"{self.checkpoint_path} ({where})"

    def _train_epoch(self):
        s, cfg, model = self.state, self.cfg, self.model
        model.train()
        if hasattr(self.schedule, "set_epoch"):
            self.schedule.set_epoch(s.epoch)
        n = len(self.batches)
        bar = tqdm(total=n, initial=s.batch, desc=f"epoch {s.epoch + 1}", unit="batch",
                   leave=False, disable=not self.show,
                   position=cfg.bar_position + 1)
        t0 = time.perf_counter()
        try:
            self._steps(bar, n, t0)
        finally:
            bar.close()

    def _steps(self, bar, n, t0):
        s, cfg, model = self.state, self.cfg, self.model
        for x, y in self.batches.epoch(s.epoch, s.batch):
            with self._changing():
                logits = model(Tensor(x, device=self.device))          # forward
                labels = self._labels(y, logits.shape[1])
                loss = F.softmax_cross_entropy(logits, labels)         # mean over the batch
                self.optimizer.zero_grad()
                loss.backward()                                        # backward
                self.comm.allreduce_gradients(self.optimizer.params)   # mean over all ranks
                self.optimizer.step()                                  # v <- 0.9v - ...; w += v

                self._tally(loss, logits, labels)                      # log, on the device
                s.batch += 1
                s.step += 1
                bar.update(1)
                s.seconds += time.perf_counter() - t0
                if s.step % cfg.log_steps == 0 or s.batch == n:
                    self._read_tally()                                 # the one host sync
                    bar.set_postfix(loss=f"{s.loss_sum / s.seen:.3f}",
                                    err=f"{s.error_sums['1'] / s.seen:.3f}")
                # every rank takes rank 0's clock and stops if any rank got a signal
                due, signum = self.comm.decide(self._checkpoint_due(), stopping.requested())
                if due or signum:
                    self._read_tally()
                    self.save()
                if signum:
                    self._stop(signum, self._position())
            t0 = time.perf_counter()
        self._read_tally()

    # --- what a step adds to the epoch's sums -------------------------------------
    def _labels(self, y, classes):
        """The batch's labels checked on the host (where they are), then on the device."""
        return self.device.put(F.check_labels(np.asarray(y), classes))

    def _tally(self, loss, logits, labels):
        """Add the step's loss sum and top-k error counts to sums kept on the device:
        reading them every step would make the host wait for the GPU every step."""
        with self.device:
            wrong = topk_wrong(logits.data, labels, self.cfg.topk)
            xp = self.device.xp
            step = xp.stack([loss.data.astype(xp.float64) * len(labels)]
                            + [wrong[k].astype(xp.float64) for k in self.cfg.topk])
            self._pending = step if self._pending is None else self._pending + step
        self._pending_seen += len(labels)

    def _read_tally(self):
        """Move the device sums into the state (one device-to-host copy) and check the
        loss: NaN, inf or an explosion stops the run before anything is saved."""
        if self._pending is None:
            return
        sums, n = to_numpy(self._pending), self._pending_seen
        self._pending, self._pending_seen = None, 0
        sums, n = self.comm.sum_counts(sums, n)                        # all ranks' images
        s = self.state
        self._check_finite(float(sums[0]) / n)
        s.loss_sum += float(sums[0])
        for k, e in zip(self.cfg.topk, sums[1:]):
            s.error_sums[str(k)] = s.error_sums.get(str(k), 0) + int(e)
        s.seen += n

    def _end_epoch(self) -> dict:
        s = self.state
        record = {"epoch": s.epoch + 1, "step": s.step, "lr": self.optimizer.lr,
                  "train_loss": s.loss_sum / max(s.seen, 1)}
        for k, e in s.error_sums.items():
            record[f"train_top{k}"] = e / max(s.seen, 1)
        record["seconds"] = s.seconds
        record["images_per_s"] = s.seen / s.seconds if s.seconds else None
        if self.evaluate is not None:                  # changes nothing a checkpoint holds
            record.update(self.evaluate(self.model))
        with self._changing():
            return self._record_epoch(record)

    def _record_epoch(self, record) -> dict:
        s = self.state
        if self.schedule is not None and hasattr(self.schedule, "step"):
            metric = record.get(self.schedule_metric)
            if metric is None:
                raise KeyError(f"schedule watches '{self.schedule_metric}', which the epoch "
                               f"record lacks; it has {sorted(record)}")
            self.schedule.step(metric)
        s.history.append(record)
        s.epoch += 1
        s.batch, s.loss_sum, s.error_sums, s.seen, s.seconds = 0, 0.0, {}, 0, 0.0
        if self.stop is not None and self.stop(s.history):
            s.finished = True
        self.save()
        self._write_metrics()
        return record

    def _checkpoint_due(self) -> bool:
        cfg = self.cfg
        if cfg.checkpoint_steps and self.state.step % cfg.checkpoint_steps == 0:
            return True
        return time.monotonic() - self._last_save > 60 * cfg.checkpoint_minutes

    def _check_finite(self, value):
        s = self.state
        if s.first_loss is None:
            s.first_loss = value
        bad = not math.isfinite(value)
        exploded = math.isfinite(value) and value > self.cfg.explode_factor * max(s.first_loss, 1e-3)
        if bad or exploded:
            where = (f"the last good checkpoint is {self.checkpoint_path}"
                     if self.checkpoint_path.exists() else "no checkpoint was written yet")
            raise TrainingDiverged(
                f"loss {'is ' + str(value) if bad else f'exploded to {value:.4g}'} in the "
                f"steps up to epoch {s.epoch + 1}, batch {s.batch} (step {s.step}); {where}. "
                f"Lower the learning rate (it is {self.optimizer.lr:g}) and resume from that "
                f"checkpoint (alexnet train: add --resume --lr {self.optimizer.lr / 10:g}; the "
                f"learning rate, epochs and logging options may change on resume), or start "
                f"afresh in another folder.")

    def _write_metrics(self):
        """metrics.jsonl: one line per finished epoch, rewritten from the checkpointed history."""
        if not self.comm.is_root:
            return
        path = self.out / METRICS
        tmp = path.with_suffix(".jsonl.tmp")
        with open(tmp, "w") as f:
            for record in self.state.history:
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, path)


_SHORT_NAMES = {"train_loss": "train loss", "train_top1": "train top-1 error",
                "val_top1": "val top-1 error", "val_top5": "val top-5 error", "lr": "lr"}


def _short(record):
    return ", ".join(f"{name} {record[k]:.4g}" for k, name in _SHORT_NAMES.items() if k in record)


def read_metrics(out_dir) -> list:
    path = Path(out_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

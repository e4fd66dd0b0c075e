"""One stop path: Ctrl-C and SIGTERM end a run in the same place.

A terminal sends SIGINT (Ctrl-C). Schedulers stop a job with SIGTERM and kill
it a little later: Slurm after its KillWait (30 s by default), Kubernetes after
the pod's grace period (30 s), systemd after 90 s. Both mean "stop, keeping what
you can", so both take the same path:

    with stopping.signals():         # alexnet.cli, around every command: SIGINT and
        ...                          # SIGTERM raise Interrupted (a KeyboardInterrupt)
        with stopping.deferred():    # a block that must not be cut in the middle (a
            ...                      # training step: the weights half updated). A first
                                     # signal here is only recorded (`requested()`); the
                                     # code stops at its next safe point (the Trainer:
                                     # after the step, with a checkpoint). A second one
                                     # raises at once.

Under MPI (alexnet.distributed) a whole run is deferred: each rank records the
signal its launcher forwarded, and the Trainer's per-step decision (one
collective) stops every rank after the same step, rank 0 saving as a single
process does.

The exit status is the shell's for a death by that signal, 128 + its number:
130 for SIGINT, 143 for SIGTERM (`Interrupted.status`).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal.

    signum: SIGINT or SIGTERM. saved: where the checkpoint written at the stop is
    (a short text: path and position), None if none was. together: raised on every
    rank after the same step (no rank is left waiting for another)."""

    def __init__(self, signum=signal.SIGINT, saved=None, together=False):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.saved, self.together = int(signum), saved, together

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def status(self) -> int:
        """The exit status of a process this signal stopped: 128 + its number."""
        return 128 + self.signum


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C (a plain KeyboardInterrupt too), 143 for SIGTERM."""
    return getattr(interrupt, "status", 128 + signal.SIGINT)


_requested = None      # the signal recorded inside a deferred block, not yet acted on
_depth = 0             # deferred blocks entered
_announce = True       # say so on stderr when a signal is recorded (rank 0 only, under MPI)


def _handler(signum, frame):
    global _requested
    if _depth and _requested is None:
        _requested = signum
        if _announce:
            again = "Ctrl-C again" if signum == signal.SIGINT else "a second SIGTERM"
            print(f"\n{signal.Signals(signum).name} received: stopping after the current step, "
                  f"with a checkpoint ({again} stops at once, without one)",
                  file=sys.stderr, flush=True)
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def signals(announce=True):
    """Within the block, SIGINT and SIGTERM raise `Interrupted` (at once, or at the next
    safe point inside a `deferred` block). Only the main thread can take signals; a
    signal the process ignores (a background job's SIGINT) stays ignored.

    announce: print a line when a deferred signal is recorded."""
    global _announce
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous, announced = {}, _announce
    _announce = announce
    for s in SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            previous[s] = signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _announce = announced


@contextlib.contextmanager
def deferred():
    """A block a signal must not cut: the first signal is recorded, not raised. When
    the outermost deferred block ends with a signal still recorded (no safe point
    took it), it is raised there."""
    global _depth, _requested
    _depth += 1
    try:
        yield
    except BaseException:
        _depth -= 1
        if not _depth:
            _requested = None      # the block ends on an error: that is the stop
        raise
    _depth -= 1
    if not _depth and _requested is not None:
        signum, _requested = _requested, None
        raise Interrupted(signum)


def announce(on: bool):
    """Whether a recorded signal is announced on stderr (under MPI: rank 0 only)."""
    global _announce
    _announce = bool(on)


def requested() -> int:
    """The signal recorded by a deferred block and not acted on yet (0: none)."""
    return int(_requested or 0)


def clear():
    """Forget the recorded signal (the caller acts on it)."""
    global _requested
    _requested = None

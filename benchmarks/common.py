"""Timing helpers shared by the benchmarks.

Every benchmark reports a *ratio* against a reference measured in the same
process and run (the machines are shared and noisy): medians of several
repeats, never a single time.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .machine import machine

RESULTS = Path(__file__).resolve().parent / "results"


def median_time(fn, repeat=5, warmup=1, min_time=0.0):
    """Median wall time of `fn()` over `repeat` runs after `warmup` untimed ones.

    With `min_time`, each timed sample loops fn until it has run that long and
    reports the mean per call (for very short functions).
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return float(np.median(samples))


def interleaved(fns, repeat, sample=None):
    """Median seconds of each fn, one sample of each in turn (fn0, fn1, ..., fn0,
    ...) after one warm-up call each, so that a burst of load from other
    processes hits all of them alike. sample(fn) takes one sample (default:
    the wall time of one call)."""
    sample = sample or (lambda fn: median_time(fn, repeat=1, warmup=0))
    for fn in fns:
        fn()  # warm-up: workspaces, page faults, BLAS threads, compiled kernels
    samples = [[sample(fn) for fn in fns] for _ in range(repeat)]
    return [float(np.median(col)) for col in zip(*samples)]


def as_chwn(a):
    """a (N, C, H, W) stored as CHWN, as a convolution hands it on (minidl/cpu/layout.py)."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def report(name, rows, columns=None, notes=None, extra=None):
    """Print `rows` (a list of dicts) as a table and write them to results/NAME.json,
    with `extra` ({key: list of dicts}: more tables) beside them."""
    if not rows:
        return
    columns = columns or list(rows[0])
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({"benchmark": name, "machine": machine(), "notes": notes,
                               "rows": rows, **(extra or {})}, indent=1))
    print(f"wrote {out}")

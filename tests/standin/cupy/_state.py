"""Shared state of the CuPy stand-in: devices, streams' waits, counters.

This is a stand-in for CuPy used by the test suite, not CuPy. It keeps, per
thread, the current device (CuPy: `cudaSetDevice` is per host thread, and a new
thread starts on device 0), and, per process, what the rules and the counters
need: how much work each device has been given (the ordering rule of
`cupy.cuda.Event`) and how many kernels, transfers and syncs happened.
"""
from __future__ import annotations

import os
import threading

_tls = threading.local()     # .device (int), .stack (list), .fuse (int), .streams (dict)
_lock = threading.Lock()

MAX_DEVICES = 16


def _initial_device_count() -> int:
    text = os.environ.get("MINIDL_STANDIN_DEVICES", "2")
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"MINIDL_STANDIN_DEVICES: expected a whole number of devices (1..{MAX_DEVICES}), "
                         f"found {text!r}") from None
    if not 1 <= n <= MAX_DEVICES:
        raise ValueError(f"MINIDL_STANDIN_DEVICES: expected 1..{MAX_DEVICES} devices, found {n}")
    return n


device_count = _initial_device_count()


# --- the current device (thread-local, default 0) ------------------------------
def current() -> int:
    return getattr(_tls, "device", 0)


def set_current(dev: int) -> None:
    _tls.device = dev


def device_stack() -> list:
    stack = getattr(_tls, "stack", None)
    if stack is None:
        stack = _tls.stack = []
    return stack


# --- work per device (the ordering model) ----------------------------------------
# work[d]: how many operations (kernels, memsets, copies) device d has been given.
# synced[d]: work[d] at the last time the host waited for device d to finish.
work = [0] * MAX_DEVICES
synced = [0] * MAX_DEVICES


# --- counters ----------------------------------------------------------------------
kernels = [0] * MAX_DEVICES   # kernel launches per device
counts = {"h2d": 0, "d2h": 0, "memcpy": 0, "memset": 0, "peer_copy": 0, "syncs": 0}
syncs_by_kind: dict = {}


def fusing() -> bool:
    return getattr(_tls, "fuse", 0) > 0


def launch(dev: int) -> None:
    """One kernel launched on device `dev` (counted once per fused call inside `cupy.fuse`)."""
    with _lock:
        work[dev] += 1
        if not getattr(_tls, "fuse", 0):
            kernels[dev] += 1


def device_op(dev: int, kind: str) -> None:
    """A memcpy, memset or transfer that device `dev` performs (not a kernel)."""
    with _lock:
        work[dev] += 1
        counts[kind] += 1


def host_sync(kind: str, d2h: bool = True) -> None:
    """The host waits for the device: `.get()`, `.item()`, `int()`, `bool()`, ..."""
    if getattr(_tls, "fuse", 0):
        # CuPy: a fused function is compiled into one kernel, which cannot hand a value to the host
        raise TypeError(f"a host sync ({kind}) inside a function compiled by cupy.fuse: "
                        "a fused kernel cannot read a value back to the host")
    with _lock:
        counts["syncs"] += 1
        if d2h:
            counts["d2h"] += 1
        syncs_by_kind[kind] = syncs_by_kind.get(kind, 0) + 1


def reset_counters() -> None:
    with _lock:
        for i in range(MAX_DEVICES):
            kernels[i] = 0
        for k in counts:
            counts[k] = 0
        syncs_by_kind.clear()


def snapshot() -> dict:
    with _lock:
        per_device = {d: kernels[d] for d in range(device_count)}
        return {"kernels": sum(per_device.values()), "kernels_per_device": per_device,
                **counts, "syncs_by_kind": dict(syncs_by_kind)}


def mark_synchronized(dev: int, upto: int | None = None) -> None:
    """The host waited until device `dev` finished its work (up to `upto`, default all of it)."""
    with _lock:
        synced[dev] = max(synced[dev], work[dev] if upto is None else upto)


# --- memory (what `MemoryPool.used_bytes()` reports) ---------------------------------
used_bytes = [0] * MAX_DEVICES
pointers: dict = {}          # data.ptr -> weakref of the array it was read from

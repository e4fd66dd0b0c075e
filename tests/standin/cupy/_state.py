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
        raise ValueError(f"MINIDL_STANDIN_DEVICES: expected a whole number of devices "
                         f"(0..{MAX_DEVICES}), found {text!r}") from None
    if not 0 <= n <= MAX_DEVICES:
        raise ValueError(f"MINIDL_STANDIN_DEVICES: expected 0..{MAX_DEVICES} devices, found {n}")
    return n


device_count = _initial_device_count()

# The CuPy release the stand-in follows where CuPy's API changed between major versions:
# CuPy 14 hands NCCL's unique id over as bytes, CuPy 13 as a tuple of 128 ints (cupy.cuda.nccl).
VERSIONS = {13: "13.6.0", 14: "14.2.0"}   # the releases whose API the stand-in was checked against


def _initial_cupy_major() -> int:
    text = os.environ.get("MINIDL_STANDIN_CUPY", "14").strip()
    if text not in ("13", "14"):
        raise ValueError(f"MINIDL_STANDIN_CUPY: expected the CuPy major version the stand-in "
                         f"follows, 13 or 14 (the default), found {text!r}")
    return int(text)


cupy_major = _initial_cupy_major()


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


# --- work per device and stream (the ordering model) --------------------------------
# work[d]: how many operations (kernels, memsets, copies) device d has been given: each
#   operation's number on its device.
# last_on[(d, s)]: the number of the latest operation given to stream s (its ptr) of device d.
# done_on[(d, s)]: the operations of that stream the host is known to have waited for.
# synced[d]: work[d] when the host last waited for ALL of device d's streams.
# Streams are independent (stricter than the legacy null stream, which also waits for the
# other blocking streams of its device).
work = [0] * MAX_DEVICES
last_on: dict = {}
done_on: dict = {}
synced = [0] * MAX_DEVICES


def _stream_of(dev: int) -> int:
    """The ptr of this thread's current stream on device `dev` (0: its null stream)."""
    streams = getattr(_tls, "streams", None)
    s = streams.get(dev) if streams else None
    return 0 if s is None else s.ptr


def pending(dev: int) -> dict:
    """{stream ptr: latest operation} of device `dev`'s streams that the host has not waited for."""
    with _lock:
        return {s: n for (d, s), n in last_on.items()
                if d == dev and n > synced[dev] and n > done_on.get((d, s), 0)}


# --- counters ----------------------------------------------------------------------
kernels = [0] * MAX_DEVICES   # kernel launches per device
counts = {"h2d": 0, "d2h": 0, "memcpy": 0, "memset": 0, "peer_copy": 0, "syncs": 0}
syncs_by_kind: dict = {}


def fusing() -> bool:
    return getattr(_tls, "fuse", 0) > 0


def refuse_in_fuse(what: str) -> None:
    """CuPy's fuse compiles ONE elementwise kernel (with reductions): anything else fails there."""
    if getattr(_tls, "fuse", 0):
        raise TypeError(f"{what} inside a function compiled by cupy.fuse: CuPy fuses only "
                        "elementwise operations and reductions into its one kernel")


def launch(dev: int, stream: int | None = None) -> None:
    """One kernel launched on device `dev` (counted once per fused call inside `cupy.fuse`),
    on `stream` (a ptr; default this thread's current stream of `dev`)."""
    stream = _stream_of(dev) if stream is None else stream
    with _lock:
        work[dev] += 1
        last_on[(dev, stream)] = work[dev]
        if not getattr(_tls, "fuse", 0):
            kernels[dev] += 1


def device_op(dev: int, kind: str) -> None:
    """A memcpy, memset or transfer that device `dev` performs (not a kernel)."""
    stream = _stream_of(dev)
    with _lock:
        work[dev] += 1
        last_on[(dev, stream)] = work[dev]
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


def mark_synchronized(dev: int, stream: int | None = None, upto: int | None = None) -> None:
    """The host waited for device `dev`: all its streams, or `stream` (up to operation `upto`)."""
    with _lock:
        if stream is None:
            synced[dev] = work[dev]
        else:
            n = last_on.get((dev, stream), 0) if upto is None else upto
            done_on[(dev, stream)] = max(done_on.get((dev, stream), 0), n)


# --- memory (what `MemoryPool.used_bytes()` reports) ---------------------------------
used_bytes = [0] * MAX_DEVICES
pointers: dict = {}          # data.ptr -> weakref of the array it was read from

"""`cupy.standin`: what only the stand-in has (it is not in CuPy): counters, the device count
and the CuPy version it follows.

    import cupy
    cupy.standin.reset()
    ... device work ...
    c = cupy.standin.counters()      # a dict, see `counters`

    with cupy.standin.count() as c:  # reset on entry; `c` is filled in on exit
        ... device work ...
    c["kernels"], c["d2h"]
"""
from __future__ import annotations

import contextlib

from . import _state


def counters() -> dict:
    """What happened since the last reset.

    kernels             kernel launches, all devices (a `cupy.fuse` call is one)
    kernels_per_device  {device: launches}
    h2d, d2h            host-to-device / device-to-host transfers
    syncs               host waits: every d2h, plus explicit synchronize() calls
    syncs_by_kind       {"get": n, "item": n, "int": n, "bool": n, "synchronize": n, ...}
    memcpy, memset      device copies (peer copies included) and memsets (`zeros`, `fill(0)`)
    peer_copy           copies from another device
    """
    return _state.snapshot()


def reset() -> None:
    """Set every counter to zero (the device state and the ordering of copies are kept)."""
    _state.reset_counters()


@contextlib.contextmanager
def count():
    """Reset the counters, run the block, then fill the yielded dict with `counters()`."""
    reset()
    c: dict = {}
    try:
        yield c
    finally:
        c.update(counters())


def device_count() -> int:
    return _state.device_count


def set_device_count(n: int) -> int:
    """Give the stand-in `n` devices (0..16; 0: a machine without a GPU); returns the previous."""
    if not isinstance(n, int) or not 0 <= n <= _state.MAX_DEVICES:
        raise ValueError(f"set_device_count: expected 0..{_state.MAX_DEVICES} devices, found {n!r}")
    previous, _state.device_count = _state.device_count, n
    return previous



def cupy_major() -> int:
    """The CuPy major version the stand-in follows (13 or 14; `MINIDL_STANDIN_CUPY`, read at
    import): where the two differ, as `cupy.cuda.nccl`'s unique id, it acts as that release."""
    return _state.cupy_major


# --- for stand-ins of libraries that take raw device pointers (cupy.cuda.nccl) ------------
def array_at(ptr: int):
    """The live device array whose `.data.ptr` was read as `ptr` (KeyError if none)."""
    ref = _state.pointers.get(ptr)
    a = None if ref is None else ref()
    if a is None:
        raise KeyError(f"no live stand-in array had its .data.ptr read as {ptr:#x}")
    return a


def host_view(a):
    """The NumPy array behind a stand-in device array (shared memory): for other stand-ins only."""
    return a._a


def launch(device: int, stream_ptr: int | None = None) -> None:
    """Count one kernel on `device` (a library call that runs there, e.g. an all-reduce), given to
    the stream whose `ptr` is `stream_ptr` (default: the current stream of `device`)."""
    _state.launch(device, stream_ptr)


def check_ordered(src: int, dst: int, stream=None) -> None:
    """Raise RuntimeError unless `stream` (default: `dst`'s current one) is ordered after all of
    device `src`'s work: what a library reading `src`'s memory from `dst` must check."""
    from ._copy import check_ordered as check
    check(src, dst, stream)

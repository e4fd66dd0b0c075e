"""Arrays in and out of the CuPy stand-in, and copies between devices (a test double, not CuPy).

* In: `asarray`/`array` of host data is a host-to-device transfer onto the
  current device. Out: `asnumpy`/`.get()` is a device-to-host transfer and a sync.
* `asarray(a)` of a device array returns `a` itself, as CuPy does, even when
  `a` lives on another device than the current one: it moves nothing. Moving
  takes `cupy.copy(a)` or `a.copy()` under `Device(dst)`; `cupy.array(a)` from
  another device raises ValueError (stricter than CuPy, where unsure).
* A copy from another device is a peer memcpy on the current stream, allowed
  for a C-contiguous array (stricter than CuPy, which would first run a kernel
  on the source device for another layout, after any event the caller recorded:
  a race) once ordered after the source device's work: an Event the current
  stream waited on, or a host sync of the source device (see `cupy.cuda`).
  Unordered, it raises RuntimeError: on a GPU it would silently race.
"""
from __future__ import annotations

import numpy as np

from . import _state
from ._ndarray import _wrap, device_error, kernel_call, ndarray
from ._state import current, device_op, host_sync, launch


def check_ordered(src: int, dst: int, stream=None) -> None:
    """Refuse a copy src -> dst (on `stream`, default dst's current one) that nothing orders
    after device src's work."""
    from .cuda import get_current_stream
    stream = get_current_stream() if stream is None else stream
    unordered = [s for s, n in _state.pending(src).items() if stream._waited.get((src, s), 0) < n]
    if not unordered:
        return
    raise RuntimeError(
        f"copy from device {src} to device {dst} is not ordered after device {src}'s work: "
        f"record a cupy.cuda.Event on device {src}'s stream after that work and make device "
        f"{dst}'s current stream wait for it (stream.wait_event(event)), or synchronize device "
        f"{src} first. (CuPy stand-in, stricter than CuPy: on a GPU this copy would run without "
        f"waiting and could read half-written data.)")


def copy_array(a: ndarray, order: str = "C") -> ndarray:
    """`a.copy()` / `cupy.copy(a)`: onto the CURRENT device."""
    dev = current()
    src = a._a
    if a._dev == dev:
        plain = ((src.flags.c_contiguous and order in "CKA")
                 or (src.flags.f_contiguous and order in "FKA"))
        r = src.copy(order=order)
        if plain:
            device_op(dev, "memcpy")
        else:
            launch(dev)      # CuPy: a strided copy is an elementwise kernel
        return _wrap(r, dev)
    if not src.flags.c_contiguous:
        raise ValueError(
            f"copy of a non-contiguous array from device {a._dev} to device {dev}: the CuPy "
            f"stand-in only copies C-contiguous arrays between devices (a plain peer memcpy). "
            f"CuPy would first make it contiguous with a kernel on device {a._dev}, after any "
            f"event you recorded there, so nothing would order the copy after that kernel. "
            f"Make it contiguous inside cupy.cuda.Device({a._dev}) before recording the event.")
    check_ordered(a._dev, dev)
    device_op(dev, "memcpy")
    with _state._lock:
        _state.counts["peer_copy"] += 1
    return _wrap(src.copy(order=order), dev)


def copy(a, order="K"):
    if isinstance(a, np.ndarray):
        raise TypeError("cupy.copy: expected a cupy.ndarray, found a numpy.ndarray; "
                        "use cupy.asarray(x) to upload host data")
    return copy_array(a, "C" if order == "K" else order)


def _upload(obj, dtype, order) -> ndarray:
    """Host data (NumPy array, list, scalar) onto the current device: a host-to-device transfer."""
    dev = current()
    if isinstance(obj, (list, tuple)) and _holds_device_arrays(obj):
        # a list of device arrays: CuPy stacks them with a kernel on the current device
        return kernel_call(lambda x: np.array(x, dtype=dtype), (obj,), {}, "cupy.array")
    host = np.array(obj, dtype=dtype, order=order or "K", copy=True)
    device_op(dev, "h2d")
    return _wrap(host, dev)


def _holds_device_arrays(obj) -> bool:
    return any(isinstance(x, ndarray) or (isinstance(x, (list, tuple)) and _holds_device_arrays(x))
               for x in obj)


def asarray(a, dtype=None, order=None, *, blocking=False):
    """CuPy's `asarray`: a device array with the same dtype is returned as it is, even one of
    another device (moving it takes `cupy.copy` or `a.copy()` under the destination device)."""
    if isinstance(a, ndarray):
        if dtype is None or np.dtype(dtype) == a._a.dtype:
            return a
        return a.astype(dtype)      # a cast kernel on the current device
    return _upload(a, dtype, order)


asanyarray = asarray


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if ndmin:
        raise NotImplementedError("the CuPy stand-in's cupy.array does not take ndmin")
    if isinstance(obj, ndarray):
        if not copy:
            return asarray(obj, dtype)
        dev = current()
        if obj._dev != dev:
            # stricter than CuPy where unsure: CuPy's array() copies through astype, a kernel
            raise device_error(obj._dev, dev)
        r = copy_array(obj, "C" if order in ("K", "A") else order)
        return r if dtype is None or np.dtype(dtype) == r._a.dtype else r.astype(dtype, copy=False)
    return _upload(obj, dtype, None if order == "K" else order)


def ascontiguousarray(a, dtype=None):
    """`a` itself when already C-contiguous with that dtype (as CuPy); else a copy kernel."""
    if isinstance(a, np.ndarray):
        raise TypeError("cupy.ascontiguousarray: expected a cupy.ndarray, found a numpy.ndarray; "
                        "use cupy.asarray(x) to upload host data")
    if a._a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a._a.dtype):
        return a
    dev = current()
    if a._dev != dev:
        raise device_error(a._dev, dev)
    r = np.ascontiguousarray(a._a, dtype=dtype)
    launch(dev)
    return _wrap(r, dev)


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """The way out (CuPy's `asnumpy`): a device-to-host transfer and a sync for a device array."""
    if isinstance(a, ndarray):
        host_sync("asnumpy")
        r = a._a.copy(order=order)
    else:
        r = np.asarray(a, order=order)
    if out is not None:
        np.copyto(out, r)
        return out
    return r

"""New arrays of the CuPy stand-in, always on the CURRENT device (a test double, not CuPy).

What each one costs, as in CuPy: `empty` nothing, `zeros` a memset, `ones` and
`full` a fill kernel (`full(..., 0)` a memset). The `*_like` functions read
only the prototype's shape and dtype, so its device does not matter; a host
prototype is refused (stricter than CuPy): it mixes the two worlds.
"""
from __future__ import annotations

import functools

import numpy as np

from ._ndarray import _wrap, host_error, ndarray
from ._state import current, device_op, launch, refuse_in_fuse


def _allocation(fn):
    """A new array: not inside `cupy.fuse`, whose one kernel allocates nothing."""
    @functools.wraps(fn)
    def allocate(*args, **kwargs):
        refuse_in_fuse(f"cupy.{fn.__name__}")
        return fn(*args, **kwargs)
    return allocate


def _fill_cost(dev: int, value) -> None:
    if isinstance(value, (int, float, bool, complex, np.generic)) and value == 0:
        device_op(dev, "memset")
    else:
        launch(dev)


@_allocation
def empty(shape, dtype=float, order="C"):
    return _wrap(np.empty(shape, dtype, order=order), current())


@_allocation
def zeros(shape, dtype=float, order="C"):
    dev = current()
    r = _wrap(np.zeros(shape, dtype, order=order), dev)
    device_op(dev, "memset")
    return r


@_allocation
def ones(shape, dtype=float, order="C"):
    dev = current()
    r = _wrap(np.ones(shape, dtype, order=order), dev)
    launch(dev)
    return r


@_allocation
def full(shape, fill_value, dtype=None, order="C"):
    if isinstance(fill_value, ndarray):
        fill_value = fill_value.item()   # CuPy reads a 0-d fill value on the host too
    elif isinstance(fill_value, np.ndarray):
        raise host_error("cupy.full")
    dev = current()
    r = _wrap(np.full(shape, fill_value, dtype, order=order), dev)
    _fill_cost(dev, fill_value)
    return r


def _prototype(a, where: str) -> np.ndarray:
    if isinstance(a, ndarray):
        return a._a
    if isinstance(a, np.ndarray):
        raise host_error(f"{where} (stricter than CuPy: a host prototype for a device array)")
    raise TypeError(f"{where}: expected a cupy.ndarray prototype, found {type(a).__name__}")


@_allocation
def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    proto = _prototype(a, "cupy.empty_like")
    return _wrap(np.empty_like(proto, dtype, order, shape=shape), current())


@_allocation
def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    dev = current()
    r = _wrap(np.zeros_like(_prototype(a, "cupy.zeros_like"), dtype, order, shape=shape), dev)
    device_op(dev, "memset")
    return r


@_allocation
def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    dev = current()
    r = _wrap(np.ones_like(_prototype(a, "cupy.ones_like"), dtype, order, shape=shape), dev)
    launch(dev)
    return r


@_allocation
def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    if isinstance(fill_value, np.ndarray):
        raise host_error("cupy.full_like")
    dev = current()
    proto = _prototype(a, "cupy.full_like")
    r = _wrap(np.full_like(proto, fill_value, dtype, order, shape=shape), dev)
    _fill_cost(dev, fill_value)
    return r

"""A CuPy STAND-IN for the test suite: CuPy's rules on the CPU, not CuPy.

The test suite puts this package on `sys.path` as `cupy` (tests/conftest.py,
`MINIDL_TEST_CUPY=standin`) so that minidl's device path (`Device("cuda:N")`)
runs in CI without a GPU, held to the rules a real GPU would hold it to, and
stricter where unsure. Arrays are NumPy arrays that know their device:

(a) no implicit conversion to NumPy, no host array inside a device operation
    (TypeError); `.get()`/`cupy.asnumpy()` out, `cupy.asarray()`/`.set()` in;
(b) `cupy.cuda.Device(i)` contexts (per thread, default 0); new arrays on the
    current device; a kernel touching another device's array raises ValueError
    (CuPy without peer access); views keep their base's device;
(c) a copy between devices must be ordered after the source device's work by
    an Event (or a sync), else RuntimeError (see `cupy.cuda`);
(d) counters of kernels, transfers, syncs, memcpys and memsets
    (`cupy.standin.counters()`), `cupy.fuse` counted as one kernel;
(e) `cupy.random` on the current device.

tests/standin/README.md lists each rule and the CuPy behaviour it copies.
"""
from __future__ import annotations

import numpy as _np

from . import _state, cuda, lib, random, standin
from ._copy import array, asanyarray, asarray, ascontiguousarray, asnumpy, copy
from ._creation import empty, empty_like, full, full_like, ones, ones_like, zeros, zeros_like
from ._fusion import fuse
from ._ndarray import ndarray
from ._numpy_api import forward as _forward
from ._numpy_api import ufunc, where

__standin__ = True
__version__ = f"{_state.VERSIONS[_state.cupy_major]}+standin"   # MINIDL_STANDIN_CUPY

# dtypes and constants are NumPy's, as in CuPy
from numpy import (bool_, complex64, complex128, dtype, e, float16, float32,  # noqa: E402, F401
                   float64, inf, int8, int16, int32, int64, intp, nan, newaxis, pi, uint8,
                   uint16, uint32, uint64)

float_ = float64
int_ = int64


def get_array_module(*args):
    """`cupy` when any argument is a device array, else `numpy` (as CuPy)."""
    import sys
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


def get_default_memory_pool() -> cuda.MemoryPool:
    return _memory_pool


def get_default_pinned_memory_pool() -> cuda.PinnedMemoryPool:
    return _pinned_pool


_memory_pool = cuda.MemoryPool()
_pinned_pool = cuda.PinnedMemoryPool()


def __getattr__(name: str):
    """Everything else: NumPy's function under the stand-in's rules (see `_numpy_api`), cached."""
    obj = _forward(name)
    globals()[name] = obj
    return obj


__all__ = ["array", "asanyarray", "asarray", "ascontiguousarray", "asnumpy", "copy", "cuda",
           "empty", "empty_like", "full", "full_like", "fuse", "get_array_module",
           "get_default_memory_pool", "get_default_pinned_memory_pool", "lib", "ndarray", "ones",
           "ones_like", "random", "standin", "ufunc", "where", "zeros", "zeros_like"]
assert _state

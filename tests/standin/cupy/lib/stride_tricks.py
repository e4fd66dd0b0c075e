"""`cupy.lib.stride_tricks` of the CuPy stand-in (a test double, not CuPy).

`as_strided` makes a view: no kernel, the source array's device, shared memory.
"""
from __future__ import annotations

import numpy as np

from .._ndarray import host_error, ndarray


def as_strided(x, shape=None, strides=None):
    if isinstance(x, np.ndarray):
        raise host_error("cupy.lib.stride_tricks.as_strided")
    if not isinstance(x, ndarray):
        raise TypeError(f"as_strided: expected a cupy.ndarray, found {type(x).__name__}")
    return x._view(np.lib.stride_tricks.as_strided(x._a, shape=shape, strides=strides))

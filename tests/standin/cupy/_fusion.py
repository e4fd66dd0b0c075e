"""`cupy.fuse` of the CuPy stand-in (a test double, not CuPy).

CuPy compiles a fused function into ONE elementwise kernel. The stand-in runs
the function as plain Python, with the usual device and host checks, but
counts the whole call as one kernel launch on the current device (counting is
suspended inside). A host sync inside it is refused: a kernel cannot hand a
value to the host.
"""
from __future__ import annotations

import functools

from . import _state
from ._ndarray import ndarray


class Fusion:
    def __init__(self, func, kernel_name=None):
        functools.update_wrapper(self, func)
        self.func = func
        self.name = kernel_name or func.__name__

    def __call__(self, *args):
        tls = _state._tls
        tls.fuse = getattr(tls, "fuse", 0) + 1
        try:
            r = self.func(*args)
        finally:
            tls.fuse -= 1
        on_device = any(isinstance(x, ndarray) for x in args) or isinstance(r, ndarray)
        if on_device and not tls.fuse:
            _state.launch(_state.current())
        return r

    def __repr__(self):
        return f"<Fusion '{self.name}' (CuPy stand-in)>"


def fuse(*args, **kwargs):
    """`@cupy.fuse` or `@cupy.fuse(kernel_name=...)`."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return Fusion(args[0])
    return lambda func: Fusion(func, **kwargs)

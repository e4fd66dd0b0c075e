"""Pooling on the CPU: the plain loops of pool_kernels.py, compiled by numba.

The plain path (minidl/functions/pool.py) makes K*K passes over whole arrays,
and max-pooling's gradient four per window offset. Here every output value
is computed in one pass over its window, and max-pooling records each
window's winner, so its backward pass is one scatter of g. The loops run on
x's memory seen as planes (layout.py's `planes`): (N*C, H, W, 1) for NCHW,
(C, H, W, N) for the CHWN output of a fast convolution, where the innermost
loop runs along N contiguous images (vector instructions). Outputs keep x's
layout. The planes are split over minidl's threads (the loops release the GIL).

Without numba (or with MINIDL_NUMBA=0, or Plan(compiled_pooling=False)),
pooling runs the plain path.
"""
from __future__ import annotations

import importlib
import warnings

import numpy as np

from .layout import is_chwn, planes
from .parallel import parallel_for

_kernels = None             # pool_kernels, once loaded; False: unavailable


def load_compiled_kernels(import_module=importlib.import_module,
                          name="minidl.cpu.pool_kernels", what="pooling"):
    """Import a module of numba loops (numba compiles on first call), or None:
    silently when numba is not installed, with a warning when it is but
    cannot load. `what` names the op in the warning."""
    try:
        return import_module(name)
    except ModuleNotFoundError as e:        # numba not installed: the plain path
        if e.name != "numba":
            raise
    except Exception as e:          # noqa: BLE001  numba there but unusable (NumPy too new...)
        warnings.warn(f"minidl: {what}'s compiled loops are unavailable ({type(e).__name__}: "
                      f"{e}); {what} runs the NumPy path, slower. Reinstall numba, "
                      "or set MINIDL_NUMBA=0 to silence this", RuntimeWarning, stacklevel=4)
    return None


def compiled_kernels(plan):
    """The module of compiled loops, or None (no plan, turned off, numba unavailable)."""
    global _kernels
    if plan is None or not plan.compiled_pooling:
        return None
    if _kernels is None:
        _kernels = load_compiled_kernels() or False
    return _kernels or None


def _by_planes(kernels, name, plan, *args):
    """The compiled kernel `name`_lanes (planes of T > 1 images) or `name`_plain
    (T = 1, the planes passed as (B, H, W)) over ranges of planes, one range per
    thread: args of shape (B, h, w, T) are cut, the others passed whole."""
    T = args[0].shape[3]
    planar = [isinstance(a, np.ndarray) and a.ndim == 4 for a in args]
    if T == 1:
        args = [a[..., 0] if p else a for a, p in zip(args, planar)]
    kernel = getattr(kernels, name + ("_plain" if T == 1 else "_lanes"))
    parallel_for(lambda b0, b1: kernel(*(a[b0:b1] if p else a for a, p in zip(args, planar))),
                 args[0].shape[0], threads=plan.threads)


class Pool2d:
    """One max- or average-pooling call: forward, then backward, on planes.

    `inv` (avg only): (OH, OW) array of 1 / (elements inside each window).
    Keeps the planes' shape and layout, and for max each window's winner.
    """

    def __init__(self, kernels, plan, kind, kernel, stride):
        self.kernels, self.plan, self.kind = kernels, plan, kind
        self.K, self.S = kernel, stride

    def forward(self, x, OH, OW, inv=None):
        self.chwn = is_chwn(x)
        x4, self.back = planes(x, self.chwn)               # (B, H, W, T)
        self.x_shape, self.inv = x4.shape, inv
        y4 = np.empty((x4.shape[0], OH, OW, x4.shape[3]), x.dtype)
        if self.kind == "max":
            self.argmax = np.empty(y4.shape, self.kernels.argmax_dtype(self.K))
            _by_planes(self.kernels, "max_pool_forward", self.plan, x4, y4, self.argmax,
                       self.K, self.S)
        else:
            _by_planes(self.kernels, "avg_pool_forward", self.plan, x4, y4, inv, self.K, self.S)
        return self.back(y4)

    def backward(self, g):
        g4 = planes(g, chwn=self.chwn)[0]                  # as y was laid out
        dx4 = np.empty(self.x_shape, g.dtype)
        if self.kind == "max":
            _by_planes(self.kernels, "max_pool_backward", self.plan, g4, self.argmax, dx4,
                       self.K, self.S)
        else:
            _by_planes(self.kernels, "avg_pool_backward", self.plan, g4, self.inv, dx4,
                       self.K, self.S)
        return self.back(dx4)

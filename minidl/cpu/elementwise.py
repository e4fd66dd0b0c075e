"""ReLU and tanh on the CPU: the same formulas, split over minidl's threads.

An activation of the paper's net at batch 128 is tens of MB: one NumPy call
on it runs on one core. Here the array's memory is cut into ranges, one per
thread (parallel.py), when every array involved has x's layout (NCHW, or
CHWN under an NCHW view: layout.py); otherwise one call on the whole arrays.
Outputs keep x's layout. Below `plan.elementwise_grain` elements a thread is
not worth its hand-off.
"""
from __future__ import annotations

import numpy as np

from .parallel import parallel_for


def _flat(a):
    """a's memory as a 1-D view, for an array that is some transpose of a
    C-contiguous one (NCHW, or CHWN under an NCHW view); else None."""
    order = sorted(range(a.ndim), key=lambda i: -a.strides[i])
    v = a.transpose(order)
    return v.reshape(-1) if v.flags.c_contiguous else None


def _elementwise(kernel, plan, x, *others, out=None):
    """out = kernel(out, x, *others) elementwise, over ranges of memory on the
    threads; out (new unless given) is laid out as x."""
    out = np.empty_like(x, dtype=np.result_type(x, *others)) if out is None else out
    arrays = (out, x) + others
    flats = [_flat(a) for a in arrays]
    if any(f is None for f in flats) or any(a.strides != x.strides or a.dtype != x.dtype
                                            for a in arrays):
        kernel(out, x, *others)
        return out
    parallel_for(lambda i0, i1: kernel(*(f[i0:i1] for f in flats)), x.size,
                 grain=plan.elementwise_grain, threads=plan.threads)
    return out


def _relu(out, x):
    np.maximum(x, 0, out=out)


def _relu_grad(out, g, y):
    np.multiply(g, y > 0, out=out)


def _tanh(out, x):
    np.tanh(x, out=out)


def _tanh_grad(out, g, y):                   # g * (1 - y^2), no temporaries
    np.multiply(y, y, out=out)
    np.subtract(1, out, out=out)
    out *= g


def relu(x, plan, out=None):
    """max(0, x), written to `out` (x itself for in-place) or a new array."""
    return _elementwise(_relu, plan, x, out=out)


def relu_grad(g, y, plan):
    """g * [y > 0]."""
    return _elementwise(_relu_grad, plan, g, y)


def tanh(x, plan):
    return _elementwise(_tanh, plan, x)


def tanh_grad(g, y, plan):
    """g * (1 - y^2)."""
    return _elementwise(_tanh_grad, plan, g, y)

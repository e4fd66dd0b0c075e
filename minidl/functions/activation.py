"""Nonlinearities. Section 3.1: ReLU, f(x) = max(0, x), trains several times
faster than the saturating tanh(x) (Figure 1)."""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import array_module
from ..parallel import parallel_for

_GRAIN = 1 << 16    # elements: smaller arrays are not worth a thread


def _flat(a):
    """a's memory as a 1-D view, for an array that is some transpose of a
    C-contiguous one (NCHW, or CHWN under an NCHW view); else None."""
    order = sorted(range(a.ndim), key=lambda i: -a.strides[i])
    v = a.transpose(order)
    return v.reshape(-1) if v.flags.c_contiguous else None


def _elementwise(kernel, x, *others, out=None):
    """out = kernel(xp, out, x, *others) elementwise; out (new unless given) is
    laid out as x, of the dtype NumPy would give x op others. Split over minidl's threads in ranges of memory when every
    array has x's layout (parallel.py); else one call on the whole arrays."""
    xp = array_module(x)
    out = xp.empty_like(x, dtype=xp.result_type(x, *others)) if out is None else out
    arrays = (out, x) + others
    flats = [_flat(a) for a in arrays] if xp is np else [None]
    if any(f is None for f in flats) or any(a.strides != x.strides or a.dtype != x.dtype
                                            for a in arrays):
        kernel(xp, out, x, *others)
        return out
    parallel_for(lambda i0, i1: kernel(xp, *(f[i0:i1] for f in flats)), x.size, grain=_GRAIN)
    return out


def _relu(xp, out, x):
    xp.maximum(x, 0, out=out)


def _relu_grad(xp, out, g, y):
    xp.multiply(g, y > 0, out=out)


def _tanh(xp, out, x):
    xp.tanh(x, out=out)


def _tanh_grad(xp, out, g, y):               # g * (1 - y^2), no temporaries
    xp.multiply(y, y, out=out)
    xp.subtract(1, out, out=out)
    out *= g


class ReLU(Function):
    """y = max(0, x);  dx = g * [y > 0]. Keeps y (the next layer's input anyway).

    With ``inplace=True``, y is written over x's array: no new activation-sized
    array (and, on a fresh one, no page faults). Only for an x that nothing
    else reads, such as the output of a conv layer that feeds only its ReLU
    (conv backward does not need its output).
    """

    def __init__(self, inplace=False):
        self.inplace = inplace

    def forward(self, x):
        self.y = _elementwise(_relu, x, out=x if self.inplace else None)
        return self.y

    def backward(self, g):
        return _elementwise(_relu_grad, g, self.y)


class Tanh(Function):
    """y = tanh(x);  dx = g * (1 - y^2)."""

    def forward(self, x):
        self.y = _elementwise(_tanh, x)
        return self.y

    def backward(self, g):
        return _elementwise(_tanh_grad, g, self.y)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dx = g * y * (1 - y)."""

    def forward(self, x):
        xp = array_module(x)
        self.y = 0.5 * (xp.tanh(0.5 * x) + 1)  # stable for large |x|
        return self.y

    def backward(self, g):
        return g * self.y * (1 - self.y)


def relu(x, inplace=False):
    return ReLU(inplace)(x)


def tanh(x):
    return Tanh()(x)


def sigmoid(x):
    return Sigmoid()(x)

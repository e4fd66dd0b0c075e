"""Arithmetic, reductions and shape ops.

Binary ops broadcast as NumPy does; their backward sums the gradient back
to each input's shape (`sum_to`).
"""
from __future__ import annotations

import builtins

import numpy as np

from ..autograd import Function
from ..backend import array_module


def sum_to(g, shape):
    """Sum `g` over the axes that broadcasting added or stretched to reach `shape`."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape)
                                      if n == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        return sum_to(g, self.shapes[0]), sum_to(g, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        return sum_to(g, self.shapes[0]), sum_to(-g, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        da = sum_to(g * self.b, self.a.shape) if self.needs_input_grad[0] else None
        db = sum_to(g * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return da, db


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        gb = g / self.b
        da = sum_to(gb, self.a.shape) if self.needs_input_grad[0] else None
        db = sum_to(-gb * self.a / self.b, self.b.shape) if self.needs_input_grad[1] else None
        return da, db


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Power(Function):
    """a ** p for a constant exponent p."""

    def __init__(self, p):
        self.p = p

    def forward(self, a):
        self.a = a
        return a ** self.p

    def backward(self, g):
        return g * self.p * self.a ** (self.p - 1)


class Exp(Function):
    def forward(self, a):
        self.y = array_module(a).exp(a)
        return self.y

    def backward(self, g):
        return g * self.y


class Log(Function):
    def forward(self, a):
        self.a = a
        return array_module(a).log(a)

    def backward(self, g):
        return g / self.a


class MatMul(Function):
    """a @ b for 2-D a (M, K) and b (K, N)."""

    def forward(self, a, b):
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul: expected (M, K) @ (K, N), found {a.shape} @ {b.shape}")
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        da = g @ self.b.T if self.needs_input_grad[0] else None
        db = self.a.T @ g if self.needs_input_grad[1] else None
        return da, db


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        self.shape = a.shape
        return a.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, g):
        xp = array_module(g)
        if self.axis is not None and not self.keepdims:
            axes = (self.axis,) if np.isscalar(self.axis) else self.axis
            g = xp.expand_dims(g, tuple(a % len(self.shape) for a in axes))
        return xp.broadcast_to(g, self.shape).copy()


class Reshape(Function):
    def __init__(self, shape):
        self.shape = tuple(shape) if not np.isscalar(shape) else (shape,)

    def forward(self, a):
        self.in_shape = a.shape
        return a.reshape(self.shape)

    def backward(self, g):
        return g.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes=None):
        self.axes = None if axes is None else tuple(axes)

    def forward(self, a):
        return a.transpose(self.axes)

    def backward(self, g):
        if self.axes is None:
            return g.transpose()
        return g.transpose(tuple(np.argsort(self.axes)))


class Concat(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *arrays):
        self.sizes = [a.shape[self.axis] for a in arrays]
        return array_module(arrays[0]).concatenate(arrays, axis=self.axis)

    def backward(self, g):
        xp = array_module(g)
        return tuple(xp.split(g, np.cumsum(self.sizes)[:-1].tolist(), axis=self.axis))


class Split(Function):
    """Split along `axis` into pieces of the given sizes (a list) or n equal parts (an int)."""

    def __init__(self, sections, axis):
        self.sections, self.axis = sections, axis

    def forward(self, a):
        n = a.shape[self.axis]
        if isinstance(self.sections, int):
            if n % self.sections:
                raise ValueError(f"split: axis {self.axis} of size {n} does not divide into "
                                 f"{self.sections} equal parts")
            sizes = [n // self.sections] * self.sections
        else:
            sizes = list(self.sections)
            if builtins.sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} add up to {builtins.sum(sizes)}, "
                                 f"but axis {self.axis} has {n}")
        self.sizes = sizes
        return tuple(array_module(a).split(a, np.cumsum(sizes)[:-1].tolist(), axis=self.axis))

    def backward(self, *gs):
        return array_module(gs[0]).concatenate(gs, axis=self.axis)


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, a):
        self.shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    def backward(self, g):
        xp = array_module(g)
        gx = xp.zeros(self.shape, self.dtype)
        xp.add.at(gx, self.index, g)
        return gx


def add(a, b):
    return Add()(a, b)


def sub(a, b):
    return Sub()(a, b)


def mul(a, b):
    return Mul()(a, b)


def div(a, b):
    return Div()(a, b)


def neg(a):
    return Neg()(a)


def power(a, p):
    return Power(p)(a)


def exp(a):
    return Exp()(a)


def log(a):
    return Log()(a)


def matmul(a, b):
    return MatMul()(a, b)


def sum(a, axis=None, keepdims=False):  # noqa: A001  (mirrors numpy)
    return Sum(axis, keepdims)(a)


def mean(a, axis=None, keepdims=False):
    shape = a.shape
    if axis is None:
        n = int(np.prod(shape))
    else:
        axes = (axis,) if np.isscalar(axis) else axis
        n = int(np.prod([shape[i] for i in axes]))
    return Sum(axis, keepdims)(a) * (1.0 / n)


def reshape(a, shape):
    return Reshape(shape)(a)


def flatten(a):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""
    return Reshape((a.shape[0], -1))(a)


def transpose(a, axes=None):
    return Transpose(axes)(a)


def concat(tensors, axis=0):
    return Concat(axis)(*tensors)


def split(a, sections, axis=0):
    return Split(sections, axis)(a)


def getitem(a, index):
    return GetItem(index)(a)

"""Nonlinearities. Section 3.1: ReLU, f(x) = max(0, x), trains several times
faster than the saturating tanh(x) (Figure 1)."""
from __future__ import annotations

from ..autograd import Function
from ..backend import array_module


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
        self.y = array_module(x).maximum(x, 0, out=x if self.inplace else None)
        return self.y

    def backward(self, g):
        return g * (self.y > 0)


class Tanh(Function):
    """y = tanh(x);  dx = g * (1 - y^2)."""

    def forward(self, x):
        self.y = array_module(x).tanh(x)
        return self.y

    def backward(self, g):
        return g * (1 - self.y * self.y)


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

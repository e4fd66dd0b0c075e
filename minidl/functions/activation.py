"""Nonlinearities. Section 3.1: ReLU, f(x) = max(0, x), trains several times
faster than the saturating tanh(x) (Figure 1).

On NumPy with the CPU fast path on, ReLU and tanh run the same formulas split
over threads (minidl/cpu/elementwise.py).
"""
from __future__ import annotations

from .. import cpu
from ..autograd import Function
from ..backend import array_module
from ..cpu import elementwise as cpu_elementwise
from .elementwise import fused


@fused
def _relu_grad(g, y):
    return g * (y > 0)


@fused
def _tanh_grad(g, y):
    return g * (1 - y * y)


class ReLU(Function):
    """y = max(0, x);  dx = g * [y > 0]. Keeps y (the next layer's input anyway).

    With ``inplace=True``, y is written over x's array: no new activation-sized
    array. Only for an x that nothing else reads, such as the output of a conv
    layer that feeds only its ReLU (conv backward does not need its output).
    """

    def __init__(self, inplace=False):
        self.inplace = inplace

    def forward(self, x):
        xp, out = array_module(x), (x if self.inplace else None)
        plan = cpu.plan_for(xp)
        self.y = xp.maximum(x, 0, out=out) if plan is None else cpu_elementwise.relu(x, plan, out)
        return self.y

    def backward(self, g):
        plan = cpu.plan_for(array_module(g))
        return _relu_grad(g, self.y) if plan is None else cpu_elementwise.relu_grad(g, self.y, plan)


class Tanh(Function):
    """y = tanh(x);  dx = g * (1 - y^2)."""

    def forward(self, x):
        xp = array_module(x)
        plan = cpu.plan_for(xp)
        self.y = xp.tanh(x) if plan is None else cpu_elementwise.tanh(x, plan)
        return self.y

    def backward(self, g):
        plan = cpu.plan_for(array_module(g))
        return _tanh_grad(g, self.y) if plan is None else cpu_elementwise.tanh_grad(g, self.y, plan)


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

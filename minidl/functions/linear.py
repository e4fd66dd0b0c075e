"""Fully connected layer: y = x W^T + b (fc6, fc7, fc8 of Section 3.5).

On NumPy with the CPU fast path on, the products are split over threads
(minidl/cpu/linear.py).
"""
from __future__ import annotations

from .. import cpu
from ..autograd import Function
from ..backend import array_module
from ..cpu import linear as cpu_linear


class Linear(Function):
    """y = x @ W.T + b.

    Shapes:
        x: (N, in_features)   W: (out_features, in_features)   b: (out_features,)
        y: (N, out_features)
    Backward:
        dx = g @ W    dW = g.T @ x    db = sum_n g
    """

    def forward(self, x, W, b=None):
        if x.ndim != 2 or W.ndim != 2 or x.shape[1] != W.shape[1]:
            raise ValueError(f"linear: expected x of shape (N, {W.shape[-1]}) for W of shape "
                             f"{W.shape} (out_features, in_features); found x {x.shape}. "
                             "Flatten x first, or check the layer's in_features.")
        if b is not None and b.shape != (W.shape[0],):
            raise ValueError(f"linear: expected bias of shape ({W.shape[0]},), found {b.shape}")
        if x.dtype.kind != "f":
            raise ValueError(f"linear: expected a floating-point input, found {x.dtype}; "
                             "convert with x.astype(numpy.float32)")
        self.x, self.W = x, W
        self.plan = cpu.plan_for(array_module(x))
        if self.plan is not None:
            return cpu_linear.forward(x, W, b, self.plan)
        y = x @ W.T
        return y if b is None else y + b

    def backward(self, g):
        x, W, plan = self.x, self.W, self.plan
        dx = dW = None
        if self.needs_input_grad[0]:
            dx = g @ W if plan is None else cpu_linear.grad_x(g, x, W, plan)
        if self.needs_input_grad[1]:
            dW = g.T @ x if plan is None else cpu_linear.grad_W(g, x, W, plan)
        if len(self.needs_input_grad) == 3:
            return dx, dW, (g.sum(axis=0) if self.needs_input_grad[2] else None)
        return dx, dW


def linear(x, W, b=None):
    return Linear()(x, W) if b is None else Linear()(x, W, b)

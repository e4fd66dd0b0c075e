"""Fully connected layer: y = x W^T + b (fc6, fc7, fc8 of Section 3.5)."""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import array_module
from ..parallel import parallel_for


_MIN_FLOPS = 1 << 24     # smaller products run in one thread (not worth the hand-off)


def _split(fn, n, x, W):
    """fn(i0, i1) over ranges of 0..n, split over minidl's threads (parallel.py)
    when the product x @ W.T is big enough to gain from it."""
    big = 2 * x.shape[0] * W.shape[0] * W.shape[1] >= _MIN_FLOPS
    parallel_for(fn, n, enabled=big and array_module(x) is np)


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
        xp = array_module(x)
        y = xp.empty((x.shape[0], W.shape[0]), xp.result_type(x, W))

        def rows(i0, i1):                        # y = x @ W.T (+ b), rows i0..i1
            xp.matmul(x[i0:i1], W.T, out=y[i0:i1])
            if b is not None:
                y[i0:i1] += b
        _split(rows, x.shape[0], x, W)
        return y

    def backward(self, g):
        x, W = self.x, self.W
        xp = array_module(g)
        dx = dW = None
        if self.needs_input_grad[0]:             # dx = g @ W, rows of the batch
            dx = xp.empty(x.shape, xp.result_type(g, W))
            _split(lambda i0, i1: xp.matmul(g[i0:i1], W, out=dx[i0:i1]), x.shape[0], x, W)
        if self.needs_input_grad[1]:             # dW = g.T @ x, rows of W (its outputs)
            dW = xp.empty(W.shape, xp.result_type(g, x))
            _split(lambda o0, o1: xp.matmul(g[:, o0:o1].T, x, out=dW[o0:o1]), W.shape[0], x, W)
        if len(self.needs_input_grad) == 3:
            return dx, dW, (g.sum(axis=0) if self.needs_input_grad[2] else None)
        return dx, dW


def linear(x, W, b=None):
    return Linear()(x, W) if b is None else Linear()(x, W, b)

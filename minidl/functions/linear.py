"""Fully connected layer: y = x W^T + b (fc6, fc7, fc8 of Section 3.5)."""
from __future__ import annotations

from ..autograd import Function


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
        y = x @ W.T
        if b is not None:
            y += b
        return y

    def backward(self, g):
        dx = g @ self.W if self.needs_input_grad[0] else None
        dW = g.T @ self.x if self.needs_input_grad[1] else None
        if len(self.needs_input_grad) == 3:
            return dx, dW, (g.sum(axis=0) if self.needs_input_grad[2] else None)
        return dx, dW


def linear(x, W, b=None):
    return Linear()(x, W) if b is None else Linear()(x, W, b)

"""Max and average pooling over K x K windows moved with stride S.

Section 3.4 (overlapping pooling): "a pooling layer can be thought of as
consisting of a grid of pooling units spaced s pixels apart, each summarizing
a neighborhood of size z x z". The paper uses z=3, s=2 (overlapping) and
reports it lowers the error by 0.4% / 0.3% against z=2, s=2.

Notation: x (N, C, H, W) -> y (N, C, OH, OW); K the kernel, S the stride.

    ceil_mode=False:  OH = floor((H - K) / S) + 1   (PyTorch's default; AlexNet:
                      55 -> 27, 27 -> 13, 13 -> 6 with 3/2)
    ceil_mode=True:   OH = ceil((H - K) / S) + 1, the last windows clipped at the
                      bottom/right edge, as cuda-convnet (and Caffe) pool: its
                      CIFAR-10 net `layers-80sec` pools 32 -> 16 with 3/2.
                      A window must start inside the input (as in PyTorch).

How it is computed (no im2col, no argmax): the window element at offset
(di, dj) of every output pixel is one strided slice of x,

    x[:, :, di : di + S*(OH-1) + 1 : S,  dj : dj + S*(OW-1) + 1 : S]  # (N, C, OH, OW)

so max-pooling is K*K `maximum`s of such slices into y, and average pooling
K*K additions, over the whole batch. Backward walks the same K*K slices: for
max, an element gets the gradient where its slice equals y and no earlier
element of the window took it (the mask is rebuilt: nothing is kept but x
and y); for average, every element gets g / (window size). In ceil mode an
offset's slice is shorter by one row/column where the last windows are
clipped; it then covers only the top-left block y[:, :, :oh, :ow].

On NumPy with the CPU fast path on, compiled loops run instead (one pass per
window, max-pooling's winner recorded: minidl/cpu/pool.py).
"""
from __future__ import annotations

import numpy as np

from .. import cpu
from ..autograd import Function
from ..backend import array_module
from ..cpu import pool as cpu_pool
from .checks import check_images
from .elementwise import fused


def pool_output_size(size, kernel, stride, ceil_mode=False):
    """Number of windows along one axis of `size` elements (see the module docstring)."""
    if ceil_mode:
        out = -(-(size - kernel) // stride) + 1
        if (out - 1) * stride >= size:  # the last window would start past the edge
            out -= 1
        return out
    return (size - kernel) // stride + 1


def _check_args(name, kernel, stride):
    for what, v in (("kernel", kernel), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}: expected {what} to be a positive int, found "
                             f"{type(v).__name__} {v!r}; pass e.g. kernel=3, stride=2")
        if v <= 0:
            raise ValueError(f"{name}: expected {what} > 0, found {what}={v}; "
                             "the paper pools with kernel=3, stride=2")


def _check_input(name, x, kernel):
    check_images(name, x)
    H, W = x.shape[2:]
    if kernel > H or kernel > W:
        raise ValueError(f"{name}: kernel {kernel}x{kernel} is larger than the input "
                         f"{H}x{W} (x of shape {tuple(x.shape)}); use a smaller kernel or "
                         "pool an earlier, larger feature map")


def _offsets(H, W, OH, OW, K, S):
    """For each kernel offset (di, dj), in scan order: the output block (oh, ow)
    it reaches and the rows, cols of the input it reads there: x[:, :, rows,
    cols] is (N, C, oh, ow). oh = OH except in ceil mode, where the last window
    may stop short of row di."""
    out = []
    for di in range(K):
        oh = min(OH, (H - 1 - di) // S + 1)   # windows whose row di is inside x
        for dj in range(K):
            ow = min(OW, (W - 1 - dj) // S + 1)
            out.append((oh, ow, slice(di, di + S * (oh - 1) + 1, S),
                        slice(dj, dj + S * (ow - 1) + 1, S)))
    return out


@fused
def _taken(left, x_slice, y_block):
    """The gradient an element takes: what its window has left where it holds the max."""
    return left * (x_slice == y_block)


class _Pool2d(Function):
    name = "pool2d"
    kind = ""

    def __init__(self, kernel=3, stride=2, ceil_mode=False):
        _check_args(self.name, kernel, stride)
        self.kernel, self.stride, self.ceil_mode = int(kernel), int(stride), bool(ceil_mode)
        self.fast = None

    def _sizes(self, x):
        _check_input(self.name, x, self.kernel)
        H, W = x.shape[2:]
        OH = pool_output_size(H, self.kernel, self.stride, self.ceil_mode)
        OW = pool_output_size(W, self.kernel, self.stride, self.ceil_mode)
        return H, W, OH, OW

    def _fast(self, x):
        """The CPU fast path's pooling for x, or None (plain path)."""
        plan = cpu.plan_for(array_module(x))
        kernels = cpu_pool.compiled_kernels(plan)
        return None if kernels is None else cpu_pool.Pool2d(kernels, plan, self.kind,
                                                            self.kernel, self.stride)


class MaxPool2d(_Pool2d):
    """y[n, c, i, j] = max of x[n, c, S*i : S*i+K, S*j : S*j+K] (clipped at the edge).

    Gradient: each window's g goes to ONE element, the first maximum in scan
    order (top-most row first, then left-most), as PyTorch's CPU pooling
    does; an element that is the maximum of several overlapping windows
    collects all their gradients. Keeps x and y for backward.
    """
    name, kind = "max_pool2d", "max"

    def forward(self, x):
        xp = array_module(x)
        H, W, OH, OW = self._sizes(x)
        self.fast = self._fast(x)
        if self.fast is not None:
            return self.fast.forward(x, OH, OW)
        self.offsets = _offsets(H, W, OH, OW, self.kernel, self.stride)
        (_, _, rows, cols), *rest = self.offsets
        y = x[:, :, rows, cols].copy()                   # offset (0, 0): in every window
        for oh, ow, rows, cols in rest:
            block = y[:, :, :oh, :ow]
            xp.maximum(block, x[:, :, rows, cols], out=block)
        if self.needs_input_grad[0]:
            self.x, self.y = x, y
        return y

    def backward(self, g):
        if self.fast is not None:
            return self.fast.backward(g)
        xp, x, y = array_module(g), self.x, self.y
        left = xp.array(g, copy=True)              # the gradient no element has taken yet
        dx = xp.zeros(x.shape, g.dtype)
        for oh, ow, rows, cols in self.offsets:
            lft = left[:, :, :oh, :ow]
            take = _taken(lft, x[:, :, rows, cols], y[:, :, :oh, :ow])
            dx[:, :, rows, cols] += take
            lft -= take                            # exactly 0 where taken: ties get g once
        return dx


class AvgPool2d(_Pool2d):
    """y[n, c, i, j] = mean of x[n, c, S*i : S*i+K, S*j : S*j+K].

    In ceil mode a window clipped at the edge is averaged over the elements
    actually inside it (as cuda-convnet does), not over K*K.
    """
    name, kind = "avg_pool2d", "avg"

    def _inverse_counts(self, H, W, OH, OW):
        """1 / (elements inside each window), an (OH, OW) NumPy array (host sizes only)."""
        K, S = self.kernel, self.stride
        rows = np.minimum(np.arange(OH) * S + K, H) - np.arange(OH) * S   # (OH,)
        cols = np.minimum(np.arange(OW) * S + K, W) - np.arange(OW) * S   # (OW,)
        return 1.0 / np.outer(rows, cols)

    def forward(self, x):
        xp = array_module(x)
        H, W, OH, OW = self._sizes(x)
        inv = self._inverse_counts(H, W, OH, OW).astype(x.dtype)
        self.fast = self._fast(x)
        if self.fast is not None:
            return self.fast.forward(x, OH, OW, inv)
        self.offsets, self.x_shape = _offsets(H, W, OH, OW, self.kernel, self.stride), x.shape
        self.inv = xp.asarray(inv)                 # (OH, OW), uploaded once per call
        (_, _, rows, cols), *rest = self.offsets
        y = x[:, :, rows, cols].copy()
        for oh, ow, rows, cols in rest:
            y[:, :, :oh, :ow] += x[:, :, rows, cols]
        y *= self.inv
        return y

    def backward(self, g):
        if self.fast is not None:
            return self.fast.backward(g)
        xp = array_module(g)
        share = g * self.inv                       # each element's part of its window's g
        dx = xp.zeros(self.x_shape, g.dtype)
        for oh, ow, rows, cols in self.offsets:
            dx[:, :, rows, cols] += share[:, :, :oh, :ow]
        return dx


def max_pool2d(x, kernel=3, stride=2, ceil_mode=False):
    """Max-pooling over kernel x kernel windows with `stride` (Section 3.4: 3, 2).

    Args:
        x: (N, C, H, W) Tensor.
        kernel, stride: positive ints; kernel <= H, W.
        ceil_mode: round the output size up, clipping the last windows (cuda-convnet).
    Returns:
        (N, C, OH, OW) Tensor. Ties: the gradient goes to the first maximum of
        the window in scan order (see `MaxPool2d`).
    """
    return MaxPool2d(kernel, stride, ceil_mode)(x)


def avg_pool2d(x, kernel=3, stride=2, ceil_mode=False):
    """Average pooling; a window clipped by ceil_mode averages what is inside it.

    Args and returns as `max_pool2d`.
    """
    return AvgPool2d(kernel, stride, ceil_mode)(x)

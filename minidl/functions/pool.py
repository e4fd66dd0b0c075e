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
K*K additions. Backward walks the same K*K slices: for max, an element gets
the gradient where its slice equals y (the mask is rebuilt, nothing is kept
but x and y); for average, every element gets g / (window size). In ceil mode
an offset's slice is shorter by one row/column where the last windows are
clipped; it then covers only the top-left block y[:, :, :oh, :ow].

This is ~5x faster in NumPy than building the windows and taking argmax.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import array_module


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
    if x.ndim != 4:
        raise ValueError(f"{name}: expected x of shape (N, C, H, W), found shape "
                         f"{tuple(x.shape)} ({x.ndim} axes); add the missing axes, e.g. "
                         "x.reshape(1, C, H, W) for one image")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected a floating-point array, found dtype {x.dtype}; "
                         "convert first, e.g. x.astype('float32')")
    H, W = x.shape[2:]
    if kernel > H or kernel > W:
        raise ValueError(f"{name}: kernel {kernel}x{kernel} is larger than the input "
                         f"{H}x{W} (x of shape {tuple(x.shape)}); use a smaller kernel or "
                         "pool an earlier, larger feature map")


def _offsets(H, W, OH, OW, K, S):
    """For each kernel offset (di, dj): the output block (oh, ow) it reaches and
    the index of the input slice it reads, x[idx] of shape (N, C, oh, ow).

    oh = OH except in ceil mode, where the last window may stop short of di.
    """
    for di in range(K):
        oh = min(OH, (H - 1 - di) // S + 1)   # windows whose row di is inside x
        for dj in range(K):
            ow = min(OW, (W - 1 - dj) // S + 1)
            idx = (slice(None), slice(None),
                   slice(di, di + S * (oh - 1) + 1, S), slice(dj, dj + S * (ow - 1) + 1, S))
            yield oh, ow, idx


class _Pool2d(Function):
    name = "pool2d"

    def __init__(self, kernel=3, stride=2, ceil_mode=False):
        _check_args(self.name, kernel, stride)
        self.kernel, self.stride, self.ceil_mode = int(kernel), int(stride), bool(ceil_mode)

    def _sizes(self, x):
        _check_input(self.name, x, self.kernel)
        H, W = x.shape[2:]
        OH = pool_output_size(H, self.kernel, self.stride, self.ceil_mode)
        OW = pool_output_size(W, self.kernel, self.stride, self.ceil_mode)
        return H, W, OH, OW


class MaxPool2d(_Pool2d):
    """y[n, c, i, j] = max of x[n, c, S*i : S*i+K, S*j : S*j+K] (clipped at the edge).

    Gradient: each window's g goes to ONE element, the first maximum in scan
    order (top-most row first, then left-most), as PyTorch's CPU pooling
    does; an element that is the maximum of several overlapping windows
    collects all their gradients. Keeps x and y for backward (both are
    referenced by neighbouring layers anyway).
    """
    name = "max_pool2d"

    def forward(self, x):
        xp = array_module(x)
        H, W, OH, OW = self._sizes(x)
        y = xp.empty(x.shape[:2] + (OH, OW), dtype=x.dtype)  # (N, C, OH, OW)
        offsets = _offsets(H, W, OH, OW, self.kernel, self.stride)
        _, _, idx = next(offsets)          # offset (0, 0) reaches every window
        y[...] = x[idx]
        for oh, ow, idx in offsets:
            block = y[:, :, :oh, :ow]
            xp.maximum(block, x[idx], out=block)
        if self.needs_input_grad[0]:
            self.x, self.y = x, y
        return y

    def backward(self, g):
        xp = array_module(g)
        x, y = self.x, self.y
        H, W, OH, OW = self._sizes(x)
        dx = xp.zeros_like(x)
        left = g.copy()                     # the gradient no element has taken yet
        hit = xp.empty(g.shape, dtype=bool)
        part = xp.empty_like(g)
        offsets = list(_offsets(H, W, OH, OW, self.kernel, self.stride))
        for k, (oh, ow, idx) in enumerate(offsets):
            block = (slice(None), slice(None), slice(0, oh), slice(0, ow))
            h, p, lft = hit[block], part[block], left[block]
            xp.equal(x[idx], y[block], out=h)   # this offset holds its window's max
            xp.multiply(lft, h, out=p)          # ... and takes g if nobody did before
            dx[idx] += p
            if k + 1 < len(offsets):
                lft -= p                        # exactly 0 where taken: ties get g once
        return dx


class AvgPool2d(_Pool2d):
    """y[n, c, i, j] = mean of x[n, c, S*i : S*i+K, S*j : S*j+K].

    In ceil mode a window clipped at the edge is averaged over the elements
    actually inside it (as cuda-convnet does), not over K*K.
    """
    name = "avg_pool2d"

    def _counts(self, xp, H, W, OH, OW, dtype):
        """Elements inside each window: K*K, or an (OH, OW) array when clipped."""
        K, S = self.kernel, self.stride
        rows = np.minimum(np.arange(OH) * S + K, H) - np.arange(OH) * S   # (OH,)
        cols = np.minimum(np.arange(OW) * S + K, W) - np.arange(OW) * S   # (OW,)
        if rows.min() == K and cols.min() == K:
            return K * K
        return xp.asarray(np.outer(rows, cols), dtype=dtype)             # (OH, OW)

    def forward(self, x):
        xp = array_module(x)
        H, W, OH, OW = self._sizes(x)
        y = xp.empty(x.shape[:2] + (OH, OW), dtype=x.dtype)  # (N, C, OH, OW)
        offsets = _offsets(H, W, OH, OW, self.kernel, self.stride)
        _, _, idx = next(offsets)
        y[...] = x[idx]
        for oh, ow, idx in offsets:
            y[:, :, :oh, :ow] += x[idx]
        count = self._counts(xp, H, W, OH, OW, x.dtype)
        if isinstance(count, int):
            y *= 1.0 / count
        else:
            y /= count
        if self.needs_input_grad[0]:
            self.x_shape, self.x_dtype = x.shape, x.dtype
        return y

    def backward(self, g):
        xp = array_module(g)
        H, W = self.x_shape[2:]
        OH, OW = g.shape[2:]
        count = self._counts(xp, H, W, OH, OW, g.dtype)
        share = g * (1.0 / count) if isinstance(count, int) else g / count  # (N, C, OH, OW)
        dx = xp.zeros(self.x_shape, dtype=self.x_dtype)
        for oh, ow, idx in _offsets(H, W, OH, OW, self.kernel, self.stride):
            dx[idx] += share[:, :, :oh, :ow]
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

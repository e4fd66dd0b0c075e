"""Locally connected layer: a convolution whose kernels are not shared across positions.

cuda-convnet's "local" layers (``layers-conv-local-11pct.cfg`` and ``-13pct.cfg``,
the four-layer CIFAR-10 nets behind Section 3.3's "13% without normalization and
11% with") end in two of them. Each output position has its own filter bank:

    y[n, o, oh, ow] = b[o, oh, ow]
                      + sum_{c, kh, kw} W[oh, ow, o, c, kh, kw] * x_padded[n, c, oh*s + kh, ow*s + kw]

Notation as in conv.py: K = C*KH*KW, P = OH*OW. The same im2col gives every
position's window as a column; the columns of position p are a (K, N) slice, so
the whole layer is one batched matmul over the P positions:

    cols       = im2col(x)                     (K, P*N)  ->  (P, K, N)
    forward    y[p]     = W[p] @ cols[p]       (P, C_out, N)
    backward   dW[p]    = dy[p] @ cols[p].T    (P, C_out, K)
               dcols[p] = W[p].T @ dy[p];      dx = col2im(dcols)
               db       = dy summed over n

There is no CPU fast path: this plain path is what NumPy and CuPy both run.
"""
from __future__ import annotations

from ..autograd import Function
from ..backend import array_module
from .checks import check_images, check_positive_ints
from .conv import col2im, conv_output_size, im2col


class LocallyConnected(Function):
    """Shapes:
        x: (N, C, H, W)    W: (OH, OW, C_out, C, KH, KW)    b: (C_out, OH, OW) or absent
        y: (N, C_out, OH, OW)
    Keeps x and W for backward (the columns are recomputed there, as conv2d does).
    """

    def __init__(self, stride=1, pad=0):
        check_positive_ints("locally_connected", stride=(stride, 1), pad=(pad, 0))
        self.stride, self.pad = int(stride), int(pad)

    def _check(self, x, W, b):
        check_images("locally_connected", x)
        if W.ndim != 6:
            raise ValueError(f"locally_connected: expected W of rank 6 (OH, OW, C_out, C, KH, "
                             f"KW), found shape {W.shape}")
        N, C, H, Wd = x.shape
        OH_w, OW_w, C_out, C_w, KH, KW = W.shape
        OH = conv_output_size(H, KH, self.stride, self.pad)
        OW = conv_output_size(Wd, KW, self.stride, self.pad)
        if (OH_w, OW_w, C_w) != (OH, OW, C):
            raise ValueError(f"locally_connected: x of shape {x.shape} with kernel {KH}x{KW}, "
                             f"stride {self.stride}, pad {self.pad} gives {OH}x{OW} positions "
                             f"of {C} channels, so W must be ({OH}, {OW}, C_out, {C}, {KH}, {KW}); "
                             f"found {W.shape}. Build the layer for this input size.")
        if b is not None and b.shape != (C_out, OH, OW):
            raise ValueError(f"locally_connected: expected bias of shape ({C_out}, {OH}, {OW}), "
                             f"found {b.shape}")
        for name, a in (("W", W), ("b", b)):
            if a is not None and a.dtype != x.dtype:
                raise ValueError(f"locally_connected: expected x and {name} of one dtype, found "
                                 f"{x.dtype} and {a.dtype}; convert them to one (float32)")

    def forward(self, x, W, b=None):
        self._check(x, W, b)
        self.x, self.W = x, W
        OH, OW, C_out, C, KH, KW = W.shape
        N, P, K = x.shape[0], OH * OW, C * KH * KW
        cols = im2col(x, KH, KW, self.stride, self.pad)                 # (K, P*N)
        cols = cols.reshape(K, P, N).transpose(1, 0, 2)                 # (P, K, N)
        y = W.reshape(P, C_out, K) @ cols                               # (P, C_out, N)
        y = y.transpose(2, 1, 0).reshape(N, C_out, OH, OW)              # (N, C_out, OH, OW)
        if b is not None:
            y = y + b
        return y

    def backward(self, gy):
        xp = array_module(gy)
        x, W, s, p = self.x, self.W, self.stride, self.pad
        OH, OW, C_out, C, KH, KW = W.shape
        N, P, K = x.shape[0], OH * OW, C * KH * KW
        need_x, need_W = self.needs_input_grad[:2]
        has_b = len(self.needs_input_grad) == 3
        dy = xp.ascontiguousarray(gy.reshape(N, C_out, P).transpose(2, 1, 0))  # (P, C_out, N)
        dx = dW = db = None
        if need_W:
            cols = im2col(x, KH, KW, s, p).reshape(K, P, N).transpose(1, 0, 2)  # (P, K, N)
            dW = (dy @ cols.transpose(0, 2, 1)).reshape(W.shape)       # (P, C_out, K)
        if need_x:
            dcols = W.reshape(P, C_out, K).transpose(0, 2, 1) @ dy      # (P, K, N)
            dcols = dcols.transpose(1, 0, 2).reshape(K, P * N)          # im2col's layout
            dx = col2im(dcols, x.shape, KH, KW, s, p)                   # (N, C, H, W)
        if has_b and self.needs_input_grad[2]:
            db = gy.sum(axis=0)                                         # (C_out, OH, OW)
        return (dx, dW, db) if has_b else (dx, dW)


def locally_connected(x, W, b=None, stride=1, pad=0):
    """Locally connected layer (unshared convolution), see the module docstring.

    Args:
        x: (N, C, H, W) Tensor.
        W: (OH, OW, C_out, C, KH, KW) Tensor: one C_out x C x KH x KW filter bank per output position.
        b: (C_out, OH, OW) Tensor (one bias per output unit), or None.
        stride, pad: as in conv2d.
    Returns:
        (N, C_out, OH, OW) Tensor.
    """
    f = LocallyConnected(stride, pad)
    return f(x, W) if b is None else f(x, W, b)

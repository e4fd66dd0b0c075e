"""2-D convolution as im2col -> one matmul per group -> col2im (Section 3, Figure 2).

Notation (every shape below):

    N   batch size        C   input channels      H, W    input height, width
    KH  kernel height     KW  kernel width        s, p    stride, zero padding
    OH = (H + 2p - KH) // s + 1,  OW = (W + 2p - KW) // s + 1
    K  = C * KH * KW      (one column: every input value one output reads)
    P  = OH * OW          (output positions per image)
    G   groups (2: the paper's two-GPU split of conv2, conv4, conv5, Section 3.2)

im2col lays every KH x KW window out as one column of a (K, P*N) matrix,

    cols[(c*KH + kh)*KW + kw, (oh*OW + ow)*N + n] = x_padded[n, c, oh*s + kh, ow*s + kw]

(the image index fastest, as in the paper's own code, which keeps activations
as (C, H, W, N)). The rows of group g are the contiguous block g*K/G ..
(g+1)*K/G, so the convolution of every group is one matmul:

    forward    y[g]     = W[g] @ cols[g]                  (C_out/G, P*N)
    backward   dW[g]    = dy[g] @ cols[g].T
               dcols[g] = W[g].T @ dy[g];   dx = col2im(dcols)
               db       = dy summed over n, oh, ow

with W[g] the group's (C_out/G, K/G) rows of W and dy laid out as y. col2im,
the adjoint of im2col, adds every column back where it was read: KH*KW
strided additions. This is the code that runs on CuPy (whole batch, a few
large kernels, no host syncs). On NumPy the CPU fast path runs instead while
it is on (minidl.cpu: the same arithmetic in cache-sized blocks over threads).
"""
from __future__ import annotations

from .. import cpu
from ..autograd import Function
from ..backend import array_module
from ..cpu import conv as cpu_conv
from .checks import check_conv, check_positive_ints


def conv_output_size(size, k, stride, pad):
    """Output positions along one axis: (size + 2 pad - k) // stride + 1."""
    return (size + 2 * pad - k) // stride + 1


def im2col(x, KH, KW, stride=1, pad=0):
    """The columns of x (N, C, H, W): (C*KH*KW, OH*OW*N), laid out as above."""
    xp = array_module(x)
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
    xt = xp.zeros((C, H + 2 * pad, W + 2 * pad, N), x.dtype)     # x padded, as (C, Hp, Wp, N)
    xt[:, pad:pad + H, pad:pad + W] = x.transpose(1, 2, 3, 0)
    sc, sh, sw, sn = xt.strides
    windows = xp.lib.stride_tricks.as_strided(                    # (C, KH, KW, OH, OW, N), no copy
        xt, (C, KH, KW, OH, OW, N), (sc, sh, sw, stride * sh, stride * sw, sn))
    return windows.reshape(C * KH * KW, OH * OW * N)              # the one copy


def col2im(cols, x_shape, KH, KW, stride=1, pad=0):
    """The adjoint of im2col: (N, C, H, W) with every column added back where it
    was read, so that <im2col(x), c> == <x, col2im(c)> for all x, c."""
    xp = array_module(cols)
    N, C, H, W = x_shape
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
    d6 = cols.reshape(C, KH, KW, OH, OW, N)
    dxt = xp.zeros((C, H + 2 * pad, W + 2 * pad, N), cols.dtype)   # (C, Hp, Wp, N)
    for kh in range(KH):
        for kw in range(KW):
            dxt[:, kh:kh + stride * OH:stride, kw:kw + stride * OW:stride] += d6[:, kh, kw]
    return dxt[:, pad:pad + H, pad:pad + W].transpose(3, 0, 1, 2)   # (N, C, H, W)


class Convolution(Function):
    """y[n, o] = b[o] + sum_{c in group(o), kh, kw} W[o, c, kh, kw] * x_padded[n, c, oh*s + kh, ow*s + kw].

    Shapes:
        x: (N, C, H, W)    W: (C_out, C/G, KH, KW)    b: (C_out,) or absent
        y: (N, C_out, OH, OW), stored as (C_out, OH, OW, N) (the GEMM's rows)

    Output channels of group g read only the input channels of group g: with
    G=2, conv2, conv4 and conv5 of the paper read only their own GPU's half.
    Keeps x and W for backward; the columns are recomputed there (conv2 of the
    paper at batch 128 would keep ~0.9 GB alive until backward).
    """

    def __init__(self, stride=1, pad=0, groups=1):
        check_positive_ints("conv2d", stride=(stride, 1), pad=(pad, 0), groups=(groups, 1))
        self.stride, self.pad, self.groups = int(stride), int(pad), int(groups)
        self.fast = None

    def forward(self, x, W, b=None):
        check_conv(x, W, b, self.pad, self.groups)
        self.x, self.W = x, W
        plan = cpu.plan_for(array_module(x))
        if plan is not None:                          # NumPy: the CPU fast path (minidl/cpu)
            self.fast = cpu_conv.Conv2d(self.stride, self.pad, self.groups, plan)
            need_dW = len(self.needs_input_grad) > 1 and self.needs_input_grad[1]
            return self.fast.forward(x, W, b, need_dW)
        N, G = x.shape[0], self.groups
        C_out, _, KH, KW = W.shape
        cols = im2col(x, KH, KW, self.stride, self.pad)                   # (K, P*N)
        K, PN = cols.shape
        y = W.reshape(G, C_out // G, K // G) @ cols.reshape(G, K // G, PN)  # (G, C_out/G, P*N)
        if b is not None:
            y += b.reshape(G, C_out // G, 1)
        OH = conv_output_size(x.shape[2], KH, self.stride, self.pad)
        OW = conv_output_size(x.shape[3], KW, self.stride, self.pad)
        return y.reshape(C_out, OH, OW, N).transpose(3, 0, 1, 2)          # (N, C_out, OH, OW)

    def backward(self, gy):
        need_x, need_W = self.needs_input_grad[:2]
        has_b = len(self.needs_input_grad) == 3
        need_b = has_b and self.needs_input_grad[2]
        if self.fast is not None:
            dx, dW, db = self.fast.backward(gy, need_x, need_W, need_b)
        else:
            dx, dW, db = self._backward(gy, need_x, need_W, need_b)
        return (dx, dW, db) if has_b else (dx, dW)

    def _backward(self, gy, need_x, need_W, need_b):
        x, W, G, s, p = self.x, self.W, self.groups, self.stride, self.pad
        C_out, _, KH, KW = W.shape
        K, PN = W.size // C_out * G, gy.size // C_out
        dy = gy.transpose(1, 2, 3, 0).reshape(G, C_out // G, PN)         # (G, C_out/G, P*N)
        db = dy.sum(axis=2).reshape(C_out) if need_b else None
        dW = dx = None
        if need_W:
            cols = im2col(x, KH, KW, s, p)                                # (K, P*N), again
            dW = (dy @ cols.reshape(G, K // G, PN).transpose(0, 2, 1)).reshape(W.shape)
        if need_x:
            dcols = W.reshape(G, C_out // G, K // G).transpose(0, 2, 1) @ dy  # (G, K/G, P*N)
            dx = col2im(dcols.reshape(K, PN), x.shape, KH, KW, s, p)
        return dx, dW, db


def conv2d(x, W, b=None, stride=1, pad=0, groups=1):
    """2-D convolution (cross-correlation, as every framework and the paper's code).

    Args:
        x: (N, C, H, W) Tensor.
        W: (C_out, C/groups, KH, KW) Tensor.
        b: (C_out,) Tensor, or None for no bias.
        stride, pad: the same in both spatial directions; pad adds zeros.
        groups: split channels into `groups` independent convolutions; 2 is the
            paper's two-GPU split of conv2, conv4, conv5 (Section 3.2).
    Returns:
        (N, C_out, OH, OW) Tensor with OH = (H + 2*pad - KH)//stride + 1, likewise OW.
    """
    f = Convolution(stride, pad, groups)
    return f(x, W) if b is None else f(x, W, b)

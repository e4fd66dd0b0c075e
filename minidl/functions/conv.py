"""2-D convolution as im2col -> GEMM, with col2im in backward (Section 3, Figure 2).

Notation (used in every shape below):

    N   batch size            C   input channels      H, W    input height, width
    KH  kernel height         KW  kernel width        s, p    stride, zero padding
    OH = (H + 2p - KH) // s + 1                       OW = (W + 2p - KW) // s + 1
    K  = C * KH * KW          (one column: every input value a kernel sees)
    P  = OH * OW              (one column per output position)

Layout of the columns ("cols"), one (K, P) matrix per image::

    cols[n, (c*KH + kh)*KW + kw, oh*OW + ow] = x_padded[n, c, oh*s + kh, ow*s + kw]

so ``W.reshape(C_out, K) @ cols[n]`` is output image n already in (C_out, OH, OW)
order: no transpose of the output is ever needed, and the rows of group g are
the contiguous block ``g*K/groups : (g+1)*K/groups``.

Speed and memory: the batch is processed in chunks of a few images whose
columns fit in the CPU's cache; backward recomputes the columns instead of
keeping them (conv2 of the paper at batch 128 would otherwise keep ~0.9 GB),
and the scratch arrays (padded input, columns, their gradient) are reused
from one call to the next (fresh large arrays page-fault on every touch).
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import array_module

_LAYER = "conv2d"


# ----------------------------------------------------------------------------
# Scratch arrays reused between calls (NumPy only: CuPy's memory pool already
# reuses device memory). Never returned to a caller.
# ----------------------------------------------------------------------------
_workspaces: dict = {}


def _workspace(xp, name, shape, dtype, zero=False):
    """A scratch array of `shape`, the same one on every call with these arguments."""
    if xp is not np:
        return xp.zeros(shape, dtype) if zero else xp.empty(shape, dtype)
    key = (name, tuple(shape), np.dtype(dtype).str)
    buf = _workspaces.get(key)
    if buf is None:
        if len(_workspaces) > 64:  # many shapes seen (e.g. a sweep): start over
            _workspaces.clear()
        buf = _workspaces[key] = np.zeros(shape, dtype)
    elif zero:
        buf.fill(0)
    return buf


def clear_workspaces():
    """Free the cached scratch arrays (they are rebuilt on the next call)."""
    _workspaces.clear()


# ----------------------------------------------------------------------------
# im2col / col2im on plain arrays
# ----------------------------------------------------------------------------
def _out_size(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def _windows(xpad, KH, KW, stride, OH, OW):
    """Zero-copy view (n, C, KH, KW, OH, OW) of a padded input (n, C, Hp, Wp)."""
    xp = array_module(xpad)
    sn, sc, sh, sw = xpad.strides
    shape = xpad.shape[:2] + (KH, KW, OH, OW)
    return xp.lib.stride_tricks.as_strided(
        xpad, shape, (sn, sc, sh, sw, sh * stride, sw * stride))


def _pad_into(x, pad, out):
    """out (n, C, H+2p, W+2p) <- x zero-padded; the border of `out` is zeroed."""
    if pad == 0:
        out[...] = x
        return out
    H, W = x.shape[2:]
    out[:, :, :pad, :] = 0
    out[:, :, pad + H:, :] = 0
    out[:, :, pad:pad + H, :pad] = 0
    out[:, :, pad:pad + H, pad + W:] = 0
    out[:, :, pad:pad + H, pad:pad + W] = x
    return out


def _im2col_padded(xpad, KH, KW, stride, OH, OW, out):
    """out (n, C*KH*KW, OH*OW) <- the columns of an already padded input."""
    n, C = xpad.shape[:2]
    out.reshape(n, C, KH, KW, OH, OW)[...] = _windows(xpad, KH, KW, stride, OH, OW)
    return out


def _col2im_padded(cols, KH, KW, stride, OH, OW, out):
    """out (n, C, Hp, Wp) <- sum of the columns back onto the padded input.

    A loop over the KH*KW kernel offsets, each adding one strided slice: far
    faster than np.add.at or bincount, and the same code on CuPy.
    """
    n, C = out.shape[:2]
    c6 = cols.reshape(n, C, KH, KW, OH, OW)
    out.fill(0)
    for kh in range(KH):
        for kw in range(KW):
            out[:, :, kh:kh + stride * OH:stride, kw:kw + stride * OW:stride] += c6[:, :, kh, kw]
    return out


def im2col(x, KH, KW, stride=1, pad=0):
    """The columns of `x`: every KHxKW window as one column.

    Args:
        x: (N, C, H, W) array.
        KH, KW: kernel size.  stride, pad: as in `conv2d`.
    Returns:
        cols (N, C*KH*KW, OH*OW), a new array, with
        ``cols[n, (c*KH + kh)*KW + kw, oh*OW + ow] = x_padded[n, c, oh*stride + kh, ow*stride + kw]``
        (see the Notation block at the top of this file).
    """
    xp = array_module(x)
    N, C, H, W = x.shape
    OH, OW = _out_size(H, KH, stride, pad), _out_size(W, KW, stride, pad)
    xpad = _pad_into(x, pad, xp.empty((N, C, H + 2 * pad, W + 2 * pad), x.dtype))
    return _im2col_padded(xpad, KH, KW, stride, OH, OW,
                          xp.empty((N, C * KH * KW, OH * OW), x.dtype))


def col2im(cols, x_shape, KH, KW, stride=1, pad=0):
    """The adjoint of `im2col`: add every column back where it was read from.

    Args:
        cols: (N, C*KH*KW, OH*OW) array.
        x_shape: (N, C, H, W), the shape of the input of `im2col`.
    Returns:
        (N, C, H, W), a new array; ``<im2col(x), c> == <x, col2im(c)>`` for all x, c.
    """
    xp = array_module(cols)
    N, C, H, W = x_shape
    OH, OW = _out_size(H, KH, stride, pad), _out_size(W, KW, stride, pad)
    xpad = _col2im_padded(cols, KH, KW, stride, OH, OW,
                          xp.empty((N, C, H + 2 * pad, W + 2 * pad), cols.dtype))
    return xp.ascontiguousarray(xpad[:, :, pad:pad + H, pad:pad + W])


# ----------------------------------------------------------------------------
# The Function
# ----------------------------------------------------------------------------
_CHUNK_BYTES = 2 << 20  # the columns of one chunk of images: about the L2 cache


class Convolution(Function):
    """y[n, o] = b[o] + sum_{c in group(o), kh, kw} W[o, c, kh, kw] * x_padded[n, c, oh*s + kh, ow*s + kw].

    Shapes:
        x: (N, C, H, W)    W: (C_out, C/groups, KH, KW)    b: (C_out,) or absent
        y: (N, C_out, OH, OW),  OH = (H + 2p - KH)//s + 1,  OW = (W + 2p - KW)//s + 1

    Groups: output channels ``g*C_out/groups ...`` read only input channels
    ``g*C/groups ...``. With groups=2 this is the paper's two-GPU split
    (Section 3.2): conv2, conv4 and conv5 read only the kernel maps of their
    own GPU's half, conv3 (groups=1) reads both.

    Per image n and group g, with cols = im2col(x) (see the module docstring):
        forward    y[n, g]  = W[g] @ cols[n, g]             W[g]: (C_out/groups, K/groups)
        backward   dW[g]   += dy[n, g] @ cols[n, g].T
                   dcols[n, g] = W[g].T @ dy[n, g];   dx = col2im(dcols)
                   db       = sum over n, oh, ow of dy
    Keeps x and W for backward (not the columns: they are recomputed).
    """

    def __init__(self, stride=1, pad=0, groups=1):
        for name, v, low in (("stride", stride, 1), ("pad", pad, 0), ("groups", groups, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{_LAYER}: expected {name} an integer >= {low}, found {v!r}")
        self.stride, self.pad, self.groups = int(stride), int(pad), int(groups)

    # --- checks ---------------------------------------------------------------
    def _check(self, x, W, b):
        G, s, p = self.groups, self.stride, self.pad
        for name, a in (("x", x), ("W", W)) + ((("b", b),) if b is not None else ()):
            if a.dtype.kind != "f":
                raise ValueError(f"{_LAYER}: expected a floating-point {name}, found dtype "
                                 f"{a.dtype}; convert it with .astype(numpy.float32)")
        if x.ndim != 4:
            raise ValueError(f"{_LAYER}: expected x of rank 4 (N, C, H, W), found shape "
                             f"{x.shape} (rank {x.ndim}); add a batch axis with x[None] "
                             "for a single image")
        if W.ndim != 4:
            raise ValueError(f"{_LAYER}: expected W of rank 4 (C_out, C/groups, KH, KW), "
                             f"found shape {W.shape} (rank {W.ndim})")
        if W.dtype != x.dtype or (b is not None and b.dtype != x.dtype):
            raise ValueError(f"{_LAYER}: expected x, W and b of one dtype, found x {x.dtype}, "
                             f"W {W.dtype}" + (f", b {b.dtype}" if b is not None else "") +
                             "; convert them to one dtype (float32 for training)")
        N, C, H, Wd = x.shape
        C_out, Cg, KH, KW = W.shape
        if C % G:
            raise ValueError(f"{_LAYER}: expected input channels C divisible by groups={G}, "
                             f"found C={C} (x of shape {x.shape})")
        if C_out % G:
            raise ValueError(f"{_LAYER}: expected output channels C_out divisible by "
                             f"groups={G}, found C_out={C_out} (W of shape {W.shape})")
        if Cg * G != C:
            raise ValueError(f"{_LAYER}: expected W.shape[1] * groups == C, i.e. W of shape "
                             f"({C_out}, {C // G}, {KH}, {KW}) for x with C={C} and "
                             f"groups={G}; found W.shape[1]={Cg} ({Cg} * {G} = {Cg * G} != {C})")
        if KH > H + 2 * p or KW > Wd + 2 * p:
            raise ValueError(f"{_LAYER}: expected a kernel no larger than the padded input, "
                             f"found kernel {KH}x{KW} for input {H}x{Wd} padded by {p} "
                             f"({H + 2 * p}x{Wd + 2 * p}); use a smaller kernel or more padding")
        if b is not None and b.shape != (C_out,):
            raise ValueError(f"{_LAYER}: expected bias of shape ({C_out},), found {b.shape}")

    # --- geometry shared by forward and backward ------------------------------
    def _geometry(self, x, W):
        N, C, H, Wd = x.shape
        C_out, Cg, KH, KW = W.shape
        s, p = self.stride, self.pad
        OH, OW = _out_size(H, KH, s, p), _out_size(Wd, KW, s, p)
        K, P = C * KH * KW, OH * OW
        chunk = max(1, min(N, _CHUNK_BYTES // (K * P * x.dtype.itemsize)))
        return N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, chunk

    def _cols(self, xp, x, i0, i1, geo):
        """The columns of images i0..i1 (a reused scratch array (n, K, P))."""
        N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, chunk = geo
        p, n = self.pad, i1 - i0
        cols = _workspace(xp, "cols", (chunk, K, P), x.dtype)[:n]
        if p == 0:
            xpad = x[i0:i1]  # the windows read x itself
        else:
            xpad = _workspace(xp, "xpad", (chunk, C, H + 2 * p, Wd + 2 * p), x.dtype)[:n]
            _pad_into(x[i0:i1], p, xpad)
        return _im2col_padded(xpad, KH, KW, self.stride, OH, OW, cols)

    # --- forward / backward ----------------------------------------------------
    def forward(self, x, W, b=None):
        self._check(x, W, b)
        xp = array_module(x)
        geo = self._geometry(x, W)
        N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, chunk = geo
        G = self.groups
        Og, Kg = C_out // G, K // G
        Wm = W.reshape(G, Og, Kg)
        y = xp.empty((N, C_out, P), x.dtype)
        for i0 in range(0, N, chunk):
            i1 = min(N, i0 + chunk)
            cols = self._cols(xp, x, i0, i1, geo)             # (n, K, P)
            for g in range(G):
                xp.matmul(Wm[g], cols[:, g * Kg:(g + 1) * Kg],
                          out=y[i0:i1, g * Og:(g + 1) * Og])  # (n, Og, P)
            if b is not None:
                y[i0:i1] += b[:, None]
        self.x, self.W = x, W
        return y.reshape(N, C_out, OH, OW)

    def backward(self, gy):
        x, W = self.x, self.W
        xp = array_module(x)
        need_x, need_W = self.needs_input_grad[0], self.needs_input_grad[1]
        need_b = len(self.needs_input_grad) == 3 and self.needs_input_grad[2]
        geo = self._geometry(x, W)
        N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, chunk = geo
        G, s, p = self.groups, self.stride, self.pad
        Og, Kg = C_out // G, K // G
        Wm = W.reshape(G, Og, Kg)
        gy = xp.ascontiguousarray(gy).reshape(N, C_out, P)

        dW = xp.zeros((G, Og, Kg), x.dtype) if need_W else None
        dx = xp.empty(x.shape, x.dtype) if need_x else None
        if need_W or need_x:
            tmp = _workspace(xp, "dWtmp", (Og, Kg), x.dtype) if need_W else None
            for i0 in range(0, N, chunk):
                i1 = min(N, i0 + chunk)
                n = i1 - i0
                if need_W:
                    cols = self._cols(xp, x, i0, i1, geo)     # recomputed, not kept
                    for g in range(G):
                        for i in range(n):
                            xp.matmul(gy[i0 + i, g * Og:(g + 1) * Og],
                                      cols[i, g * Kg:(g + 1) * Kg].T, out=tmp)
                            dW[g] += tmp
                if need_x:
                    dcols = _workspace(xp, "dcols", (chunk, K, P), x.dtype)[:n]
                    for g in range(G):
                        xp.matmul(Wm[g].T, gy[i0:i1, g * Og:(g + 1) * Og],
                                  out=dcols[:, g * Kg:(g + 1) * Kg])  # (n, Kg, P)
                    if p == 0:  # sum straight into dx
                        _col2im_padded(dcols, KH, KW, s, OH, OW, dx[i0:i1])
                    else:
                        dxpad = _workspace(xp, "dxpad", (chunk, C, H + 2 * p, Wd + 2 * p),
                                           x.dtype)[:n]
                        _col2im_padded(dcols, KH, KW, s, OH, OW, dxpad)
                        dx[i0:i1] = dxpad[:, :, p:p + H, p:p + Wd]
        dW = dW.reshape(W.shape) if need_W else None
        if len(self.needs_input_grad) == 3:
            db = gy.sum(axis=(0, 2)) if need_b else None
            return dx, dW, db
        return dx, dW


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
    See `Convolution` for the formula.
    """
    f = Convolution(stride, pad, groups)
    return f(x, W) if b is None else f(x, W, b)

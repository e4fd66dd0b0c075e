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

Speed: the K*K passes read x K*K times, so the image planes are processed
in chunks of about 2 MB that stay in the CPU's caches through all the passes
(1.4-2x faster than whole-array passes on this machine). The chunks are
split over minidl's threads (parallel.py); 2 MB rather than 512 KB means
fewer, longer NumPy calls, and each call's Python part holds the GIL: with
two threads, max-pool forward+backward took 0.68-0.74x the time (AlexNet's
pool1 at batch 32, 41 -> 30 ms; the CIFAR net's pool1, 20 -> 14 ms), and
with one the same or less. On a GPU one chunk holds everything. The planes are x's memory seen as (B, H, W, T)
(layout.py): (N*C, H, W, 1) for an NCHW array, (C, H, W, N) for the CHWN
output of a convolution, where every slice above is a run of N values per
pixel rather than a row of OW pixels: 1.5-2.5x faster in NumPy.

Compiled loops: on the CPU, where numba is installed (a dependency; see
pool_kernels.py), the same planes go through plain loops compiled once per
dtype, each output computed in one pass over its window, and max-pooling
records the winner of each window so its backward pass is one scatter: the
CIFAR training step takes 0.87-0.89x the time. The slicing code below stays
what CuPy runs, what the CPU runs without numba (or with MINIDL_NUMBA=0),
and the reference the tests hold the kernels to.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..autograd import Function
from ..backend import array_module
from ..parallel import parallel_chunks, parallel_for
from .checks import check_images
from .layout import is_chwn, planes


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


_CHUNK_BYTES = 2 << 20      # input planes per step (NumPy): x, y, masks stay in cache

# The compiled loops (pool_kernels.py) on the CPU; False: NumPy slicing everywhere.
_USE_COMPILED = os.environ.get("MINIDL_NUMBA", "1") != "0"
_kernels = None             # pool_kernels, once imported; False: numba is missing


def _compiled(xp):
    """The module of compiled loops for arrays of `xp`, or None (CuPy, no numba, turned off)."""
    global _kernels
    if xp is not np or not _USE_COMPILED:
        return None
    if _kernels is None:
        try:
            from . import pool_kernels as _kernels
        except ModuleNotFoundError as e:        # numba not installed: the NumPy slicing below
            if e.name != "numba":
                raise
            _kernels = False
        except Exception as e:          # noqa: BLE001  numba there but unusable (NumPy too new...)
            warnings.warn(f"minidl: pooling's compiled loops are unavailable ({type(e).__name__}: "
                          f"{e}); pooling runs as NumPy slicing, slower. Reinstall numba, or "
                          "set MINIDL_NUMBA=0 to silence this", RuntimeWarning, stacklevel=3)
            _kernels = False
    return _kernels or None


def _by_planes(compiled, name, *args):
    """The compiled kernel `name`_lanes (planes of T > 1 images) or `name`_plain
    (T = 1, the planes passed as (B, H, W)) over ranges of planes, one range per
    thread: args of shape (B, h, w, T) are cut, the others passed whole."""
    B, T = args[0].shape[0], args[0].shape[3]
    planar = [isinstance(a, np.ndarray) and a.ndim == 4 for a in args]
    if T == 1:
        args = [a[..., 0] if p else a for a, p in zip(args, planar)]
    kernel = getattr(compiled, name + ("_plain" if T == 1 else "_lanes"))
    parallel_for(lambda b0, b1: kernel(*(a[b0:b1] if p else a for a, p in zip(args, planar))), B)


def _offsets(H, W, OH, OW, K, S):
    """For each kernel offset (di, dj), in scan order: the output block (oh, ow)
    it reaches and the rows, cols of the input it reads there: for planes
    x4 (B, H, W, T), x4[:, rows, cols] is (B, oh, ow, T).

    oh = OH except in ceil mode, where the last window may stop short of row di.
    """
    out = []
    for di in range(K):
        oh = min(OH, (H - 1 - di) // S + 1)   # windows whose row di is inside x
        for dj in range(K):
            ow = min(OW, (W - 1 - dj) // S + 1)
            out.append((oh, ow, slice(di, di + S * (oh - 1) + 1, S),
                        slice(dj, dj + S * (ow - 1) + 1, S)))
    return out


def _chunks(x4):
    """Slices of the plane axis of x4 (B, H, W, T), each about _CHUNK_BYTES."""
    B = x4.shape[0]
    step = max(1, _CHUNK_BYTES // max(1, x4[0].nbytes)) if array_module(x4) is np else B
    return step, [slice(i, min(i + step, B)) for i in range(0, B, step)]


def _for_chunks(x4, body):
    """body(chunks, step) over the chunks of x4's planes, split over the threads."""
    parallel_chunks(*_chunks(x4), body, enabled=array_module(x4) is np)


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
    collects all their gradients. Keeps for backward each window's winner
    (compiled loops), else x and y (both referenced by neighbouring layers
    anyway).
    """
    name = "max_pool2d"

    def forward(self, x):
        xp = array_module(x)
        H, W, OH, OW = self._sizes(x)
        chwn = is_chwn(x)
        x4, back = planes(x, chwn)                         # (B, H, W, T), see layout.py
        y4 = xp.empty((x4.shape[0], OH, OW, x4.shape[3]), dtype=x.dtype)
        compiled = _compiled(xp)
        if compiled:                                       # the loops, and each window's winner
            argmax = np.empty(y4.shape, compiled.argmax_dtype(self.kernel))
            _by_planes(compiled, "max_pool_forward", x4, y4, argmax, self.kernel, self.stride)
            if self.needs_input_grad[0]:
                self.argmax, self.x_shape, self.back, self.chwn = argmax, x4.shape, back, chwn
            return back(y4)
        (_, _, rows, cols), *rest = _offsets(H, W, OH, OW, self.kernel, self.stride)

        def body(chunks, step):
            for c in chunks:
                xc, yc = x4[c], y4[c]
                yc[...] = xc[:, rows, cols]                # offset (0, 0): in every window
                for oh, ow, rows_k, cols_k in rest:
                    block = yc[:, :oh, :ow]
                    xp.maximum(block, xc[:, rows_k, cols_k], out=block)
        _for_chunks(x4, body)
        if self.needs_input_grad[0]:
            self.x4, self.y4, self.back, self.chwn = x4, y4, back, chwn
        return back(y4)

    def backward(self, g):
        xp = array_module(g)
        if hasattr(self, "argmax"):                        # forward ran the compiled loops
            dx4 = np.empty(self.x_shape, g.dtype)
            _by_planes(_compiled(np), "max_pool_backward", planes(g, chwn=self.chwn)[0],
                       self.argmax, dx4, self.kernel, self.stride)
            return self.back(dx4)
        x4, y4 = self.x4, self.y4
        (H, W), (OH, OW) = x4.shape[1:3], y4.shape[1:3]
        offsets = _offsets(H, W, OH, OW, self.kernel, self.stride)
        g4 = planes(g, chwn=self.chwn)[0]        # as y4 was laid out
        dx4 = xp.empty_like(x4)

        def body(chunks, step):
            left_all = xp.empty((step,) + y4.shape[1:], dtype=g.dtype)  # reused by each chunk
            part_all = xp.empty_like(left_all)
            hit_all = xp.empty(left_all.shape, dtype=bool)
            for c in chunks:
                xc, yc, dxc = x4[c], y4[c], dx4[c]
                n = xc.shape[0]
                left, part, hit = left_all[:n], part_all[:n], hit_all[:n]
                left[...] = g4[c]                   # the gradient no element has taken yet
                dxc.fill(0)
                for k, (oh, ow, rows, cols) in enumerate(offsets):
                    h, p, lft = hit[:, :oh, :ow], part[:, :oh, :ow], left[:, :oh, :ow]
                    xp.equal(xc[:, rows, cols], yc[:, :oh, :ow], out=h)  # holds its window's max
                    xp.multiply(lft, h, out=p)      # ... and takes g if nobody did before
                    dxc[:, rows, cols] += p
                    if k + 1 < len(offsets):
                        lft -= p                    # exactly 0 where taken: ties get g once
        _for_chunks(x4, body)
        return self.back(dx4)


class AvgPool2d(_Pool2d):
    """y[n, c, i, j] = mean of x[n, c, S*i : S*i+K, S*j : S*j+K].

    In ceil mode a window clipped at the edge is averaged over the elements
    actually inside it (as cuda-convnet does), not over K*K.
    """
    name = "avg_pool2d"

    def _inverse_counts(self, xp, H, W, OH, OW, dtype):
        """1 / (elements inside each window): a float, or (OH, OW, 1) when clipped."""
        K, S = self.kernel, self.stride
        rows = np.minimum(np.arange(OH) * S + K, H) - np.arange(OH) * S   # (OH,)
        cols = np.minimum(np.arange(OW) * S + K, W) - np.arange(OW) * S   # (OW,)
        if rows.min() == K and cols.min() == K:
            return 1.0 / (K * K)
        return xp.asarray(1.0 / np.outer(rows, cols), dtype=dtype)[:, :, None]

    def _inverse_count_grid(self, H, W, OH, OW, dtype):
        """The same as an (OH, OW) NumPy array of `dtype`, for the compiled loops."""
        inv = self._inverse_counts(np, H, W, OH, OW, dtype)
        return np.full((OH, OW), inv, dtype) if np.isscalar(inv) else inv[:, :, 0]

    def forward(self, x):
        xp = array_module(x)
        H, W, OH, OW = self._sizes(x)
        chwn = is_chwn(x)
        x4, back = planes(x, chwn)
        y4 = xp.empty((x4.shape[0], OH, OW, x4.shape[3]), dtype=x.dtype)
        if self.needs_input_grad[0]:
            self.x_shape, self.x_dtype, self.back, self.chwn = x4.shape, x.dtype, back, chwn
        compiled = _compiled(xp)
        if compiled:
            _by_planes(compiled, "avg_pool_forward", x4, y4,
                       self._inverse_count_grid(H, W, OH, OW, x.dtype), self.kernel, self.stride)
            return back(y4)
        (_, _, rows, cols), *rest = _offsets(H, W, OH, OW, self.kernel, self.stride)
        inv = self._inverse_counts(xp, H, W, OH, OW, x.dtype)

        def body(chunks, step):
            for c in chunks:
                xc, yc = x4[c], y4[c]
                yc[...] = xc[:, rows, cols]
                for oh, ow, rows_k, cols_k in rest:
                    yc[:, :oh, :ow] += xc[:, rows_k, cols_k]
                yc *= inv
        _for_chunks(x4, body)
        return back(y4)

    def backward(self, g):
        xp = array_module(g)
        B, H, W, T = self.x_shape
        OH, OW = g.shape[2:]
        compiled = _compiled(xp)
        if compiled:
            dx4 = np.empty(self.x_shape, dtype=self.x_dtype)
            _by_planes(compiled, "avg_pool_backward", planes(g, self.chwn)[0],
                       self._inverse_count_grid(H, W, OH, OW, g.dtype), dx4,
                       self.kernel, self.stride)
            return self.back(dx4)
        offsets = _offsets(H, W, OH, OW, self.kernel, self.stride)
        share4 = planes(g, self.chwn)[0] * self._inverse_counts(xp, H, W, OH, OW, g.dtype)
        dx4 = xp.empty(self.x_shape, dtype=self.x_dtype)

        def body(chunks, step):
            for c in chunks:
                dxc, sc = dx4[c], share4[c]
                dxc.fill(0)
                for oh, ow, rows, cols in offsets:
                    dxc[:, rows, cols] += sc[:, :oh, :ow]
        _for_chunks(dx4, body)
        return self.back(dx4)



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

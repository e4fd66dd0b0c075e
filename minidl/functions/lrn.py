"""Local response normalization across channels, Section 3.3.

    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(C-1, i+n/2)} a[j]^2) ** beta

at every (batch, row, column), with a[i] the ReLU output of channel i, C the
channel count, n/2 = n // 2 (n odd). The paper: k=2, n=5, alpha=1e-4,
beta=0.75, after the ReLU of conv1 and conv2.

Other conventions (alpha here is NOT divided by n):

    framework                                   same layer as ours with
    cuda-convnet 2012 (`rnorm` / `cmrnorm`)     alpha = their alpha / n  (their k is 2 too)
    Caffe LRN (ACROSS_CHANNELS)                 alpha = their alpha / n, k = their k (default 1!)
    PyTorch nn.LocalResponseNorm(size, alpha,   n = size, alpha = their alpha / size,
        beta, k)                                    k = their k (default 1)
    Chainer local_response_normalization        the same numbers (no division)
    TensorFlow tf.nn.local_response_normalization(depth_radius, bias, alpha, beta)
                                                n = 2*depth_radius + 1, k = bias, alpha = alpha

so `torch.nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2)` is the
paper's layer, and ours with alpha=1e-4.

Speed: the window sum over channels is 2*(n//2) shifted additions of whole
channel blocks (exact: no running sum that subtracts), s^-0.75 is two square
roots and a reciprocal (no `power`), and the batch goes through a few images
at a time so that the ~10 passes of forward and backward find their data in
cache; scratch arrays are reused between chunks. Backward keeps a, b, s and
s^-beta (the last two are each the size of a).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from ..backend import array_module
from ..parallel import parallel_chunks
from .checks import check_images


def channel_window_sum(v, r, out):
    """out[:, i] = sum of v[:, j] for j in [i - r, i + r] clipped to [0, C-1].

    Args:
        v: (N, C, H, W) array.
        r: the half-window n // 2.
        out: (N, C, H, W) array to write into (not `v`).
    """
    out[...] = v
    for d in range(1, r + 1):
        out[:, d:] += v[:, :-d]     # j = i - d
        out[:, :-d] += v[:, d:]     # j = i + d
    return out


def _neg_power(s, beta, xp, out, tmp):
    """out = s ** -beta (s > 0), with cheap paths for the usual exponents; tmp: scratch."""
    if beta == 0.75:                  # the paper's: s^-3/4 = 1 / (sqrt(s) * sqrt(sqrt(s)))
        xp.sqrt(s, out=tmp)
        xp.sqrt(tmp, out=out)
        out *= tmp
        return xp.reciprocal(out, out=out)
    if beta == 0.5:
        xp.sqrt(s, out=out)
        return xp.reciprocal(out, out=out)
    return xp.power(s, -beta, out=out)


_CHUNK_BYTES = 256 * 1024   # images per step (NumPy); AlexNet's are larger: one at a time


def _chunks(a):
    """Slices of the batch axis, each about _CHUNK_BYTES of `a` (everything on a GPU)."""
    N = a.shape[0]
    step = max(1, _CHUNK_BYTES // max(1, a[0].nbytes)) if array_module(a) is np else N
    return step, [slice(i, min(i + step, N)) for i in range(0, N, step)]


def _for_chunks(a, body):
    """body(chunks, step) over the chunks of a's images, split over the threads."""
    parallel_chunks(*_chunks(a), body, enabled=array_module(a) is np)


class LocalResponseNorm(Function):
    """b = a * s^-beta with s = k + alpha * (window sum of a^2 over channels).

    Backward, with window(i) = [i - n/2, i + n/2] and s_i the denominator base
    of channel i (both at one (batch, row, column)):

        db_i/da_j = [i == j] s_i^-beta - beta a_i s_i^(-beta-1) * 2 alpha a_j [j in window(i)]
        da_j = sum_i g_i db_i/da_j
             = g_j s_j^-beta - 2 alpha beta a_j sum_{i: j in window(i)} g_i a_i s_i^(-beta-1)

    The window is symmetric (j in window(i) <=> i in window(j)), so the last
    sum is the same channel-window sum as in forward, of t = g * b / s
    (= g a s^(-beta-1)). Keeps a, b, s and s^-beta for backward.
    """

    def __init__(self, n=5, k=2.0, alpha=1e-4, beta=0.75):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0 or n % 2 == 0:
            raise ValueError(f"local_response_norm: expected the window n to be a positive odd "
                             f"int (the window is centred: i-n//2 .. i+n//2), found n={n!r}; "
                             "the paper uses n=5")
        for what, v, ok, need in (("k", k, k > 0 if isinstance(k, numbers.Real) else False, "> 0"),
                                  ("alpha", alpha, alpha >= 0 if isinstance(alpha, numbers.Real)
                                   else False, ">= 0"),
                                  ("beta", beta, isinstance(beta, numbers.Real), "a number")):
            if isinstance(v, bool) or not ok:
                raise ValueError(f"local_response_norm: expected {what} {need}, found "
                                 f"{what}={v!r}; the paper uses k=2, alpha=1e-4, beta=0.75")
        self.n, self.k, self.alpha, self.beta = int(n), float(k), float(alpha), float(beta)

    def forward(self, a):
        xp = array_module(a)
        check_images("local_response_norm", a)
        r = self.n // 2
        s, scale, b = xp.empty_like(a), xp.empty_like(a), xp.empty_like(a)

        def images(chunks, step):    # a few images at a time: they stay in cache
            work = xp.empty((step,) + a.shape[1:], dtype=a.dtype)   # scratch, reused
            for c in chunks:
                sq = work[:a[c].shape[0]]
                xp.multiply(a[c], a[c], out=sq)                   # a^2
                sc = channel_window_sum(sq, r, out=s[c])
                sc *= self.alpha
                sc += self.k                                      # s = k + alpha * sum a^2
                _neg_power(sc, self.beta, xp, out=scale[c], tmp=sq)   # s^-beta
                xp.multiply(a[c], scale[c], out=b[c])
        _for_chunks(a, images)
        if self.needs_input_grad[0]:
            self.a, self.b, self.s, self.scale = a, b, s, scale
        return b

    def backward(self, g):
        xp = array_module(g)
        a, b, s, scale = self.a, self.b, self.s, self.scale
        da = xp.empty_like(g)

        def images(chunks, step):
            t_all = xp.empty((step,) + g.shape[1:], dtype=g.dtype)   # scratch, reused
            u_all = xp.empty_like(t_all)
            for c in chunks:
                n = g[c].shape[0]
                t, u = t_all[:n], u_all[:n]
                xp.multiply(g[c], b[c], out=t)
                t /= s[c]                                      # t_i = g_i a_i s_i^(-beta-1)
                channel_window_sum(t, self.n // 2, out=u)      # sum_{i: j in window(i)} t_i
                u *= a[c]
                u *= -2.0 * self.alpha * self.beta
                xp.multiply(g[c], scale[c], out=da[c])         # g_j s_j^-beta
                da[c] += u
        _for_chunks(g, images)
        return da


def local_response_norm(x, n=5, k=2.0, alpha=1e-4, beta=0.75):
    """Local response normalization across channels (Section 3.3):

        b[i] = a[i] / (k + alpha * sum_{j=max(0,i-n/2)}^{min(C-1,i+n/2)} a[j]^2) ** beta

    Args:
        x: (N, C, H, W) Tensor; any C (windows are clipped at the first and last channel).
        n: the (odd) number of adjacent channels in a window.
        k, alpha, beta: as in the formula; alpha is NOT divided by n (see the
            module docstring for PyTorch, Caffe, cuda-convnet and TensorFlow).
    Returns:
        (N, C, H, W) Tensor.
    """
    return LocalResponseNorm(n, k, alpha, beta)(x)

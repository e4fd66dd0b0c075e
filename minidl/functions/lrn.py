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

The window sum over channels is 2*(n//2) shifted additions of whole channel
blocks (exact: no running sum that subtracts). On NumPy with the CPU fast
path on, the same steps run a few images at a time over threads
(minidl/cpu/lrn.py).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import cpu
from ..autograd import Function
from ..backend import array_module
from ..cpu import lrn as cpu_lrn
from .checks import check_images
from .elementwise import fused


def channel_window_sum(v, r, out=None):
    """out[:, i] = sum of v[:, j] for j in [i - r, i + r] clipped to [0, C-1].

    Args:
        v: (N, C, H, W) array.
        r: the half-window n // 2.
        out: (N, C, H, W) array to write into (not `v`); None: a new one.
    """
    if out is None:
        out = v.copy()
    else:
        out[...] = v
    for d in range(1, r + 1):
        out[:, d:] += v[:, :-d]     # j = i - d
        out[:, :-d] += v[:, d:]     # j = i + d
    return out


@fused
def _lrn_grad(g, scale, a, u, c):
    """g s^-beta + c a u, with c = -2 alpha beta."""
    return g * scale + c * a * u


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
        plan = cpu.plan_for(xp)
        if plan is not None:                       # NumPy: the CPU fast path (minidl/cpu/lrn.py)
            b, kept = cpu_lrn.forward(a, self.n, self.k, self.alpha, self.beta, plan)
        else:
            s = channel_window_sum(a * a, self.n // 2)            # sum of a^2 over the window
            s *= self.alpha
            s += self.k                                           # s = k + alpha * sum a^2
            scale = s ** -self.beta                               # s^-beta
            b = a * scale
            kept = (s, scale)
        if self.needs_input_grad[0]:
            self.a, self.b, (self.s, self.scale) = a, b, kept
        return b

    def backward(self, g):
        plan = cpu.plan_for(array_module(g))
        if plan is not None:
            return cpu_lrn.backward(g, self.a, self.b, self.s, self.scale, self.n, self.alpha,
                                    self.beta, plan)
        t = g * self.b / self.s                               # t_i = g_i a_i s_i^(-beta-1)
        u = channel_window_sum(t, self.n // 2)                # sum_{i: j in window(i)} t_i
        return _lrn_grad(g, self.scale, self.a, u, -2.0 * self.alpha * self.beta)


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

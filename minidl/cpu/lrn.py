"""LRN on the CPU: the steps of minidl/functions/lrn.py, a few images at a time.

Forward and backward make about ten passes over arrays the size of the
input. Here the batch goes through in chunks of about `plan.lrn_chunk_bytes`
that stay in cache through all the passes, the chunks split over minidl's
threads, with scratch arrays reused between chunks and no temporaries.
s^-0.75 (the paper's beta) is two square roots and a reciprocal: cheaper
than `power`.
"""
from __future__ import annotations

import numpy as np

from ..functions import lrn as plain
from .parallel import parallel_chunks


def _neg_power(s, beta, out, tmp):
    """out = s ** -beta (s > 0), with cheap paths for the usual exponents; tmp: scratch."""
    if beta == 0.75:                  # s^-3/4 = 1 / (sqrt(s) * sqrt(sqrt(s)))
        np.sqrt(s, out=tmp)
        np.sqrt(tmp, out=out)
        out *= tmp
        return np.reciprocal(out, out=out)
    if beta == 0.5:
        np.sqrt(s, out=out)
        return np.reciprocal(out, out=out)
    return np.power(s, -beta, out=out)


def forward(a, n, k, alpha, beta, plan):
    """(b, (s, s^-beta)) for a (N, C, H, W)."""
    s, scale, b = np.empty_like(a), np.empty_like(a), np.empty_like(a)

    def images(chunks, step):
        work = np.empty((step,) + a.shape[1:], dtype=a.dtype)   # scratch, reused
        for c in chunks:
            sq = work[:a[c].shape[0]]
            np.multiply(a[c], a[c], out=sq)                        # a^2
            sc = plain.channel_window_sum(sq, n // 2, out=s[c])
            sc *= alpha
            sc += k                                                # s = k + alpha * sum a^2
            _neg_power(sc, beta, out=scale[c], tmp=sq)             # s^-beta
            np.multiply(a[c], scale[c], out=b[c])
    parallel_chunks(a, plan.lrn_chunk_bytes, images, threads=plan.threads)
    return b, (s, scale)


def backward(g, a, b, s, scale, n, alpha, beta, plan):
    """da for the output gradient g (see LocalResponseNorm's docstring)."""
    da = np.empty_like(g)

    def images(chunks, step):
        t_all = np.empty((step,) + g.shape[1:], dtype=g.dtype)   # scratch, reused
        u_all = np.empty_like(t_all)
        for c in chunks:
            m = g[c].shape[0]
            t, u = t_all[:m], u_all[:m]
            np.multiply(g[c], b[c], out=t)
            t /= s[c]                                          # t_i = g_i a_i s_i^(-beta-1)
            plain.channel_window_sum(t, n // 2, out=u)
            u *= a[c]
            u *= -2.0 * alpha * beta
            np.multiply(g[c], scale[c], out=da[c])             # g_j s_j^-beta
            da[c] += u
    parallel_chunks(g, plan.lrn_chunk_bytes, images, threads=plan.threads)
    return da

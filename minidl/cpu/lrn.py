"""LRN on the CPU: the steps of minidl/functions/lrn.py, a few images at a time.

Forward and backward make about ten passes over arrays the size of the
input. Here the batch goes through in chunks of about `plan.lrn_chunk_bytes`
that stay in cache through all the passes, the chunks split over minidl's
threads, with scratch arrays reused between chunks and no temporaries.
s^-0.75 (the paper's beta) is two square roots and a reciprocal: cheaper
than `power`.

An NCHW input goes a few images at a time. A CHWN input (the output of a
compiled convolution, layout.py) goes a few image ROWS at a time, every image
of each: it is seen as (H, C, 1, W*N) (`_by_rows`), whose chunks along the
first axis hold one run of W*N contiguous values per row and channel (a chunk
of images of a CHWN array would be runs of a few values, 6x slower).
Outputs and kept arrays take the input's layout. On those strided chunks
NumPy's ufuncs copy their operands through buffers of 8,192 values, which
made them 2-3x slower than on contiguous data; with 2,048-value buffers
(`np.setbufsize`, set in each thread for the chunks' work) they run at
nearly the contiguous speed.
"""
from __future__ import annotations

import numpy as np

from ..functions import lrn as plain
from .layout import empty_chwn, is_chwn
from .parallel import parallel_chunks


def _by_rows(x):
    """A CHWN (N, C, H, W) array seen as (H, C, 1, W*N): chunks of rows, channels second."""
    N, C, H, W = x.shape
    return x.transpose(1, 2, 3, 0).reshape(C, H, W * N).transpose(1, 0, 2)[:, :, None, :]


def _like(a, chwn):
    return empty_chwn(np, a.shape, a.dtype) if chwn else np.empty_like(a)


def _small_buffers(body, chwn):
    """body, run with NumPy's ufunc buffers at 2,048 values when chwn (see above)."""
    if not chwn:
        return body

    def run(chunks, step):
        with np.errstate():                   # restores the buffer size on the way out
            np.setbufsize(2048)
            body(chunks, step)
    return run


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
    chwn = is_chwn(a)
    s, scale, b = _like(a, chwn), _like(a, chwn), _like(a, chwn)
    outputs = (b, (s, scale))
    if chwn:
        a, s, scale, b = _by_rows(a), _by_rows(s), _by_rows(scale), _by_rows(b)

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
    parallel_chunks(a, plan.lrn_chunk_bytes, _small_buffers(images, chwn), threads=plan.threads)
    return outputs


def backward(g, a, b, s, scale, n, alpha, beta, plan):
    """da for the output gradient g (see LocalResponseNorm's docstring); in a's layout."""
    chwn = is_chwn(a)
    if is_chwn(g) != chwn:                     # g as b was laid out
        g_as_a = _like(a, chwn)
        g_as_a[...] = g
        g = g_as_a
    da = _like(a, chwn)
    result = da
    if chwn:
        g, a, b, s, scale, da = (_by_rows(v) for v in (g, a, b, s, scale, da))

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
    parallel_chunks(g, plan.lrn_chunk_bytes, _small_buffers(images, chwn), threads=plan.threads)
    return result

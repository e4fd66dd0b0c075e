"""The slow loop definitions every op is tested against, and the paths the tests run.

Each reference is the op's definition written as plain loops, with no
NumPy tricks, so that a reader can check it against the paper's formula.
docs/layers.md points here. `on_path` runs a block on one of minidl's
paths: the plain array code (what CuPy runs) or the CPU fast path under a
given Plan (minidl/cpu).
"""
import math

import numpy as np
import pytest

import minidl
from minidl.cpu import Plan

# the paths a test can run on: name -> use_fast_path(...) arguments
PATHS = {
    "plain": dict(enabled=False),
    "fast": dict(enabled=True, plan=Plan()),
    "direct": dict(enabled=True, plan=Plan(conv_schedule="direct")),
    "positions": dict(enabled=True, plan=Plan(conv_schedule="positions")),
    "chunks": dict(enabled=True, plan=Plan(conv_schedule="chunks")),
    "fast-slicing": dict(enabled=True, plan=Plan(compiled_pooling=False)),
}


def on_path(name):
    """A context in which minidl's ops run on path `name` (see PATHS)."""
    return minidl.cpu.use_fast_path(**PATHS[name])


@pytest.fixture
def path(request):
    """The test runs on the path its parameter names: parametrize with
    ``@pytest.mark.parametrize("path", [...], indirect=True)``."""
    with on_path(request.param):
        yield request.param


def as_chwn(x):
    """The same (N, C, H, W) values, stored as CHWN (minidl/cpu/layout.py)."""
    out = np.empty(x.shape[1:] + x.shape[:1], x.dtype).transpose(3, 0, 1, 2)
    out[...] = x
    return out


def conv_loops(x, W, b=None, stride=1, pad=0, groups=1):
    N, C, H, Wd = x.shape
    C_out, Cg, KH, KW = W.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (Wd + 2 * pad - KW) // stride + 1
    Og = C_out // groups
    y = np.zeros((N, C_out, OH, OW))
    for n in range(N):
        for o in range(C_out):
            g = o // Og
            for oh in range(OH):
                for ow in range(OW):
                    total = 0.0 if b is None else b[o]
                    for c in range(Cg):
                        for kh in range(KH):
                            for kw in range(KW):
                                h = oh * stride + kh - pad
                                w = ow * stride + kw - pad
                                if 0 <= h < H and 0 <= w < Wd:
                                    total += W[o, c, kh, kw] * x[n, g * Cg + c, h, w]
                    y[n, o, oh, ow] = total
    return y


def local_loops(x, W, b=None, stride=1, pad=0):
    """The locally connected layer by its definition: W (OH, OW, C_out, C, KH, KW)."""
    N, C, H, Wd = x.shape
    OH, OW, C_out, _, KH, KW = W.shape
    y = np.zeros((N, C_out, OH, OW))
    for n in range(N):
        for o in range(C_out):
            for oh in range(OH):
                for ow in range(OW):
                    total = 0.0 if b is None else b[o, oh, ow]
                    for c in range(C):
                        for kh in range(KH):
                            for kw in range(KW):
                                h = oh * stride + kh - pad
                                w = ow * stride + kw - pad
                                if 0 <= h < H and 0 <= w < Wd:
                                    total += W[oh, ow, o, c, kh, kw] * x[n, c, h, w]
                    y[n, o, oh, ow] = total
    return y


def im2col_loops(x, KH, KW, stride, pad):
    N, C, H, Wd = x.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (Wd + 2 * pad - KW) // stride + 1
    cols = np.zeros((C * KH * KW, OH * OW * N))
    for n in range(N):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    for oh in range(OH):
                        for ow in range(OW):
                            h, w = oh * stride + kh - pad, ow * stride + kw - pad
                            if 0 <= h < H and 0 <= w < Wd:
                                cols[(c * KH + kh) * KW + kw, (oh * OW + ow) * N + n] = x[n, c, h, w]
    return cols


def out_size(size, k, s, ceil_mode):
    if ceil_mode:
        o = math.ceil((size - k) / s) + 1
        return o - 1 if (o - 1) * s >= size else o
    return math.floor((size - k) / s) + 1


def pool_loops(x, k, s, ceil_mode, reduce):
    """y[n, c, i, j] = reduce(x[n, c, s*i : s*i+k, s*j : s*j+k]) (slicing clips at the edge)."""
    N, C, H, W = x.shape
    OH, OW = out_size(H, k, s, ceil_mode), out_size(W, k, s, ceil_mode)
    y = np.zeros((N, C, OH, OW), x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    y[n, c, i, j] = reduce(x[n, c, s * i:s * i + k, s * j:s * j + k])
    return y


def max_pool_grad_loops(x, g, k, s, ceil_mode):
    """dx: each window's g goes to its first maximum in row-major order."""
    N, C, H, W = x.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    win = x[n, c, s * i:s * i + k, s * j:s * j + k]
                    a, b = np.unravel_index(np.argmax(win), win.shape)  # argmax: first max
                    dx[n, c, s * i + a, s * j + b] += g[n, c, i, j]
    return dx


def lrn_loops(a, n, k, alpha, beta):
    """b[i] = a[i] / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a[j]^2)^beta."""
    N = a.shape[1]                        # the paper's N: the number of kernels (channels)
    b = np.empty_like(a)
    for i in range(N):
        total = np.zeros_like(a[:, 0])
        for j in range(max(0, i - n // 2), min(N - 1, i + n // 2) + 1):
            total += a[:, j] ** 2
        b[:, i] = a[:, i] / (k + alpha * total) ** beta
    return b


def dropout_keeps(i, key, p):
    """Whether dropout keeps unit i under `key` (minidl/functions/dropout.py),
    in Python integers: the hash written out, to hold both array versions to."""
    def mix(h):
        h ^= h >> 16
        h = (h * 0x7FEB352D) % 2 ** 32
        h ^= h >> 15
        h = (h * 0x846CA68B) % 2 ** 32
        return h ^ (h >> 16)
    h = mix(mix((i * 0x9E3779B9 + key[0]) % 2 ** 32) ^ key[1])
    return h >= min(round(p * 2 ** 32), 2 ** 32 - 1)

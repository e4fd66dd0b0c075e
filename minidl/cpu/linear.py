"""Fully connected layers on the CPU: the same products, split over minidl's threads.

While minidl runs several threads the BLAS is held at one thread per call
(parallel.py), so a big product is cut here instead: y and dx by rows of the
batch, dW by rows of W. Products under `plan.linear_min_flops` run whole.
"""
from __future__ import annotations

import numpy as np

from .parallel import parallel_for


def _split(fn, n, x, W, plan):
    """fn(i0, i1) over ranges of 0..n, over the threads when x @ W.T is big enough."""
    big = 2 * x.shape[0] * W.shape[0] * W.shape[1] >= plan.linear_min_flops
    parallel_for(fn, n, enabled=big, threads=plan.threads)


def forward(x, W, b, plan):
    """y = x @ W.T (+ b)."""
    y = np.empty((x.shape[0], W.shape[0]), np.result_type(x, W))

    def rows(i0, i1):
        np.matmul(x[i0:i1], W.T, out=y[i0:i1])
        if b is not None:
            y[i0:i1] += b
    _split(rows, x.shape[0], x, W, plan)
    return y


def grad_x(g, x, W, plan):
    """dx = g @ W, by rows of the batch."""
    dx = np.empty(x.shape, np.result_type(g, W))
    _split(lambda i0, i1: np.matmul(g[i0:i1], W, out=dx[i0:i1]), x.shape[0], x, W, plan)
    return dx


def grad_W(g, x, W, plan):
    """dW = g.T @ x, by rows of W (its outputs)."""
    dW = np.empty(W.shape, np.result_type(g, x))
    _split(lambda o0, o1: np.matmul(g[:, o0:o1].T, x, out=dW[o0:o1]), W.shape[0], x, W, plan)
    return dW

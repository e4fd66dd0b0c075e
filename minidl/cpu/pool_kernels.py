"""Pooling as the plain loops it is, compiled for the CPU by numba.

minidl/functions/pool.py builds max and average pooling out of K*K array
operations on strided slices; each reads and writes whole arrays, and the
max-pool gradient needs three of them per window offset. Here every
output value is computed in one pass over its window, as the definition
reads:

    y[b, i, j, t] = max (or mean) of x[b, S*i + di, S*j + dj, t],
                    0 <= di, dj < K, the window clipped at the bottom/right edge

on planes x (B, H, W, T) (layout.py's `planes`). Two loop orders, one per layout:

    *_lanes  T = N > 1 (a CHWN array, the CIFAR net): the innermost loop runs
             along t, N images of one pixel, contiguous in memory, which the
             compiler turns into vector instructions;
    *_plain  T = 1 (NCHW, AlexNet's LRN outputs), the planes passed as
             (B, H, W): the innermost loop walks one window in scalar code
             (the lanes order runs 4x slower here: loops of length 1).

Max-pooling also records which element of each window won, as its index
di*K + dj (`argmax`: the first maximum in scan order, since a later element
takes over only when strictly larger), so its backward pass is one scatter of
g, not a re-comparison of x with y. A NaN in a window makes its maximum NaN,
as np.maximum does. Each kernel takes a range of planes; pool.py splits the
planes over minidl's threads (`nogil`: the compiled code runs without
Python's lock). Compiled once per dtype and layout, cached on disk.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(nogil=True, cache=True)


def argmax_dtype(K):
    """The smallest unsigned integer type that holds di*K + dj for a K x K window."""
    return np.uint8 if K * K <= 256 else np.uint16 if K * K <= 65536 else np.uint32


# --- T = N images per pixel: vector lanes along t ------------------------------
@njit(**_JIT)
def max_pool_forward_lanes(x, y, argmax, K, S):
    """y[b, i, j] = max over the window at (S*i, S*j); argmax = di*K + dj of its first maximum."""
    B, H, W, T = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for b in range(B):
        for i in range(OH):
            h0 = S * i
            for j in range(OW):
                w0 = S * j
                yv, av, x0 = y[b, i, j], argmax[b, i, j], x[b, h0, w0]
                for t in range(T):
                    yv[t] = x0[t]
                    av[t] = 0
                for di in range(min(K, H - h0)):
                    for dj in range(min(K, W - w0)):
                        k = di * K + dj
                        if k == 0:
                            continue
                        xv = x[b, h0 + di, w0 + dj]
                        for t in range(T):
                            v = xv[t]
                            if (v > yv[t]) | (v != v):     # larger, or NaN
                                yv[t] = v
                                av[t] = k


@njit(**_JIT)
def max_pool_backward_lanes(g, argmax, dx, K, S):
    """dx[b] = 0, then each window's g added to the element its argmax names."""
    B, H, W, T = dx.shape
    OH, OW = g.shape[1], g.shape[2]
    for b in range(B):
        dx[b] = 0
        for i in range(OH):
            h0 = S * i
            for j in range(OW):
                w0 = S * j
                gv, av = g[b, i, j], argmax[b, i, j]
                for di in range(min(K, H - h0)):
                    for dj in range(min(K, W - w0)):
                        k = di * K + dj
                        dxv = dx[b, h0 + di, w0 + dj]
                        for t in range(T):
                            if av[t] == k:
                                dxv[t] += gv[t]


@njit(**_JIT)
def avg_pool_forward_lanes(x, y, inv, K, S):
    """y[b, i, j] = the window's sum times inv[i, j] (1 / its elements inside x, x's dtype)."""
    B, H, W, T = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for b in range(B):
        for i in range(OH):
            h0 = S * i
            for j in range(OW):
                w0 = S * j
                yv, c = y[b, i, j], inv[i, j]
                yv[:] = 0
                for di in range(min(K, H - h0)):
                    for dj in range(min(K, W - w0)):
                        xv = x[b, h0 + di, w0 + dj]
                        for t in range(T):
                            yv[t] += xv[t]
                for t in range(T):
                    yv[t] *= c


@njit(**_JIT)
def avg_pool_backward_lanes(g, inv, dx, K, S):
    """dx[b] = 0, then each window's g * inv[i, j] added to all its elements."""
    B, H, W, T = dx.shape
    OH, OW = g.shape[1], g.shape[2]
    for b in range(B):
        dx[b] = 0
        for i in range(OH):
            h0 = S * i
            for j in range(OW):
                w0 = S * j
                gv, c = g[b, i, j], inv[i, j]
                for di in range(min(K, H - h0)):
                    for dj in range(min(K, W - w0)):
                        dxv = dx[b, h0 + di, w0 + dj]
                        for t in range(T):
                            dxv[t] += gv[t] * c


# --- T = 1: planes as (B, H, W), one window at a time ---------------------------
@njit(**_JIT)
def max_pool_forward_plain(x, y, argmax, K, S):
    """As max_pool_forward_lanes, for one image per plane."""
    B, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for b in range(B):
        for i in range(OH):
            h0 = S * i
            for j in range(OW):
                w0 = S * j
                m, a, nan = x[b, h0, w0], 0, False
                for di in range(min(K, H - h0)):
                    for dj in range(min(K, W - w0)):
                        v = x[b, h0 + di, w0 + dj]
                        nan |= v != v        # a flag, not a branch: 2x faster than `or v != v`
                        if v > m:
                            m, a = v, di * K + dj
                y[b, i, j] = np.nan if nan else m
                argmax[b, i, j] = a


@njit(**_JIT)
def max_pool_backward_plain(g, argmax, dx, K, S):
    """As max_pool_backward_lanes: dx[b] = 0, then one scatter of g."""
    B, OH, OW = g.shape
    for b in range(B):
        dx[b] = 0
        for i in range(OH):
            for j in range(OW):
                k = argmax[b, i, j]
                dx[b, S * i + k // K, S * j + k % K] += g[b, i, j]


@njit(**_JIT)
def avg_pool_forward_plain(x, y, inv, K, S):
    """As avg_pool_forward_lanes, for one image per plane."""
    B, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for b in range(B):
        for i in range(OH):
            h0 = S * i
            for j in range(OW):
                w0 = S * j
                s = x[b, h0, w0]
                for di in range(min(K, H - h0)):
                    for dj in range(min(K, W - w0)):
                        if di or dj:
                            s += x[b, h0 + di, w0 + dj]
                y[b, i, j] = s * inv[i, j]


@njit(**_JIT)
def avg_pool_backward_plain(g, inv, dx, K, S):
    """As avg_pool_backward_lanes, for one image per plane."""
    B, H, W = dx.shape
    OH, OW = g.shape[1], g.shape[2]
    for b in range(B):
        dx[b] = 0
        for i in range(OH):
            h0 = S * i
            for j in range(OW):
                w0 = S * j
                share = g[b, i, j] * inv[i, j]
                for di in range(min(K, H - h0)):
                    for dj in range(min(K, W - w0)):
                        dx[b, h0 + di, w0 + dj] += share

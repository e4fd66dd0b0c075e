"""The convolution as direct loops, compiled for the CPU by numba: no columns in memory.

minidl/functions/conv.py writes the columns out (im2col: K = C*KH*KW values per
output position, 25x x for a 5x5 kernel) and multiplies them with a BLAS.
Here the same sums run as loops that read x where it lies, in the two
layouts where every sum runs along contiguous memory:

    forward  y[o, oh, ow, n]  = b[o] + sum_{kw, kh, c} W[o, c, kh, kw] * xp[n, oh*s + kh, ow*s + kw, c]
    weights  dW[o, c, kh, kw] = sum_{oh, ow, n} dy[o, oh, ow, n] * xt[c, oh + kh, ow + kw, n]

(xp: x zero-padded as NHWC; xt: x zero-padded as CHWN; y and dy CHWN, as
every fast-path activation, layout.py). dx is the forward loop again: the
padded dy convolved with the flipped kernels (stride 1).

* Forward: for one output row (n, oh), the rows kh = 0..KH-1 of xp are
  copied once into a small buffer U[w, kh, c] (runs of C values). The
  window of output column ow is then ONE contiguous run of U, KW*KH*C
  values from U[ow*s, 0, 0], in the order (kw, kh, c): a row of the columns
  matrix without writing the matrix (the columns of neighbouring ow overlap
  in U). W is read as rows in the same order.
* Weights: in CHWN, dy[o, oh] and xt[c, oh + kh, kw:kw + OW] are both runs of
  OW*N contiguous values (a run of positions, every image of each); dW is
  their dot product summed over oh.

Both are then the same small product, `_dot4x4`: the 16 dot products of 4
rows by 4 rows, each sum kept in its own variable so that the compiler
(LLVM, through numba) keeps the 16 sums in vector registers and reads each
value once for 4 products. Rows past the end of a block (positions, output
channels or kernel taps not a multiple of 4) repeat the last row and their
sums are dropped. With fastmath the sums may be reassociated: float32
results differ from the BLAS's in the last bits, as any two summation
orders do.

The loops release the GIL (nogil); conv.py splits rows (forward) or output
rows oh (weights) over minidl's threads. Compiled once per dtype, cached on
disk, like pool_kernels.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(nogil=True, cache=True, fastmath=True)


@njit(inline="always", **_JIT)
def _dot4x4(a0, a1, a2, a3, b0, b1, b2, b3, n, zero):
    """The 16 sums ai[k] * bj[k] over k < n, (s00, s01, ..., s33) (sij for ai, bj)."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for k in range(n):
        v0, v1, v2, v3 = b0[k], b1[k], b2[k], b3[k]
        x = a0[k]
        s00 += x * v0; s01 += x * v1; s02 += x * v2; s03 += x * v3       # noqa: E702
        x = a1[k]
        s10 += x * v0; s11 += x * v1; s12 += x * v2; s13 += x * v3       # noqa: E702
        x = a2[k]
        s20 += x * v0; s21 += x * v1; s22 += x * v2; s23 += x * v3       # noqa: E702
        x = a3[k]
        s30 += x * v0; s31 += x * v1; s32 += x * v2; s33 += x * v3       # noqa: E702
    return (s00, s01, s02, s03, s10, s11, s12, s13,
            s20, s21, s22, s23, s30, s31, s32, s33)


@njit(inline="always", **_JIT)
def _store4x4(y, s, b, o, no, w, nw, n):
    """y[o + j, w + i, n] = s[4i + j] + b[o + j] for i < nw, j < no."""
    if no == 4 and nw == 4:
        y[o, w, n] = s[0] + b[o]; y[o + 1, w, n] = s[1] + b[o + 1]
        y[o + 2, w, n] = s[2] + b[o + 2]; y[o + 3, w, n] = s[3] + b[o + 3]
        y[o, w + 1, n] = s[4] + b[o]; y[o + 1, w + 1, n] = s[5] + b[o + 1]
        y[o + 2, w + 1, n] = s[6] + b[o + 2]; y[o + 3, w + 1, n] = s[7] + b[o + 3]
        y[o, w + 2, n] = s[8] + b[o]; y[o + 1, w + 2, n] = s[9] + b[o + 1]
        y[o + 2, w + 2, n] = s[10] + b[o + 2]; y[o + 3, w + 2, n] = s[11] + b[o + 3]
        y[o, w + 3, n] = s[12] + b[o]; y[o + 1, w + 3, n] = s[13] + b[o + 1]
        y[o + 2, w + 3, n] = s[14] + b[o + 2]; y[o + 3, w + 3, n] = s[15] + b[o + 3]
        return
    for i in range(nw):
        for j in range(no):
            y[o + j, w + i, n] = s[4 * i + j] + b[o + j]


@njit(**_JIT)
def pad_to_nhwc(x4, chwn, out, ph, pw, h0, h1):
    """out (N, H + 2ph, W + 2pw, C) <- x zero-padded, for the rows h0..h1 of out;
    x4 is x's C-contiguous memory: (C, H, W, N) if chwn, else (N, C, H, W).

    A CHWN x goes one pixel (h, w) of every image at a time, in tiles of 16
    channels x 16 images, read along the images and written along the
    channels: each tile touches 16 cache lines of each. (Copying value by value
    in either order steps through memory by H*W*N or Hp*Wp*C values, often
    a multiple of a power of two, so that every access lands in the same few
    cache sets and evicts the last: 3-4x slower.)"""
    if chwn:
        C, H, W, N = x4.shape
    else:
        N, C, H, W = x4.shape
    Wp = out.shape[2]
    for h in range(h0, h1):
        hx = h - ph
        for w in range(Wp):
            wx = w - pw
            if hx < 0 or hx >= H or wx < 0 or wx >= W:
                for n in range(N):
                    out[n, h, w, :] = 0
            elif chwn:
                for n0 in range(0, N, 16):
                    for c0 in range(0, C, 16):
                        if n0 + 16 <= N and c0 + 16 <= C:        # a whole tile
                            for j in range(16):
                                dst = out[n0 + j, h, w, c0:c0 + 16]
                                for i in range(16):
                                    dst[i] = x4[c0 + i, hx, wx, n0 + j]
                        else:
                            for n in range(n0, min(n0 + 16, N)):
                                for c in range(c0, min(c0 + 16, C)):
                                    out[n, h, w, c] = x4[c, hx, wx, n]
            else:
                for n in range(N):
                    dst = out[n, h, w]
                    for c in range(C):
                        dst[c] = x4[n, c, hx, wx]


@njit(**_JIT)
def conv_rows(xp, Wm, b, y, KH, KW, stride, groups, r0, r1, block_bytes):
    """y[o, oh, ow, n] = b[o] + the window sums, for the output rows r0..r1
    ((oh, n) = divmod(r, N)).

    xp (N, Hp, Wp, C) zero-padded NHWC; Wm (groups, Og4, Kp): the rows of W,
    each in the order (kw, kh, c) and zero-padded from K = KW*KH*C/groups to
    Kp (a multiple of the vector width: no scalar tail after the vector
    loop; the padding multiplies whatever follows the window in U), a
    group's Og rows followed by zero rows up to a multiple of 4 (Og4);
    b (O,); y (O, OH, OW, N), CHWN.

    The rows go in blocks whose U buffers fill about `block_bytes`: each 4
    rows of W are then read once per block of rows, not once per 4 output
    columns (AlexNet's W, megabytes, would stream from memory every time).
    """
    N, Wp, C = xp.shape[0], xp.shape[2], xp.shape[3]
    O, OW = y.shape[0], y.shape[2]
    Cg, Og, Og4 = C // groups, O // groups, Wm.shape[1]
    K = Wm.shape[2]
    step = KH * Cg                       # U values per column w
    # a row's U: its KH rows of x, (Wp, KH, Cg), and room for the windows of up
    # to 3 columns past OW (a last block of fewer than 4; their sums are dropped)
    size = max(Wp * step, (OW + 2) * stride * step + K)
    R = max(1, min(r1 - r0, block_bytes // (size * xp.itemsize)))
    U = np.zeros((R, size), xp.dtype)
    zero = U[0, :0].sum()                # 0 in x's dtype
    for rb in range(r0, r1, R):
        for g in range(groups):
            for i in range(min(R, r1 - rb)):
                oh, n = (rb + i) // N, (rb + i) % N
                Ui = U[i, :Wp * step].reshape(Wp, KH, Cg)
                for kh in range(KH):     # Ui[w, kh, :] = xp[n, oh*s + kh, w, group g's channels]
                    src = xp[n, oh * stride + kh]
                    for w in range(Wp):
                        for c in range(Cg):
                            Ui[w, kh, c] = src[w, g * Cg + c]
            for o in range(0, Og4, 4):
                w0, w1, w2, w3 = Wm[g, o], Wm[g, o + 1], Wm[g, o + 2], Wm[g, o + 3]
                for i in range(min(R, r1 - rb)):
                    oh, n = (rb + i) // N, (rb + i) % N
                    Ui = U[i]
                    for ow in range(0, OW, 4):   # the windows of columns ow..ow+3: runs of U
                        q, d = ow * stride * step, stride * step
                        s = _dot4x4(Ui[q:q + K], Ui[q + d:q + d + K], Ui[q + 2 * d:q + 2 * d + K],
                                    Ui[q + 3 * d:q + 3 * d + K], w0, w1, w2, w3, K, zero)
                        _store4x4(y[:, oh], s, b, g * Og + o, min(4, Og - o), ow,
                                  min(4, OW - ow), n)


@njit(**_JIT)
def weight_grad_rows(xt4, dy4, dW, db, KH, KW, groups, oh0, oh1, block_bytes):
    """dW[o, (c, kh, kw)] += the sum over output rows oh0..oh1 of
    dy[o, oh] . xt[c, oh + kh, kw:kw + OW] (stride 1), each a dot product of
    OW*N contiguous values; db[o] += the sum of those dy[o, oh].

    xt4 (C, Hp, Wp, N) zero-padded CHWN; dy4 (O, OH, OW, N) CHWN;
    dW (O, C/groups*KH*KW); db (O,), or (0,) for no bias.

    The taps go in blocks whose runs of x fill about `block_bytes`, each block
    against every 4 output channels in turn: a run of x is read once per block
    of output channels that fits the cache, not once per 4 of them.
    """
    C, Hp, Wp, N = xt4.shape
    O, OH, OW, _ = dy4.shape
    OWN = OW * N
    xt = xt4.reshape(C, Hp, Wp * N)
    dy = dy4.reshape(O, OH, OWN)
    Cg, Og = C // groups, O // groups
    T = Cg * KH * KW                     # taps (c, kh, kw) of one output channel
    TB = max(4, block_bytes // max(1, OWN * xt4.itemsize) // 4 * 4)
    zero = dW[0, :0].sum()
    for oh in range(oh0, oh1):
        if db.size:
            for o in range(O):
                db[o] += dy[o, oh].sum()
        for g in range(groups):
            last = (g + 1) * Og - 1
            for t0 in range(0, T, TB):
                for o in range(g * Og, last + 1, 4):
                    d0, d1 = dy[o, oh], dy[min(o + 1, last), oh]
                    d2, d3 = dy[min(o + 2, last), oh], dy[min(o + 3, last), oh]
                    for t in range(t0, min(t0 + TB, T), 4):
                        x0 = _tap_row(xt, g * Cg, oh, min(t, T - 1), KH, KW, N, OWN)
                        x1 = _tap_row(xt, g * Cg, oh, min(t + 1, T - 1), KH, KW, N, OWN)
                        x2 = _tap_row(xt, g * Cg, oh, min(t + 2, T - 1), KH, KW, N, OWN)
                        x3 = _tap_row(xt, g * Cg, oh, min(t + 3, T - 1), KH, KW, N, OWN)
                        s = _dot4x4(d0, d1, d2, d3, x0, x1, x2, x3, OWN, zero)
                        for i in range(min(4, last + 1 - o)):
                            for j in range(min(4, T - t)):
                                dW[o + i, t + j] += s[4 * i + j]


@njit(inline="always", **_JIT)
def _tap_row(xt, c0, oh, tap, KH, KW, N, OWN):
    """The run of xt (C, Hp, Wp*N) that tap (c, kh, kw) of output row oh reads."""
    c, r = tap // (KH * KW), tap % (KH * KW)
    kh, kw = r // KW, r % KW
    return xt[c0 + c, oh + kh, kw * N:kw * N + OWN]

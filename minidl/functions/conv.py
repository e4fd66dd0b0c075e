"""2-D convolution as im2col -> GEMM, with col2im in backward (Section 3, Figure 2).

Notation (used in every shape below):

    N   batch size            C   input channels      H, W    input height, width
    KH  kernel height         KW  kernel width        s, p    stride, zero padding
    Hp = H + 2p,  Wp = W + 2p (the zero-padded input)
    OH = (Hp - KH) // s + 1,  OW = (Wp - KW) // s + 1
    K  = C * KH * KW          (one column: every input value one output reads)
    P  = OH * OW              (output positions per image)

Layout of the columns ("cols"): a (K, P*N) matrix, the image index fastest::

    cols[(c*KH + kh)*KW + kw, (oh*OW + ow)*N + n] = x_padded[n, c, oh*s + kh, ow*s + kw]

This is the layout of the paper's own code (cuda-convnet keeps activations as
(C, H, W, N), "CHWN"). On a CPU it makes the copies fast: for stride 1, one
row of a window of all N images is a single contiguous run of OW*N values, so
im2col and the additions of col2im move long runs instead of OW-sized
fragments (NumPy's per-run overhead dominated the NCHW version: col2im was 2-4x
slower). The price is transposing x into CHWN and the output (and dy) out of
it: arrays about KH*KW/s^2 and K/C_out times smaller than the columns. With
schedule 1 below (and schedule 2 when chunks hold >= 8 images) the output
stays CHWN, under an NCHW view (layout.py), and a CHWN dy is read in place:
no transposes at all.
(With stride > 1 and several images per chunk the runs are N values long, so
such a layer is slower; conv1, the only strided layer of the paper, has
columns big enough for one image per chunk, where the runs are OW long.)

With it, the whole convolution of group g is one GEMM:
``W.reshape(C_out, K)[g rows] @ cols[g rows]`` -> (C_out/groups, P*N), the rows
of group g being the contiguous block ``g*K/groups : (g+1)*K/groups``.

Speed and memory: two schedules.

1. Blocks of output positions, the whole batch at once (on the CPU, for
   stride-1 layers with short columns, K <= 1024: the CIFAR net). x is laid
   out once as CHWN, zero-padded; the output positions are cut into blocks
   of ~2 MB of columns, each block a few positions (whole rows, or part of
   one row) with all N images (_position_blocks). Such a block's columns are
   one contiguous range of the (C_out, P*N) output, so the GEMM writes its
   result straight into y, and in backward reads dy in place; im2col copies
   runs of (positions x N) values, 512-4,096 of them. dx is always a
   convolution of the padded dy (written straight into dx too). The blocks
   are split over minidl's threads. Against schedule 2 on the CIFAR net
   (in-process A/B, alternated step by step): conv layers 0.89x the time on
   2 threads, the whole training step 0.85-0.86x; conv1 alone 0.70x (its
   chunks of 13 images wrote y and read dy in runs of 13 values).
   Two more savings here: the padded x is kept from forward for dW's
   columns (a few MB, instead of padding x again), and with one group the
   bias rides in the GEMM: a row of ones below the columns and b as one more
   column of W (y = [W | b] @ [cols; 1]), so no pass adds b to y, and the
   same row makes dW's GEMM return db too ([dW | db] = dy @ [cols; 1].T).
   Both: the three CIFAR convs 0.93-0.96x the time (in-process A/B, conv1
   0.89x), the bias alone 0.96-0.99x.
2. Chunks of images (everything else: large K as in AlexNet's conv2-5,
   strided layers, CuPy): the batch goes through a few images at a time,
   >= 2048 columns per GEMM, and otherwise as many images as keep the
   chunk's columns within ~4 MB; where the columns are short (AlexNet's
   conv1) a chunk goes a block of output rows at a time (_BLOCK_COLUMNS).

In both:
* backward recomputes the columns instead of keeping them (conv2 of the paper
  at batch 128 would otherwise keep ~0.9 GB alive until backward; the
  CIFAR net's conv2 105 MB, to be written out and read back);
* im2col writes each block into a scratch array that stays in the CPU's cache
  until the GEMM reads it; the scratch arrays are reused from one call to the
  next (freshly allocated large arrays page-fault on every first touch):
  with the paper's net at batch 128 they total < 50 MB;
* the work is split over minidl's threads (parallel.py), each with a
  one-thread BLAS: schedule 1 by blocks, schedule 2 by images; each thread
  writes its own part of y and dx and sums its own part of dW. (Splitting
  only the copies, the BLAS keeping its threads, gained nothing: OpenBLAS's
  threads spin on after each GEMM.)
Measured ratios against the GEMMs alone: benchmarks/bench_conv.py.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..autograd import Function
from ..backend import array_module
from ..parallel import get_num_threads, parallel_for
from .layout import is_chwn

_LAYER = "conv2d"


# ----------------------------------------------------------------------------
# Scratch arrays reused between calls. NumPy only: CuPy's memory pool already
# reuses device memory. Never returned to a caller. Per thread, so that two
# threads running convolutions never share one.
# ----------------------------------------------------------------------------
_local = threading.local()


def _workspace(xp, name, shape, dtype):
    """A contiguous scratch array of `shape`: a view of one flat buffer per
    (name, dtype), grown to the largest size asked for so far."""
    size = math.prod(shape)          # not np.prod: 30x slower on a tuple, 200 calls a layer
    if xp is not np:
        return xp.empty(shape, dtype)
    buffers = _local.__dict__.setdefault("buffers", {})
    key = (name, np.dtype(dtype).str)
    buf = buffers.get(key)
    if buf is None or buf.size < size:
        buf = buffers[key] = np.zeros(size, dtype)  # zeros: touch the pages once, now
    return buf[:size].reshape(shape)


def clear_workspaces():
    """Free this thread's scratch arrays (they are rebuilt on the next call)."""
    _local.__dict__.pop("buffers", None)


# ----------------------------------------------------------------------------
# im2col / col2im on plain arrays, in the CHWN layout
# ----------------------------------------------------------------------------
def _out_size(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def _pad_chwn(a, ph, pw, out):
    """out (C, H + 2ph, W + 2pw, n) <- a (C, H, W, n) zero-padded."""
    H, W = a.shape[1:3]
    if ph:
        out[:, :ph] = 0
        out[:, ph + H:] = 0
    if pw:
        out[:, ph:ph + H, :pw] = 0
        out[:, ph:ph + H, pw + W:] = 0
    out[:, ph:ph + H, pw:pw + W] = a
    return out


def _to_chwn_padded(x, pad, out):
    """out (C, Hp, Wp, n) <- x (n, C, H, W), transposed and zero-padded."""
    return _pad_chwn(x.transpose(1, 2, 3, 0), pad, pad, out)


def _windows(xt, KH, KW, stride, OH, OW):
    """The zero-copy window view (C, KH, KW, OH, OW, n) of xt (C, Hp, Wp, n):
    windows[c, kh, kw, oh, ow] = xt[c, oh*stride + kh, ow*stride + kw]."""
    xp = array_module(xt)
    C, n = xt.shape[0], xt.shape[3]
    sc, sh, sw, sn = xt.strides
    return xp.lib.stride_tricks.as_strided(
        xt, (C, KH, KW, OH, OW, n), (sc, sh, sw, sh * stride, sw * stride, sn))


def _im2col_chwn(xt, KH, KW, stride, OH, OW, out, r0=0, r1=None, windows=None, w0=0, w1=None):
    """out (C*KH*KW, (r1-r0)*(w1-w0)*n) <- the columns of xt (C, Hp, Wp, n) for the
    output rows r0..r1 and columns w0..w1 (all of them by default): one copy
    from `_windows` (pass it in when taking several blocks of one xt)."""
    r1 = OH if r1 is None else r1
    w1 = OW if w1 is None else w1
    if windows is None:
        windows = _windows(xt, KH, KW, stride, OH, OW)
    C, n = xt.shape[0], xt.shape[3]
    out.reshape(C, KH, KW, r1 - r0, w1 - w0, n)[...] = windows[:, :, :, r0:r1, w0:w1]
    return out


def _col2im_chwn(cols, KH, KW, stride, OH, OW, out, r0=0, r1=None, zero=True):
    """out (C, Hp, Wp, n) <- every column of the output rows r0..r1 (all by
    default) added back where im2col read it; out zeroed first unless `zero`
    is false (to add block after block).

    A loop over the KH*KW kernel offsets, each adding one strided slice: far
    faster than np.add.at or bincount, and the same code on CuPy.
    """
    r1 = OH if r1 is None else r1
    C, n = out.shape[0], out.shape[3]
    c6 = cols.reshape(C, KH, KW, r1 - r0, OW, n)
    if zero:
        out[...] = 0
    for kh in range(KH):
        h0 = kh + stride * r0
        for kw in range(KW):
            out[:, h0:h0 + stride * (r1 - r0):stride, kw:kw + stride * OW:stride] += c6[:, kh, kw]
    return out


def im2col(x, KH, KW, stride=1, pad=0):
    """The columns of `x`: every KHxKW window as one column.

    Args:
        x: (N, C, H, W) array.
        KH, KW: kernel size.  stride, pad: as in `conv2d`.
    Returns:
        cols (C*KH*KW, OH*OW*N), a new array, with
        ``cols[(c*KH + kh)*KW + kw, (oh*OW + ow)*N + n] = x_padded[n, c, oh*stride + kh, ow*stride + kw]``
        (see the Notation block at the top of this file).
    """
    xp = array_module(x)
    N, C, H, W = x.shape
    OH, OW = _out_size(H, KH, stride, pad), _out_size(W, KW, stride, pad)
    xt = _to_chwn_padded(x, pad, xp.empty((C, H + 2 * pad, W + 2 * pad, N), x.dtype))
    return _im2col_chwn(xt, KH, KW, stride, OH, OW, xp.empty((C * KH * KW, OH * OW * N), x.dtype))


def col2im(cols, x_shape, KH, KW, stride=1, pad=0):
    """The adjoint of `im2col`: add every column back where it was read from.

    Args:
        cols: (C*KH*KW, OH*OW*N) array, laid out as `im2col` returns it.
        x_shape: (N, C, H, W), the shape of the input of `im2col`.
    Returns:
        (N, C, H, W), a new array; ``<im2col(x), c> == <x, col2im(c)>`` for all x, c.
    """
    xp = array_module(cols)
    N, C, H, W = x_shape
    OH, OW = _out_size(H, KH, stride, pad), _out_size(W, KW, stride, pad)
    xt = _col2im_chwn(cols, KH, KW, stride, OH, OW,
                      xp.empty((C, H + 2 * pad, W + 2 * pad, N), cols.dtype))
    return xp.ascontiguousarray(xt[:, pad:pad + H, pad:pad + W].transpose(3, 0, 1, 2))


# ----------------------------------------------------------------------------
# The Function
# ----------------------------------------------------------------------------
# Images per chunk: enough that each GEMM has >= _CHUNK_COLUMNS columns (BLAS
# repacks W on every call: with one 13x13 image per call that alone cost ~10%),
# else as many as keep the chunk's columns within _CHUNK_BYTES (cache-resident).
_CHUNK_COLUMNS = 2048
_CHUNK_BYTES = 4 << 20
# Chunks of at least this many images write y (and dx) as CHWN (layout.py): runs
# of >= 8 values per copy; smaller chunks (AlexNet's conv1, conv2) write NCHW.
_CHWN_MIN_CHUNK = 8
# Within a chunk, im2col and the GEMMs go a block of output rows at a time, of
# about _BLOCK_BYTES of columns: the block stays in the CPU's cache from im2col
# to the GEMM, and OpenBLAS runs (32, 800) @ (800, 512) faster than @ (800,
# 2048) anyway (one thread: 86 against 64 GFLOP/s). Measured, in-process A/B
# with the order balanced: the CIFAR net's training step 0.92x (ReLU) and 0.96x
# (tanh) the time; its conv layers alone 0.82-0.86x, AlexNet's conv1 0.75-0.81x.
# Layers whose blocks would be narrower than _BLOCK_COLUMNS (AlexNet's conv2-5:
# large K) keep whole chunks: their GEMMs (M = 128-384) lost 4-13% when cut
# into ~500-column pieces. _BLOCK_COLUMNS = None: whole chunks everywhere.
_BLOCK_COLUMNS = 512
_BLOCK_BYTES = 2 << 20
# Stride-1 layers with C_out <= C compute dx as a convolution of dy (no col2im):
# its GEMM writes C rather than C*KH*KW rows. False: col2im everywhere.
_DX_AS_CONV = True


def _block_columns(K):
    """Columns per block for columns of height K: about _BLOCK_BYTES of float32
    (at least _BLOCK_COLUMNS); None (whole chunks) where even _BLOCK_COLUMNS
    columns would not fit in that (AlexNet's conv2-5, K >= 1,200)."""
    if not _BLOCK_COLUMNS or 4 * K * _BLOCK_COLUMNS > _BLOCK_BYTES:
        return None
    return _BLOCK_BYTES // (4 * K)


def _row_blocks(xp, OH, OW, n, K):
    """(r0, r1) ranges of output rows of a chunk of n images, each about
    `_block_columns(K)` columns (at least one row); the whole chunk at once
    where that is None, or on a GPU."""
    columns = _block_columns(K) if xp is np else None
    if columns is None:
        return [(0, OH)]
    rows = max(1, columns // (OW * n))
    return [(r0, min(OH, r0 + rows)) for r0 in range(0, OH, rows)]


# Layers with short columns on the CPU (the CIFAR net) skip the chunks of images:
# the whole batch is laid out once as CHWN and the output positions are cut into
# blocks, each holding all N images (see _position_blocks). False: chunks everywhere.
_POSITION_BLOCKS = True


def _position_blocks(OH, OW, N, K, threads):
    """The OH x OW output positions cut into blocks (r0, r1, w0, w1), each of about
    `_block_columns(K)` columns with all N images: whole rows r0..r1, or the
    columns w0..w1 of one row (r1 = r0 + 1). Either way a block is one contiguous
    range of the (C_out, OH*OW*N) output, columns ``(r0*OW + w0)*N`` to
    ``((r1 - 1)*OW + w1)*N``, so its GEMM writes straight into the output. At
    least `threads` blocks where there are that many rows."""
    per = max(1, (_block_columns(K) or _BLOCK_BYTES // (4 * K)) // max(1, N))  # positions per block
    if per >= OW:                                    # whole rows
        rows = max(1, min(per // OW, OH // threads))
        return [(r0, min(OH, r0 + rows), 0, OW) for r0 in range(0, OH, rows)]
    parts = -(-OW // per)                            # pieces of a row, of about equal width
    w = [OW * k // parts for k in range(parts + 1)]
    return [(r, r + 1, w[k], w[k + 1]) for r in range(OH) for k in range(parts)]


def _group_matmul(A, B, out):
    """out[g rows] = A[g] @ B[g rows] for each group g: A (G, m, k), B (G*k, n), out (G*m, n)."""
    G, m, k = A.shape
    for g in range(G):
        array_module(B).matmul(A[g], B[g * k:(g + 1) * k], out=out[g * m:(g + 1) * m])


def _group_dWT(cols, dy, out):
    """out[g] = cols[g rows] @ dy[g rows].T for each group g (dW.T of one block):
    cols (G*k, n), dy (G*m, n), out (G, k, m)."""
    G, k, m = out.shape
    for g in range(G):
        array_module(cols).matmul(cols[g * k:(g + 1) * k], dy[g * m:(g + 1) * m].T, out=out[g])


def _flipped(W, G):
    """The kernels of dx as a convolution of dy: W[o, c, KH-1-kh, KW-1-kw] as
    (G, C/G, (o, kh, kw)), o within the group."""
    C_out, Cg, KH, KW = W.shape
    Og = C_out // G
    return array_module(W).ascontiguousarray(
        W[:, :, ::-1, ::-1].reshape(G, Og, Cg, KH * KW).transpose(0, 2, 1, 3)
    ).reshape(G, Cg, Og * KH * KW)


class Convolution(Function):
    """y[n, o] = b[o] + sum_{c in group(o), kh, kw} W[o, c, kh, kw] * x_padded[n, c, oh*s + kh, ow*s + kw].

    Shapes:
        x: (N, C, H, W)    W: (C_out, C/groups, KH, KW)    b: (C_out,) or absent
        y: (N, C_out, OH, OW),  OH = (H + 2p - KH)//s + 1,  OW = (W + 2p - KW)//s + 1

    Groups: output channels ``g*C_out/groups ...`` read only input channels
    ``g*C/groups ...``. With groups=2 this is the paper's two-GPU split
    (Section 3.2): conv2, conv4 and conv5 read only the kernel maps of their
    own GPU's half, conv3 (groups=1) reads both.

    Per group g, with cols = im2col(x) (K, P*N) and dy as (C_out, P*N) in the
    same column order (see the module docstring), Wg = W[g rows] (C_out/groups, K/groups):
        forward    y[g]     = Wg @ cols[g]
        backward   dW[g]    = dy[g] @ cols[g].T     (computed as (cols[g] @ dy[g].T).T)
                   dcols[g] = Wg.T @ dy[g];    dx = col2im(dcols)
                   db       = sum of dy over n, oh, ow
    all of it block by block of output positions, or chunk by chunk of images
    (the two schedules of the module docstring; dW summed over them).
    Keeps x and W for backward (not the columns: they are recomputed; schedule
    1 keeps the zero-padded CHWN x they are recomputed from).
    """

    def __init__(self, stride=1, pad=0, groups=1):
        for name, v, low in (("stride", stride, 1), ("pad", pad, 0), ("groups", groups, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{_LAYER}: expected {name} an integer >= {low}, found {v!r}")
        self.stride, self.pad, self.groups = int(stride), int(pad), int(groups)

    # --- checks ---------------------------------------------------------------
    def _check(self, x, W, b):
        G, p = self.groups, self.pad
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
        C_out, _, KH, KW = W.shape
        s, p = self.stride, self.pad
        OH, OW = _out_size(H, KH, s, p), _out_size(Wd, KW, s, p)
        K, P = C * KH * KW, OH * OW
        per_image = K * P * x.dtype.itemsize
        chunk = max(1, min(N, max(-(-_CHUNK_COLUMNS // P), _CHUNK_BYTES // per_image)))
        return N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, chunk

    def _padded(self, x, geo):
        """The chunk of images x (n, C, H, W) as CHWN, zero-padded, in scratch."""
        N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, chunk = geo
        xt = _workspace(array_module(x), "xt", (C, H + 2 * self.pad, Wd + 2 * self.pad,
                                                x.shape[0]), x.dtype)
        return _to_chwn_padded(x, self.pad, xt)

    # --- schedule 1: the whole batch, by blocks of output positions -----------
    def _by_positions(self, xp, geo):
        """Schedule 1 (see the module docstring): on the CPU, for stride-1 layers
        with short columns whose dx is a convolution of dy (p < KH, KW)."""
        KH, KW, K = geo[5], geo[6], geo[9]
        return (_POSITION_BLOCKS and xp is np and self.stride == 1
                and self.pad < min(KH, KW) and _block_columns(K) is not None)

    def _padded_batch(self, a, ph, pw, name=None):
        """a (N, C, H, W) as CHWN zero-padded, (C, H + 2ph, W + 2pw, N), in the
        scratch array `name` (a new array without one); its channels split over
        the threads (a copy of runs of W*N values when a is CHWN already)."""
        N, C, H, W = a.shape
        shape = (C, H + 2 * ph, W + 2 * pw, N)
        out = np.empty(shape, a.dtype) if name is None else _workspace(np, name, shape, a.dtype)
        parallel_for(lambda c0, c1: _pad_chwn(a[:, c0:c1].transpose(1, 2, 3, 0), ph, pw,
                                              out[c0:c1]), C)
        return out

    @staticmethod
    def _by_blocks(blocks, xt, KH, KW, OH, OW, K, block_fn, ones=False):
        """result = block_fn(cols, c0, c1, result) for each block of output
        positions, the blocks split over the threads: cols is the block's
        (K, c1 - c0) columns of xt, in scratch, with a last row of ones below
        them if `ones` ((K + 1, c1 - c0): the bias's row, see forward);
        result is what block_fn returned for the thread's previous block
        (None at first). Returns each thread's last result (a partial sum of
        dW, say: never a scratch array, as one pool thread may run two ranges
        in turn)."""
        N = xt.shape[3]
        win = _windows(xt, KH, KW, 1, OH, OW)

        def run(k0, k1):
            result = None
            for r0, r1, w0, w1 in blocks[k0:k1]:
                c0, c1 = (r0 * OW + w0) * N, ((r1 - 1) * OW + w1) * N
                cols = _workspace(np, "cols", (K + ones, c1 - c0), xt.dtype)
                _im2col_chwn(xt, KH, KW, 1, OH, OW, cols[:K], r0, r1, win, w0, w1)
                if ones:
                    cols[K] = 1
                result = block_fn(cols, c0, c1, result)
            return result
        return parallel_for(run, len(blocks))

    def _forward_positions(self, x, W, b, geo):
        N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, _ = geo
        G = self.groups
        Wm = W.reshape(G, C_out // G, K // G)
        y = np.empty((C_out, P * N), x.dtype)          # CHWN (layout.py)
        # one group: the bias as one more column of W, times a row of ones in
        # the columns, so the GEMM adds it (no pass over y of its own)
        ones = b is not None and G == 1
        if ones:
            Wm = np.concatenate([Wm[0], b[:, None]], axis=1)[None]

        def block(cols, c0, c1, _):                    # the GEMM writes y's columns in place
            _group_matmul(Wm, cols, y[:, c0:c1])
            if b is not None and not ones:
                y[:, c0:c1] += b[:, None]
        # padded x: kept for dW's columns when backward needs them (no second copy)
        keep = len(self.needs_input_grad) > 1 and self.needs_input_grad[1]
        xt = self._padded_batch(x, self.pad, self.pad, None if keep else "xt")
        if keep:
            self.xt = xt
        self._by_blocks(_position_blocks(OH, OW, N, K, get_num_threads()),
                        xt, KH, KW, OH, OW, K, block, ones)
        return y.reshape(C_out, OH, OW, N).transpose(3, 0, 1, 2)

    def _backward_positions(self, gy, geo, need_x, need_W, need_b):
        x, W = self.x, self.W
        N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, _ = geo
        G, p = self.groups, self.pad
        Og, Kg = C_out // G, K // G
        T = get_num_threads()
        if not is_chwn(gy):                             # dy as CHWN: a view, else a copy
            gy = self._padded_batch(gy, 0, 0, "gy").transpose(3, 0, 1, 2)
        g2 = gy.transpose(1, 2, 3, 0).reshape(C_out, P * N)
        # one group: db from dW's GEMM, as the row of ones forward gave the bias
        ones = need_b and need_W and G == 1
        db = None
        if need_b and not ones:                       # its rows split over the threads
            db = np.empty(C_out, gy.dtype)
            parallel_for(lambda o0, o1: np.sum(g2[o0:o1], axis=1, out=db[o0:o1]), C_out)
        dW = dx = None
        if need_W:
            def block(cols, c0, c1, part):             # this thread's sum of dW.T (and db)
                out = np.empty((G, Kg + ones, Og), x.dtype) if part is None else \
                    _workspace(np, "dW", (G, Kg + ones, Og), x.dtype)
                _group_dWT(cols, g2[:, c0:c1], out)
                if part is None:
                    return out
                part += out
                return part
            xt = self.__dict__.pop("xt", None)            # the columns are recomputed from it
            if xt is None:
                xt = self._padded_batch(x, p, p, "xt")
            parts = [q for q in self._by_blocks(_position_blocks(OH, OW, N, K, T), xt, KH, KW,
                                                OH, OW, K, block, ones) if q is not None]
            dWT = parts[0]
            for q in parts[1:]:
                dWT += q
            if ones:
                db = dWT[0, K].copy()
            dW = np.ascontiguousarray(dWT[:, :Kg].transpose(0, 2, 1)).reshape(W.shape)
        if need_x:
            # dx = dy, zero-padded by KH-1-p, convolved with the flipped kernels
            # (see backward); the GEMM writes dx's columns in place
            flipped = _flipped(W, G)
            Kd = C_out * KH * KW
            dx = np.empty((C, H * Wd * N), x.dtype)
            gp = self._padded_batch(gy, KH - 1 - p, KW - 1 - p, "gpad")
            self._by_blocks(_position_blocks(H, Wd, N, Kd, T), gp, KH, KW, H, Wd, Kd,
                            lambda cols, c0, c1, _: _group_matmul(flipped, cols, dx[:, c0:c1]))
            dx = dx.reshape(C, H, Wd, N).transpose(3, 0, 1, 2)
        return dx, dW, db

    # --- forward / backward ----------------------------------------------------
    def forward(self, x, W, b=None):
        self._check(x, W, b)
        xp = array_module(x)
        geo = self._geometry(x, W)
        self.x, self.W = x, W
        if self._by_positions(xp, geo):
            return self._forward_positions(x, W, b, geo)
        N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, chunk = geo
        G, s = self.groups, self.stride
        Og, Kg = C_out // G, K // G
        Wm = W.reshape(G, Og, Kg)
        chwn = chunk >= _CHWN_MIN_CHUNK
        # the output as the GEMMs make it, (C_out, P, N) (CHWN, layout.py), when
        # chunks are long enough to copy into it; else NCHW, (N, C_out, P)
        y = xp.empty((C_out, P, N) if chwn else (N, C_out, P), x.dtype)
        bias = None if b is None else b[:, None, None] if chwn else b[:, None]

        def images(i0, i1):                      # y for images i0..i1, chunk by chunk
            for j0 in range(i0, i1, chunk):
                j1 = min(i1, j0 + chunk)
                n = j1 - j0
                xt = self._padded(x[j0:j1], geo)
                win = _windows(xt, KH, KW, s, OH, OW)
                for r0, r1 in _row_blocks(xp, OH, OW, n, K):    # a few output rows at a time
                    m = (r1 - r0) * OW * n                      # columns of this block
                    cols = _im2col_chwn(xt, KH, KW, s, OH, OW, _workspace(
                        xp, "cols", (K, m), x.dtype), r0, r1, win)
                    yc = _workspace(xp, "y", (C_out, m), x.dtype)
                    _group_matmul(Wm, cols, yc)
                    yc = yc.reshape(C_out, m // n, n)           # (C_out, rows*OW, n)
                    q = slice(r0 * OW, r1 * OW)
                    dst = y[:, q, j0:j1] if chwn else y[j0:j1, :, q]
                    src = yc if chwn else yc.transpose(2, 0, 1)                # as dst
                    if bias is not None:
                        xp.add(src, bias, out=dst)
                    else:
                        dst[...] = src
        parallel_for(images, N, enabled=xp is np)   # the images split over the threads
        if chwn:
            return y.reshape(C_out, OH, OW, N).transpose(3, 0, 1, 2)
        return y.reshape(N, C_out, OH, OW)

    def backward(self, gy):
        x, W = self.x, self.W
        xp = array_module(x)
        need_x, need_W = self.needs_input_grad[0], self.needs_input_grad[1]
        has_b = len(self.needs_input_grad) == 3
        need_b = has_b and self.needs_input_grad[2]
        geo = self._geometry(x, W)
        if self._by_positions(xp, geo):
            dx, dW, db = self._backward_positions(gy, geo, need_x, need_W, need_b)
            return (dx, dW, db) if has_b else (dx, dW)
        N, C, H, Wd, C_out, KH, KW, OH, OW, K, P, chunk = geo
        G, s, p = self.groups, self.stride, self.pad
        Og, Kg = C_out // G, K // G
        Wm = W.reshape(G, Og, Kg)
        # dy, chunk by chunk, as (C_out, P, n) in the columns' order: a view of a
        # CHWN dy (layout.py), a transposed view of an NCHW one
        if is_chwn(gy):
            g3 = gy.transpose(1, 2, 3, 0).reshape(C_out, P, N)
            dy_chunk = lambda i0, i1: g3[:, :, i0:i1]                      # noqa: E731
        else:
            g3 = gy.reshape(N, C_out, P)
            dy_chunk = lambda i0, i1: g3[i0:i1].transpose(1, 2, 0)         # noqa: E731
        chwn = chunk >= _CHWN_MIN_CHUNK              # dx in the layout forward's y had

        dx = xp.empty((C, H, Wd, N) if chwn else x.shape, x.dtype) if need_x else None
        # with stride 1, dx is itself a convolution: of dy, padded by KH-1-p, with
        # the flipped kernels, W[o, c, KH-1-kh, KW-1-kw] as (c, (o, kh, kw)) per group.
        # It replaces col2im where dy's columns are no larger than x's (C_out <= C):
        # 0.74x the time of the col2im way for the CIFAR net's conv2, 1.13x for its
        # conv3 (64 channels out of 32), even for AlexNet's (benchmarks/bench_conv.py)
        Cg = C // G
        flipped = None
        if need_x and _DX_AS_CONV and s == 1 and p < KH and p < KW and Og <= Cg:
            flipped = _flipped(W, G)

        # dW is summed transposed, dW.T = cols @ dy.T: OpenBLAS runs this shape 5-40%
        # faster than dy @ cols.T (most for the CIFAR net's 32-64 channels)
        db = dy_chunk(0, N).sum(axis=(1, 2)) if need_b else None

        def dy_block(dyc, r0, r1, n):
            """dy of output rows r0..r1 of a chunk, (C_out, (r1-r0)*OW*n), in scratch."""
            gyb = _workspace(xp, "gy", (C_out, (r1 - r0) * OW * n), x.dtype)
            gyb.reshape(C_out, (r1 - r0) * OW, n)[...] = dyc[:, r0 * OW:r1 * OW]
            return gyb

        def put_dx(inner, j0, j1, r0=0):
            """dx of images j0..j1, rows r0.. <- inner (C, rows, W, n)."""
            rows = slice(r0, r0 + inner.shape[1])
            if chwn:
                dx[:, rows, :, j0:j1] = inner
            else:
                dx[j0:j1, :, rows] = inner.transpose(3, 0, 1, 2)

        def images(i0, i1):                      # dx of images i0..i1; their part of dW.T
            dWT_part = None
            for j0 in range(i0, i1, chunk):
                j1 = min(i1, j0 + chunk)
                n = j1 - j0
                dyc = dy_chunk(j0, j1)                                     # (C_out, P, n)
                blocks = _row_blocks(xp, OH, OW, n, K)
                if need_W:
                    xt = self._padded(x[j0:j1], geo)   # columns recomputed, not kept
                    win = _windows(xt, KH, KW, s, OH, OW)
                    for r0, r1 in blocks:
                        m = (r1 - r0) * OW * n
                        cols = _im2col_chwn(xt, KH, KW, s, OH, OW, _workspace(
                            xp, "cols", (K, m), x.dtype), r0, r1, win)
                        gyb = dy_block(dyc, r0, r1, n)
                        first = dWT_part is None
                        if first:
                            dWT_part = xp.empty((G, Kg, Og), x.dtype)
                        dWT_b = dWT_part if first else _workspace(xp, "dW", (G, Kg, Og),
                                                                  x.dtype)
                        _group_dWT(cols, gyb, dWT_b)
                        if not first:
                            dWT_part += dWT_b
                if need_x and flipped is not None:
                    # stride 1: dx = dy (padded by KH-1-p) convolved with the flipped W
                    q, r = KH - 1 - p, KW - 1 - p
                    gp = _workspace(xp, "gpad", (C_out, OH + 2 * q, OW + 2 * r, n), x.dtype)
                    _pad_chwn(dyc.reshape(C_out, OH, OW, n), q, r, gp)
                    win = _windows(gp, KH, KW, 1, H, Wd)
                    for r0, r1 in _row_blocks(xp, H, Wd, n, C_out * KH * KW):  # rows of dx
                        m = (r1 - r0) * Wd * n
                        dcols = _im2col_chwn(gp, KH, KW, 1, H, Wd, _workspace(
                            xp, "cols", (C_out * KH * KW, m), x.dtype), r0, r1, win)
                        dxc = _workspace(xp, "dxc", (C, m), x.dtype)
                        _group_matmul(flipped, dcols, dxc)
                        put_dx(dxc.reshape(C, r1 - r0, Wd, n), j0, j1, r0)
                elif need_x:
                    dxt = _workspace(xp, "dxt", (C, H + 2 * p, Wd + 2 * p, n), x.dtype)
                    for k, (r0, r1) in enumerate(blocks):
                        m = (r1 - r0) * OW * n
                        gyb = dy_block(dyc, r0, r1, n)
                        dcols = _workspace(xp, "cols", (K, m), x.dtype)
                        _group_matmul(Wm.transpose(0, 2, 1), gyb, dcols)
                        _col2im_chwn(dcols, KH, KW, s, OH, OW, dxt, r0, r1, zero=k == 0)
                    put_dx(dxt[:, p:p + H, p:p + Wd], j0, j1)
            return dWT_part

        dWT = None
        if need_x or need_W:
            parts = parallel_for(images, N, enabled=xp is np)  # the images over the threads
            if need_W:
                dWT = parts[0] if parts[0] is not None else xp.zeros((G, Kg, Og), x.dtype)
                for part in parts[1:]:
                    if part is not None:
                        dWT += part
        if need_x and chwn:
            dx = dx.transpose(3, 0, 1, 2)
        dW = xp.ascontiguousarray(dWT.transpose(0, 2, 1)).reshape(W.shape) if need_W else None
        return (dx, dW, db) if has_b else (dx, dW)


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

"""The convolution on the CPU: the same im2col -> GEMM -> col2im, in cache-sized blocks.

Read minidl/functions/conv.py first: its Notation and its column layout,

    cols[(c*KH + kh)*KW + kw, (oh*OW + ow)*N + n] = x_padded[n, c, oh*s + kh, ow*s + kw],

hold here too. What the CPU path changes, one reason each:

* The columns are made a block at a time into scratch arrays (memory.py's
  `workspace`), reused between calls: a block stays in cache from im2col to
  its GEMM, and reused pages do not fault. Backward recomputes them.
* x is laid out as CHWN (the paper's own code keeps (C, H, W, N)): a row of a
  window of all images is then one run of OW*N values, so the copies move
  long runs, not OW-sized fragments. y comes out CHWN where chunks hold
  enough images (layout.py), and a CHWN dy is read in place.
* Two schedules:
  "positions" (stride 1, short columns: the CIFAR net) lays the whole batch
  out once and cuts the output positions into blocks, each with all N
  images: a block's columns are one contiguous range of y, so the GEMM writes
  y in place, and dy is read in place.
  "chunks" (everything else: AlexNet's large K, strided layers) takes a few
  images at a time, enough for >= chunk_columns columns per GEMM (BLAS
  repacks W per call), within chunk_bytes, a block of output rows at a time.
* With stride 1 and C_out <= C, dx is a convolution of the padded dy with the
  flipped kernels: its GEMM writes C rows instead of col2im's C*KH*KW.
* With one group (positions), the bias rides in the GEMM: a row of ones under
  the columns and b as one more column of W, so no pass over y adds it, and
  the same row gives db from dW's GEMM.
* dW is summed transposed (cols @ dy.T): OpenBLAS runs that shape faster for
  the few output channels of small nets.
* The blocks (positions) or images (chunks) are split over minidl's threads,
  each with a one-thread BLAS (parallel.py).
* "direct" parts: the compiled loops of conv_kernels.py, which never write
  the columns out. The forward reads x as zero-padded NHWC (one copy), and
  dx is the same loop over the padded dy (NHWC) with the flipped kernels;
  dW reads x and dy as CHWN. Outputs stay CHWN. The Plan says which part of
  which layer runs them (plan.py: conv_schedule); the other parts of the
  same layer run their BLAS schedule.
Every knob is a field of `Plan` (plan.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import is_chwn
from .memory import workspace
from .parallel import get_num_threads, parallel_for
from .pool import load_compiled_kernels

_kernels = None             # conv_kernels, once loaded; False: unavailable


def compiled_kernels(plan):
    """The module of compiled convolution loops, or None (turned off, numba unavailable)."""
    global _kernels
    if not plan.compiled_conv:
        return None
    if _kernels is None:
        _kernels = load_compiled_kernels(name="minidl.cpu.conv_kernels",
                                         what="the convolution") or False
    return _kernels or None


@dataclass(frozen=True)
class Geometry:
    """The sizes of one convolution (the Notation of functions/conv.py)."""
    N: int
    C: int
    H: int
    W: int
    C_out: int
    KH: int
    KW: int
    stride: int
    pad: int
    groups: int

    @classmethod
    def of(cls, x, weight, stride, pad, groups):
        return cls(*x.shape, weight.shape[0], *weight.shape[2:], stride, pad, groups)

    @property
    def OH(self):
        return (self.H + 2 * self.pad - self.KH) // self.stride + 1

    @property
    def OW(self):
        return (self.W + 2 * self.pad - self.KW) // self.stride + 1

    @property
    def K(self):                      # rows of the columns
        return self.C * self.KH * self.KW

    @property
    def P(self):                      # output positions per image
        return self.OH * self.OW


@dataclass(frozen=True)
class Direct:
    """Which parts of one convolution run the compiled loops (conv_kernels.py)."""
    forward: bool = False
    weights: bool = False       # dW
    inputs: bool = False        # dx


_AVX512_KERNELS = ("skylakex", "cooperlake", "sapphirerapids")   # OpenBLAS's names


def vector_widths():
    """(bits of the compiled loops' vectors, bits of the BLAS's): numba compiles
    for this CPU, 512 with AVX-512, else 256; OpenBLAS runs the kernels it
    names (threadpoolctl; OPENBLAS_CORETYPE may have chosen narrower ones than
    the CPU has); another BLAS is taken to match the CPU."""
    global _widths
    if _widths is None:
        try:
            import llvmlite.binding as llvm                   # numba's compiler
            loops = 512 if llvm.get_host_cpu_features().get("avx512f") else 256
        except Exception:                                     # noqa: BLE001  no numba: no loops
            loops = 256
        blas = loops
        try:
            from threadpoolctl import threadpool_info
            for lib in threadpool_info():
                if lib.get("internal_api") == "openblas" and lib.get("architecture"):
                    wide = lib["architecture"].lower() in _AVX512_KERNELS
                    blas = 512 if wide else 256
        except ImportError:
            pass
        _widths = (loops, blas)
    return _widths


_widths = None


def direct_parts(g, plan, dtype, widths=None):
    """The parts of a layer of geometry g the compiled loops take under `plan`
    (the rules are Plan.conv_schedule's; `widths` as vector_widths()).

    "direct": forward always; dW for stride 1; dx for stride 1 with pad < KH,
    KW (dx is then a convolution of the padded dy). "auto": the same parts,
    forward and dx only when the array they read has >= direct_min_channels
    channels a group and their columns >= direct_min_taps values, and, where
    the BLAS's vectors are as wide as the loops', only for layers with at most
    direct_max_channels channels a group on one side (min(C, C_out)/groups)."""
    if (plan.conv_schedule in ("positions", "chunks") or dtype not in (np.float32, np.float64)
            or compiled_kernels(plan) is None):
        return Direct()
    unit = g.stride == 1
    as_conv = unit and g.pad < g.KH and g.pad < g.KW
    if plan.conv_schedule == "direct":
        return Direct(True, unit, as_conv)
    loops, blas = widths or vector_widths()
    few = blas < loops or min(g.C, g.C_out) // g.groups <= plan.direct_max_channels

    def long_enough(channels):           # the channels a group of the array read
        return (channels >= plan.direct_min_channels
                and channels * g.KH * g.KW >= plan.direct_min_taps)
    return Direct(few and long_enough(g.C // g.groups), few and unit,
                  few and as_conv and long_enough(g.C_out // g.groups))


def _rows_for_loops(A):
    """A (G, R, K) as the loops read it: zero rows up to a multiple of 4, each row
    zero-padded to a multiple of 16 values (conv_kernels.conv_rows)."""
    G, R, K = A.shape
    out = np.zeros((G, -(-R // 4) * 4, -(-K // 16) * 16), A.dtype)
    out[:, :R, :K] = A
    return out


# ----------------------------------------------------------------------------
# CHWN copies: padding, windows, column blocks, col2im
# ----------------------------------------------------------------------------
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


def _windows(xt, KH, KW, stride, OH, OW):
    """The zero-copy view (C, KH, KW, OH, OW, n) of xt (C, Hp, Wp, n):
    windows[c, kh, kw, oh, ow] = xt[c, oh*stride + kh, ow*stride + kw]."""
    C, n = xt.shape[0], xt.shape[3]
    sc, sh, sw, sn = xt.strides
    return np.lib.stride_tricks.as_strided(
        xt, (C, KH, KW, OH, OW, n), (sc, sh, sw, sh * stride, sw * stride, sn))


def _column_blocks(xt, KH, KW, stride, OH, OW, blocks, ones=False):
    """Yield (c0, c1, cols) for each block (r0, r1, w0, w1) of output positions
    (rows r0..r1, columns w0..w1: whole rows, or part of one row): cols, in
    scratch, are the block's (K, c1 - c0) columns of xt (C, Hp, Wp, n), which
    are the columns c0..c1 of the whole (K, OH*OW*n); with `ones`, a row of
    ones below them ((K + 1, c1 - c0): the bias's row)."""
    C, n = xt.shape[0], xt.shape[3]
    K = C * KH * KW
    win = _windows(xt, KH, KW, stride, OH, OW)
    for r0, r1, w0, w1 in blocks:
        c0, c1 = (r0 * OW + w0) * n, ((r1 - 1) * OW + w1) * n
        cols = workspace("cols", (K + ones, c1 - c0), xt.dtype)
        cols[:K].reshape(C, KH, KW, r1 - r0, w1 - w0, n)[...] = win[:, :, :, r0:r1, w0:w1]
        if ones:
            cols[K] = 1
        yield c0, c1, cols


def _col2im_rows(dcols, KH, KW, stride, OW, out, r0, r1):
    """out (C, Hp, Wp, n) += the columns dcols (K, (r1-r0)*OW*n) of output rows
    r0..r1, each added back where im2col read it: KH*KW strided additions."""
    C, n = out.shape[0], out.shape[3]
    d6 = dcols.reshape(C, KH, KW, r1 - r0, OW, n)
    for kh in range(KH):
        h0 = kh + stride * r0
        for kw in range(KW):
            out[:, h0:h0 + stride * (r1 - r0):stride, kw:kw + stride * OW:stride] += d6[:, kh, kw]


# ----------------------------------------------------------------------------
# Block sizes
# ----------------------------------------------------------------------------
def block_columns(K, plan):
    """Columns per block for columns of height K: about plan.block_bytes of
    float32 (at least plan.block_columns); None (whole chunks) where even that
    many columns would not fit (AlexNet's conv2-5: their GEMMs lose when cut)."""
    if not plan.block_columns or 4 * K * plan.block_columns > plan.block_bytes:
        return None
    return plan.block_bytes // (4 * K)


def row_blocks(OH, OW, n, K, plan):
    """Blocks (r0, r1, 0, OW) of whole output rows of a chunk of n images, each
    about `block_columns(K)` columns (at least one row); one block where that is None."""
    columns = block_columns(K, plan)
    if columns is None:
        return [(0, OH, 0, OW)]
    rows = max(1, columns // (OW * n))
    return [(r0, min(OH, r0 + rows), 0, OW) for r0 in range(0, OH, rows)]


def position_blocks(OH, OW, N, K, plan, threads):
    """The OH x OW output positions cut into blocks (r0, r1, w0, w1) of about
    `block_columns(K)` columns with all N images: whole rows, or pieces of
    one row; at least `threads` blocks where there are that many rows."""
    per = max(1, (block_columns(K, plan) or plan.block_bytes // (4 * K)) // max(1, N))
    if per >= OW:                                    # whole rows
        rows = max(1, min(per // OW, OH // threads))
        return [(r0, min(OH, r0 + rows), 0, OW) for r0 in range(0, OH, rows)]
    parts = -(-OW // per)                            # pieces of a row, of about equal width
    w = [OW * k // parts for k in range(parts + 1)]
    return [(r, r + 1, w[k], w[k + 1]) for r in range(OH) for k in range(parts)]


# ----------------------------------------------------------------------------
# GEMMs, one per group
# ----------------------------------------------------------------------------
def _group_matmul(A, B, out):
    """out[g rows] = A[g] @ B[g rows] for each group g: A (G, m, k), B (G*k, n), out (G*m, n)."""
    G, m, k = A.shape
    for g in range(G):
        np.matmul(A[g], B[g * k:(g + 1) * k], out=out[g * m:(g + 1) * m])


def _add_dWT(part, cols, dy, shape):
    """part + cols[g rows] @ dy[g rows].T for each group g, (G, k, m): a new
    array when part is None, else part itself, summed in place."""
    G = shape[0]
    out = np.empty(shape, cols.dtype) if part is None else workspace("dW", shape, cols.dtype)
    k, m = shape[1], shape[2]
    for g in range(G):
        np.matmul(cols[g * k:(g + 1) * k], dy[g * m:(g + 1) * m].T, out=out[g])
    if part is None:
        return out
    part += out
    return part


def _sum_parts(parts, shape, dtype):
    """The sum of the threads' partial dW.T (zeros when no thread had work)."""
    parts = [q for q in parts if q is not None]
    if not parts:
        return np.zeros(shape, dtype)
    total = parts[0]
    for q in parts[1:]:
        total += q
    return total


def _flipped(W, G):
    """The kernels of dx as a convolution of dy: W[o, c, KH-1-kh, KW-1-kw] as
    (G, C/G, (o, kh, kw)), o within the group."""
    C_out, Cg, KH, KW = W.shape
    Og = C_out // G
    return np.ascontiguousarray(
        W[:, :, ::-1, ::-1].reshape(G, Og, Cg, KH * KW).transpose(0, 2, 1, 3)
    ).reshape(G, Cg, Og * KH * KW)


# ----------------------------------------------------------------------------
# One convolution
# ----------------------------------------------------------------------------
class Conv2d:
    """Forward and backward of one convolution call on NumPy arrays, under `plan`.

    Keeps x and W for backward, and with the positions schedule the padded
    CHWN x when dW will be wanted (dW's columns are recomputed from it).
    """

    def __init__(self, stride, pad, groups, plan):
        self.stride, self.pad, self.groups, self.plan = stride, pad, groups, plan
        self.threads = plan.threads or get_num_threads()

    def by_positions_for(self, x, W):
        """True if this call of x and W runs the positions schedule."""
        return self._by_positions(Geometry.of(x, W, self.stride, self.pad, self.groups))

    def _by_positions(self, g):
        """The positions schedule: stride 1 and dx a convolution of dy (pad < KH, KW),
        and, unless the plan asks for it, columns short enough for blocks."""
        schedule = self.plan.conv_schedule
        if schedule == "chunks" or g.stride != 1 or g.pad >= min(g.KH, g.KW):
            return False
        return schedule == "positions" or block_columns(g.K, self.plan) is not None

    def _chunk(self, g, itemsize):
        """Images per chunk: >= chunk_columns columns, else within chunk_bytes."""
        per_image = g.K * g.P * itemsize
        return max(1, min(g.N, max(-(-self.plan.chunk_columns // g.P),
                                   self.plan.chunk_bytes // per_image)))

    def _padded_batch(self, a, ph, pw, name=None):
        """a (N, C, H, W) as CHWN zero-padded, (C, H + 2ph, W + 2pw, N), in the
        scratch array `name` (a new array without one); its channels split over
        the threads (a copy of runs of W*N values when a is CHWN already)."""
        N, C, H, W = a.shape
        shape = (C, H + 2 * ph, W + 2 * pw, N)
        out = np.empty(shape, a.dtype) if name is None else workspace(name, shape, a.dtype)
        parallel_for(lambda c0, c1: _pad_chwn(a[:, c0:c1].transpose(1, 2, 3, 0), ph, pw,
                                              out[c0:c1]), C, threads=self.threads)
        return out

    def _by_blocks(self, xt, g, OH, OW, K, blocks, block_fn, ones=False):
        """result = block_fn(cols, c0, c1, result) for each block of output
        positions, the blocks split over the threads (`_column_blocks`); returns
        each thread's last result (None for a thread with no blocks)."""
        def run(k0, k1):
            result = None
            for c0, c1, cols in _column_blocks(xt, g.KH, g.KW, 1, OH, OW, blocks[k0:k1], ones):
                result = block_fn(cols, c0, c1, result)
            return result
        return parallel_for(run, len(blocks), threads=self.threads)

    # --- forward ------------------------------------------------------------
    def forward(self, x, W, b, need_dW):
        g = self.g = Geometry.of(x, W, self.stride, self.pad, self.groups)
        self.x, self.W = x, W
        self.by_positions = self._by_positions(g)
        self.direct = direct_parts(g, self.plan, x.dtype if x.dtype == W.dtype else None)
        if self.direct.forward:
            return self._forward_direct(x, W, b, g)
        if self.by_positions:
            return self._forward_positions(x, W, b, g, need_dW)
        return self._forward_chunks(x, W, b, g)

    def _nhwc(self, a, ph, pw, name):
        """a (N, C, H, W), any layout, as zero-padded NHWC (N, H + 2ph, W + 2pw, C)
        in the scratch array `name`; its rows split over the threads."""
        N, C, H, W = a.shape
        out = workspace(name, (N, H + 2 * ph, W + 2 * pw, C), a.dtype)
        chwn = is_chwn(a)
        a4 = a.transpose(1, 2, 3, 0) if chwn else np.ascontiguousarray(a)
        kernels = compiled_kernels(self.plan)
        parallel_for(lambda h0, h1: kernels.pad_to_nhwc(a4, chwn, out, ph, pw, h0, h1),
                     out.shape[1], threads=self.threads)
        return out

    def _loops(self, xp, Wm, b, out, g, stride):
        """out (O, OH, OW, N) <- conv_kernels.conv_rows over all rows, split over the threads."""
        kernels = compiled_kernels(self.plan)
        O, OH, OW, N = out.shape
        parallel_for(lambda r0, r1: kernels.conv_rows(xp, Wm, b, out, g.KH, g.KW, stride,
                                                      g.groups, r0, r1, self.plan.loop_bytes),
                     OH * N, threads=self.threads)

    def _forward_direct(self, x, W, b, g):
        G, p = g.groups, g.pad
        # W's rows in the loops' order (kw, kh, c): (G, C_out/G, KW, KH, C/G)
        Wm = _rows_for_loops(W.reshape(G, g.C_out // G, g.C // G, g.KH, g.KW)
                             .transpose(0, 1, 4, 3, 2).reshape(G, g.C_out // G, -1))
        y = np.empty((g.C_out, g.OH, g.OW, g.N), x.dtype)                # CHWN
        bias = np.zeros(g.C_out, x.dtype) if b is None else b
        self._loops(self._nhwc(x, p, p, "xn"), Wm, bias, y, g, g.stride)
        return y.transpose(3, 0, 1, 2)

    def _forward_positions(self, x, W, b, g, need_dW):
        G = g.groups
        Wm = W.reshape(G, g.C_out // G, g.K // G)
        y = np.empty((g.C_out, g.P * g.N), x.dtype)                 # CHWN (layout.py)
        ones = b is not None and G == 1              # the bias as one more column of W
        if ones:
            Wm = np.concatenate([Wm[0], b[:, None]], axis=1)[None]

        def block(cols, c0, c1, _):                  # the GEMM writes y's columns in place
            _group_matmul(Wm, cols, y[:, c0:c1])
            if b is not None and not ones:
                y[:, c0:c1] += b[:, None]
        xt = self._padded_batch(x, g.pad, g.pad, None if need_dW else "xt")
        if need_dW:
            self.xt = xt                             # dW's columns come from it
        blocks = position_blocks(g.OH, g.OW, g.N, g.K, self.plan, self.threads)
        self._by_blocks(xt, g, g.OH, g.OW, g.K, blocks, block, ones)
        return y.reshape(g.C_out, g.OH, g.OW, g.N).transpose(3, 0, 1, 2)

    def _forward_chunks(self, x, W, b, g):
        G, chunk = g.groups, self._chunk(g, x.dtype.itemsize)
        Wm = W.reshape(G, g.C_out // G, g.K // G)
        chwn = chunk >= self.plan.chwn_min_chunk
        # y as the GEMMs make it, (C_out, P, N) (CHWN), when chunks are long
        # enough to copy into it; else NCHW, (N, C_out, P)
        y = np.empty((g.C_out, g.P, g.N) if chwn else (g.N, g.C_out, g.P), x.dtype)
        bias = None if b is None else b[:, None, None] if chwn else b[:, None]

        def images(i0, i1):                          # y of images i0..i1, chunk by chunk
            for j0 in range(i0, i1, chunk):
                j1 = min(i1, j0 + chunk)
                n = j1 - j0
                xt = self._padded_chunk(x[j0:j1], g)
                blocks = row_blocks(g.OH, g.OW, n, g.K, self.plan)
                for c0, c1, cols in _column_blocks(xt, g.KH, g.KW, g.stride, g.OH, g.OW, blocks):
                    yc = workspace("y", (g.C_out, c1 - c0), x.dtype)
                    _group_matmul(Wm, cols, yc)
                    yc = yc.reshape(g.C_out, (c1 - c0) // n, n)      # (C_out, positions, n)
                    q = slice(c0 // n, c1 // n)
                    dst = y[:, q, j0:j1] if chwn else y[j0:j1, :, q]
                    src = yc if chwn else yc.transpose(2, 0, 1)      # as dst
                    if bias is not None:
                        np.add(src, bias, out=dst)
                    else:
                        dst[...] = src
        parallel_for(images, g.N, threads=self.threads)             # the images over the threads
        if chwn:
            return y.reshape(g.C_out, g.OH, g.OW, g.N).transpose(3, 0, 1, 2)
        return y.reshape(g.N, g.C_out, g.OH, g.OW)

    def _padded_chunk(self, x, g):
        """The chunk of images x (n, C, H, W) as CHWN, zero-padded, in scratch."""
        p = g.pad
        xt = workspace("xt", (g.C, g.H + 2 * p, g.W + 2 * p, x.shape[0]), x.dtype)
        return _pad_chwn(x.transpose(1, 2, 3, 0), p, p, xt)

    # --- backward -----------------------------------------------------------
    def backward(self, gy, need_x, need_W, need_b):
        """(dx, dW, db), None for each not needed: the direct parts by the compiled
        loops, the others (and db with them) by the layer's BLAS schedule."""
        d, g = self.direct, self.g
        blas_x, blas_W = need_x and not d.inputs, need_W and not d.weights
        dx = dW = db = None
        if blas_x or blas_W:
            run = self._backward_positions if self.by_positions else self._backward_chunks
            dx, dW, db = run(gy, g, blas_x, blas_W, need_b)
        elif need_b and not (need_W and d.weights):
            db = self._bias_grad(self._chwn_dy(gy, g))
        if need_W and d.weights:
            dW, db_loops = self._weight_grad_direct(gy, g, need_b and db is None)
            db = db if db is not None else db_loops
        if need_x and d.inputs:
            dx = self._input_grad_direct(gy, g)
        return dx, dW, db

    def _chwn_dy(self, gy, g):
        """gy as a C-contiguous CHWN (C_out, OH, OW, N): a view, else a copy in scratch."""
        if not is_chwn(gy):
            return self._padded_batch(gy, 0, 0, "gy")
        return gy.transpose(1, 2, 3, 0)

    def _bias_grad(self, dy4):
        """db: dy (C_out, OH, OW, N) summed over all but its first axis, its rows over the threads."""
        dy = dy4.reshape(dy4.shape[0], -1)
        db = np.empty(dy.shape[0], dy.dtype)
        parallel_for(lambda o0, o1: np.sum(dy[o0:o1], axis=1, out=db[o0:o1]), dy.shape[0],
                     threads=self.threads)
        return db

    def _weight_grad_direct(self, gy, g, need_b):
        """(dW, db or None) by conv_kernels.weight_grad_rows: the output rows over
        the threads, each thread its own partial sums (db: one more row of dW's)."""
        kernels = compiled_kernels(self.plan)
        xt = self.__dict__.pop("xt", None)           # kept by a positions forward
        if xt is None:
            xt = self._padded_batch(self.x, g.pad, g.pad, "xt")
        dy4 = self._chwn_dy(gy, g)
        T = g.C // g.groups * g.KH * g.KW

        def rows(oh0, oh1):
            part = np.zeros((g.C_out, T + 1), xt.dtype)      # dW | db
            kernels.weight_grad_rows(xt, dy4, part[:, :T], part[:, T] if need_b else part[:0, T],
                                     g.KH, g.KW, g.groups, oh0, oh1, self.plan.loop_bytes)
            return part
        total = _sum_parts(parallel_for(rows, g.OH, threads=self.threads), (g.C_out, T + 1),
                           xt.dtype)
        dW = np.ascontiguousarray(total[:, :T]).reshape(self.W.shape)
        return dW, (total[:, T].copy() if need_b else None)

    def _input_grad_direct(self, gy, g):
        """dx = dy, zero-padded by KH-1-p, convolved with the flipped kernels, by
        conv_kernels.conv_rows; CHWN."""
        G, W = g.groups, self.W
        Og, Cg = g.C_out // G, g.C // G
        # Wf[g, c, (kw, kh, o)] = W[g*Og + o, c, KH-1-kh, KW-1-kw]
        Wf = _rows_for_loops(W.reshape(G, Og, Cg, g.KH, g.KW)[:, :, :, ::-1, ::-1]
                             .transpose(0, 2, 4, 3, 1).reshape(G, Cg, -1))
        gp = self._nhwc(gy, g.KH - 1 - g.pad, g.KW - 1 - g.pad, "gn")
        dx = np.empty((g.C, g.H, g.W, g.N), gy.dtype)
        self._loops(gp, Wf, np.zeros(g.C, gy.dtype), dx, g, 1)
        return dx.transpose(3, 0, 1, 2)

    def _backward_positions(self, gy, g, need_x, need_W, need_b):
        x, W, G = self.x, self.W, g.groups
        Og, Kg = g.C_out // G, g.K // G
        if not is_chwn(gy):                          # dy as CHWN: a view, else a copy
            gy = self._padded_batch(gy, 0, 0, "gy").transpose(3, 0, 1, 2)
        dy = gy.transpose(1, 2, 3, 0).reshape(g.C_out, g.P * g.N)
        ones = need_b and need_W and G == 1          # db from dW's GEMM (the row of ones)
        db = dW = dx = None
        if need_b and not ones:                      # its rows split over the threads
            db = self._bias_grad(dy)
        if need_W:
            xt = self.__dict__.pop("xt", None)       # kept by forward, else padded again
            if xt is None:
                xt = self._padded_batch(x, g.pad, g.pad, "xt")
            shape = (G, Kg + ones, Og)
            blocks = position_blocks(g.OH, g.OW, g.N, g.K, self.plan, self.threads)
            parts = self._by_blocks(xt, g, g.OH, g.OW, g.K, blocks,
                                    lambda cols, c0, c1, part: _add_dWT(part, cols, dy[:, c0:c1],
                                                                        shape), ones)
            dWT = _sum_parts(parts, shape, x.dtype)
            if ones:
                db = dWT[0, g.K].copy()
            dW = np.ascontiguousarray(dWT[:, :Kg].transpose(0, 2, 1)).reshape(W.shape)
        if need_x:
            # dx = dy, zero-padded by KH-1-p, convolved with the flipped kernels;
            # the GEMM writes dx's columns in place
            flipped = _flipped(W, G)
            Kd = g.C_out * g.KH * g.KW
            dx = np.empty((g.C, g.H * g.W * g.N), x.dtype)
            gpad = self._padded_batch(gy, g.KH - 1 - g.pad, g.KW - 1 - g.pad, "gpad")
            blocks = position_blocks(g.H, g.W, g.N, Kd, self.plan, self.threads)
            self._by_blocks(gpad, g, g.H, g.W, Kd, blocks,
                            lambda cols, c0, c1, _: _group_matmul(flipped, cols, dx[:, c0:c1]))
            dx = dx.reshape(g.C, g.H, g.W, g.N).transpose(3, 0, 1, 2)
        return dx, dW, db

    def _backward_chunks(self, gy, g, need_x, need_W, need_b):
        x, W, G, s, p = self.x, self.W, g.groups, g.stride, g.pad
        Og, Kg, Cg = g.C_out // G, g.K // G, g.C // G
        Wm = W.reshape(G, Og, Kg)
        chunk = self._chunk(g, x.dtype.itemsize)
        chwn = chunk >= self.plan.chwn_min_chunk     # dx in the layout forward's y had
        # dy of images i0..i1 as (C_out, P, n) in the columns' order: a view of a
        # CHWN dy, a transposed view of an NCHW one
        if is_chwn(gy):
            dy3 = gy.transpose(1, 2, 3, 0).reshape(g.C_out, g.P, g.N)
            dy_images = lambda i0, i1: dy3[:, :, i0:i1]                   # noqa: E731
        else:
            dy3 = gy.reshape(g.N, g.C_out, g.P)
            dy_images = lambda i0, i1: dy3[i0:i1].transpose(1, 2, 0)      # noqa: E731
        db = dy_images(0, g.N).sum(axis=(1, 2)) if need_b else None
        dx = np.empty((g.C, g.H, g.W, g.N) if chwn else x.shape, x.dtype) if need_x else None
        as_conv = (need_x and self.plan.dx_as_conv and s == 1 and p < g.KH and p < g.KW
                   and Og <= Cg)
        flipped = _flipped(W, G) if as_conv else None
        dWT_shape = (G, Kg, Og)

        def dy_block(dyc, c0, c1, n):
            """dy of the columns c0..c1 of a chunk, (C_out, c1 - c0), in scratch."""
            out = workspace("gy", (g.C_out, c1 - c0), x.dtype)
            out.reshape(g.C_out, (c1 - c0) // n, n)[...] = dyc[:, c0 // n:c1 // n]
            return out

        def put_dx(inner, j0, j1, r0=0):
            """dx of images j0..j1, rows r0.. <- inner (C, rows, W, n)."""
            rows = slice(r0, r0 + inner.shape[1])
            if chwn:
                dx[:, rows, :, j0:j1] = inner
            else:
                dx[j0:j1, :, rows] = inner.transpose(3, 0, 1, 2)

        def images(i0, i1):                          # dx of images i0..i1; their part of dW.T
            part = None
            for j0 in range(i0, i1, chunk):
                j1 = min(i1, j0 + chunk)
                n = j1 - j0
                dyc = dy_images(j0, j1)                                  # (C_out, P, n)
                blocks = row_blocks(g.OH, g.OW, n, g.K, self.plan)
                if need_W:                           # the columns recomputed, not kept
                    xt = self._padded_chunk(x[j0:j1], g)
                    for c0, c1, cols in _column_blocks(xt, g.KH, g.KW, s, g.OH, g.OW, blocks):
                        part = _add_dWT(part, cols, dy_block(dyc, c0, c1, n), dWT_shape)
                if as_conv:                          # dx = padded dy convolved with flipped W
                    q, r = g.KH - 1 - p, g.KW - 1 - p
                    gpad = workspace("gpad", (g.C_out, g.OH + 2 * q, g.OW + 2 * r, n), x.dtype)
                    _pad_chwn(dyc.reshape(g.C_out, g.OH, g.OW, n), q, r, gpad)
                    dx_blocks = row_blocks(g.H, g.W, n, g.C_out * g.KH * g.KW, self.plan)
                    for c0, c1, cols in _column_blocks(gpad, g.KH, g.KW, 1, g.H, g.W, dx_blocks):
                        dxc = workspace("dxc", (g.C, c1 - c0), x.dtype)
                        _group_matmul(flipped, cols, dxc)
                        put_dx(dxc.reshape(g.C, (c1 - c0) // (g.W * n), g.W, n), j0, j1,
                               c0 // (g.W * n))
                elif need_x:                         # dcols = W.T @ dy, then col2im
                    dxt = workspace("dxt", (g.C, g.H + 2 * p, g.W + 2 * p, n), x.dtype)
                    dxt[...] = 0
                    for r0, r1, _, _ in blocks:
                        c0, c1 = r0 * g.OW * n, r1 * g.OW * n
                        dcols = workspace("cols", (g.K, c1 - c0), x.dtype)
                        _group_matmul(Wm.transpose(0, 2, 1), dy_block(dyc, c0, c1, n), dcols)
                        _col2im_rows(dcols, g.KH, g.KW, s, g.OW, dxt, r0, r1)
                    put_dx(dxt[:, p:p + g.H, p:p + g.W], j0, j1)
            return part

        dW = None
        if need_x or need_W:
            parts = parallel_for(images, g.N, threads=self.threads)    # the images over the threads
            if need_W:
                dWT = _sum_parts(parts, dWT_shape, x.dtype)
                dW = np.ascontiguousarray(dWT.transpose(0, 2, 1)).reshape(W.shape)
        if need_x and chwn:
            dx = dx.transpose(3, 0, 1, 2)
        return dx, dW, db

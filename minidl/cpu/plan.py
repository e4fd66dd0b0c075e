"""The switch that turns the CPU fast path on or off, and its knobs (a `Plan`).

Every op of minidl.functions has one plain path, batch-wide array code that
runs on NumPy and CuPy alike. On NumPy arrays, an op hands its work to this
package instead while the fast path is on (the default):

    import minidl
    minidl.cpu.enabled()                          # True unless MINIDL_CPU_FAST=0
    minidl.cpu.use_fast_path(False)               # the plain path from now on
    with minidl.cpu.use_fast_path(plan=minidl.cpu.Plan(dx_as_conv=False)):
        ...                                       # these knobs inside the block only

Both paths give the same values (to rounding: the sums run in another order);
tests/test_cpu_paths.py holds them to each other and to the loop definitions.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

_ENV = "MINIDL_CPU_FAST"


@dataclasses.dataclass(frozen=True)
class Plan:
    """The knobs of the CPU fast path, each with the reason for its default.

    threads: ops split over this many threads (None: `minidl.get_num_threads()`).
    conv_schedule: "auto", "direct", "positions" or "chunks" (minidl/cpu/conv.py).
        "positions" and "chunks" write the columns in blocks and hand them to
        the BLAS ("positions" only for stride-1 layers with short columns).
        "direct" runs each part of a layer that the compiled loops of
        conv_kernels.py can run (forward: always; dW and dx: stride 1) as
        those loops, the rest as "auto" would. "auto" picks per part of each
        layer, by its shape:
          forward and dx: the compiled loops where the array read has at
            least `direct_min_channels` channels a group (C/groups; for dx
            C_out/groups) and a column holds at least `direct_min_taps`
            values (those channels * KH*KW). The loops copy each window
            row's channels as one run and sum along the column; with the
            images' 3 channels (conv1 of both nets: K = 75, 363) the runs
            are short, the sums too, and the loops take 1.2-2.6x the time of
            the BLAS's schedule;
          dW: the compiled loops for stride 1 (their sums run along OW*N
            values whatever the kernel), the BLAS for larger strides;
          and all three only for layers with at most `direct_max_channels`
            channels a group on one side (min(C, C_out)/groups), unless the
            BLAS runs narrower vectors than the loops (conv.vector_widths:
            numba compiles the loops for this CPU, AVX-512 where it has it;
            OpenBLAS may run AVX2 kernels on it, as OPENBLAS_CORETYPE=Haswell
            makes it). Against OpenBLAS's AVX-512 kernels the loops win where
            a GEMM would have a dimension of 32-64 channels (the CIFAR net:
            1.03-1.5x; the paper's conv2, 48 channels a group: 1.1-1.7x) and
            lose on the paper's conv3-5 (192-384 channels: 0.6-0.9x); against
            its AVX2 kernels they win on every layer with >= 32 channels
            (1.1-2.2x). benchmarks/bench_conv.py --options times each part of
            each layer of both nets both ways (docs/results.md);
          the rest: positions where they apply, else chunks.
        Without numba (or with compiled_conv off) "auto" and "direct" are
        "positions"/"chunks" as before.
    chunk_columns: images per GEMM, at least this many columns (BLAS repacks W on
        every call, so tiny GEMMs waste it).
    chunk_bytes: else as many images as keep a chunk's columns this small (in cache).
    chwn_min_chunk: chunks of at least this many images write y as CHWN: runs
        of >= this many values per copy are long enough to pay.
    block_columns: within a chunk, im2col and the GEMM go a block of output rows
        at a time, about `block_bytes` of columns, at least this many columns
        (a block stays in cache from im2col to its GEMM); None: whole chunks.
    block_bytes: the size of such a block (and of a block of positions).
    dx_as_conv: with stride 1 and C_out <= C, dx is a convolution of the padded
        dy with the flipped kernels (its GEMM writes C rows, not C*KH*KW).
    compiled_pooling: pooling through the numba loops of pool_kernels.py (one
        pass per window instead of K*K array passes); MINIDL_NUMBA=0 turns it off.
    compiled_conv: the convolution's compiled loops (conv_kernels.py) may run
        (see conv_schedule); MINIDL_NUMBA=0 turns them off.
    direct_min_channels, direct_min_taps: the fewest channels a group, and
        the shortest column, that the compiled forward and dx loops take
        under "auto" (see conv_schedule).
    direct_max_channels: under "auto", beside a BLAS as wide as the loops,
        the loops run only layers with at most this many channels a group
        on one side (see conv_schedule).
    loop_bytes: the compiled loops go through x in blocks of about this many
        bytes (rows of the forward's window buffers, runs of dW's taps), so
        that each row of W (of dy) is read once per block, from cache.
    lrn_chunk_bytes: LRN goes a few images at a time, about this many bytes,
        so its ~10 passes find their data in cache.
    elementwise_grain: ReLU and tanh split over threads only above this many elements.
    linear_min_flops: fully connected layers split over threads only above this.
    """
    threads: int | None = None
    conv_schedule: str = "auto"
    chunk_columns: int = 2048
    chunk_bytes: int = 4 << 20
    chwn_min_chunk: int = 8
    block_columns: int | None = 512
    block_bytes: int = 2 << 20
    dx_as_conv: bool = True
    compiled_pooling: bool = dataclasses.field(
        default_factory=lambda: os.environ.get("MINIDL_NUMBA", "1") != "0")
    compiled_conv: bool = dataclasses.field(
        default_factory=lambda: os.environ.get("MINIDL_NUMBA", "1") != "0")
    direct_min_channels: int = 8
    direct_max_channels: int = 64
    direct_min_taps: int = 256
    loop_bytes: int = 256 << 10
    lrn_chunk_bytes: int = 256 << 10
    elementwise_grain: int = 1 << 16
    linear_min_flops: int = 1 << 24

    def __post_init__(self):
        if self.conv_schedule not in ("auto", "direct", "positions", "chunks"):
            raise ValueError(f"Plan: expected conv_schedule 'auto', 'direct', 'positions' or "
                             f"'chunks', found {self.conv_schedule!r}")
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"Plan: expected threads a positive int or None, found "
                             f"{self.threads!r}")
        for name in ("chunk_columns", "chunk_bytes", "chwn_min_chunk", "block_bytes",
                     "direct_min_channels", "direct_max_channels", "direct_min_taps",
                     "loop_bytes", "lrn_chunk_bytes", "elementwise_grain", "linear_min_flops"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Plan: expected {name} a positive int, found {v!r}")


def _from_env() -> bool:
    value = os.environ.get(_ENV, "1").strip()
    if value not in ("0", "1", ""):
        raise ValueError(f"{_ENV}: expected 0 (the plain path everywhere) or 1 (the CPU fast "
                         f"path, the default), found {value!r}")
    return value != "0"


_state = {"enabled": _from_env(), "plan": Plan()}


def enabled() -> bool:
    """True while NumPy arrays take the CPU fast path."""
    return _state["enabled"]


def current_plan() -> Plan:
    """The knobs the fast path runs with now."""
    return _state["plan"]


def plan_for(xp) -> Plan | None:
    """The Plan for arrays of module `xp` (numpy or cupy): None means the plain path."""
    return _state["plan"] if xp is np and _state["enabled"] else None


class use_fast_path:                                  # noqa: N801  (used like a function)
    """Turn the CPU fast path on or off, and/or give it new knobs.

    ``use_fast_path(False)`` takes effect at once and stays; used as
    ``with use_fast_path(...):`` the previous setting comes back at the end.
    `plan` None keeps the current Plan.
    """

    def __init__(self, enabled: bool = True, plan: Plan | None = None):
        if not isinstance(enabled, bool):
            raise ValueError(f"use_fast_path: expected enabled True or False, found {enabled!r}")
        if plan is not None and not isinstance(plan, Plan):
            raise ValueError(f"use_fast_path: expected plan a minidl.cpu.Plan, found "
                             f"{type(plan).__name__}; build one with minidl.cpu.Plan(...)")
        self._before = dict(_state)
        _state["enabled"] = enabled
        if plan is not None:
            _state["plan"] = plan

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.update(self._before)
        return False

"""Memory reuse on the CPU: scratch arrays kept between calls, and freed
memory kept by malloc for the next training step.

Scratch arrays (`workspace`): the fast path's im2col blocks, chunk outputs
and partial sums live in flat buffers, one per name, dtype and thread, grown
to the largest size asked for and reused by every later call: a freshly
allocated large array page-faults on every first touch. Never returned to
a caller. CuPy needs none of this: its memory pool reuses device memory.

Freed memory (`keep_freed_memory`): a training step allocates the same big
arrays every time (each layer's output, each gradient). By default glibc's
malloc serves an array that large with a fresh mapping from the kernel, or
returns the top of its heap once enough of it is free; either way the next
step's arrays land on new pages that the kernel zeroes on first touch. After

    minidl.keep_freed_memory()

malloc keeps what it frees and hands it out again. The process holds on to
its peak memory (its resident size does not fall between steps). It is one
process-wide setting (two `mallopt` calls): it also applies to PyTorch or
anything else in the process. alexnet's Trainer sets it when training on the
CPU; a library user calls it once, before the training loop. Elsewhere than
Linux with glibc it does nothing and returns False.
"""
from __future__ import annotations

import ctypes
import math
import sys
import threading

import numpy as np

_M_TRIM_THRESHOLD = -1     # from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_LARGEST = 1 << 30         # blocks up to 1 GiB come from the heap, not from fresh mappings
_NEVER_TRIM = 2 ** 31 - 1  # the largest value M_TRIM_THRESHOLD takes (an int)

_kept = False


def _platform() -> str:
    return sys.platform


def keep_freed_memory() -> bool:
    """Make malloc keep freed memory for reuse (see the module docstring).

    Returns True once the setting is in effect (now or from an earlier call),
    False where it cannot be made (not Linux with glibc). Never raises.
    """
    global _kept
    if _kept:
        return True
    if not _platform().startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)              # the C library this process already runs
        libc.gnu_get_libc_version             # glibc only: the two options are glibc's
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # setting either also stops glibc from adjusting the two thresholds itself
    _kept = bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
    return _kept


# ----------------------------------------------------------------------------
# Scratch arrays, per thread (two threads running ops never share one)
# ----------------------------------------------------------------------------
_local = threading.local()


def workspace(name, shape, dtype):
    """A contiguous NumPy scratch array of `shape`: a view of one flat buffer per
    (name, dtype, thread), grown to the largest size asked for so far."""
    size = math.prod(shape)          # not np.prod: far slower on a tuple, called per block
    buffers = _local.__dict__.setdefault("buffers", {})
    key = (name, np.dtype(dtype).str)
    buf = buffers.get(key)
    if buf is None or buf.size < size:
        buf = buffers[key] = np.zeros(size, dtype)  # zeros: touch the pages once, now
    return buf[:size].reshape(shape)


def clear_workspaces():
    """Free this thread's scratch arrays (they are rebuilt on the next call)."""
    _local.__dict__.pop("buffers", None)

"""Memory freed by one training step, kept for the next (glibc's malloc).

A training step allocates the same big arrays every time: each layer's output,
each gradient (about 120 MB a step for the CIFAR net at batch 128). By default
glibc's malloc serves an array that large with a fresh mapping from the kernel,
or returns the top of its heap to the kernel once enough of it is free. Either
way the next step's arrays land on new pages, and the kernel zeroes every page
on first touch: in a profile of the CIFAR step, `clear_page` and page faults
took 6-9% of the time. After

    minidl.keep_freed_memory()

malloc keeps what it frees and hands it out again: the next step's arrays
reuse those pages and fault none. The process holds on to its peak memory
(its resident size does not fall between steps; it barely rises: 117 MB
against 119 MB after 20 CIFAR steps). The CIFAR step took 0.87-0.93x the time
(separate processes, alternated), the paper's net's step at batch 128
0.85-0.88x (benchmarks/bench_alexnet.py with and without --default-malloc).

It is one process-wide setting (two `mallopt` calls), not a minidl one: it
also applies to PyTorch or anything else in the process that allocates through
malloc. alexnet's Trainer sets it when training on the CPU; a library user
calls it once, before the training loop. Elsewhere than Linux with glibc it
does nothing and returns False.
"""
from __future__ import annotations

import ctypes
import sys

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

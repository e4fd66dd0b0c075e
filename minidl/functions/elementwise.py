"""`fused`: a chain of elementwise operations as one GPU kernel.

On CuPy, ``cupy.fuse`` compiles a Python function of array operators into a
single kernel: ``g * (1 - y * y)`` then reads g and y once and launches once,
instead of three kernels with two temporaries. On NumPy the function simply
runs as written. Write the function with operators and ``xp``-free code
(``+ - * / ** > ^ >>``, Python and NumPy scalars), so that it means the same
on both.
"""
from __future__ import annotations

import functools

import numpy as np

from ..backend import array_module


def fused(fn):
    """fn itself on NumPy arrays; ``xp.fuse(fn)`` on CuPy (compiled once)."""
    compiled = {}

    @functools.wraps(fn)
    def call(*args):
        xp = array_module(args[0])
        if xp is np:
            return fn(*args)
        if xp not in compiled:
            compiled[xp] = xp.fuse(fn)
        return compiled[xp](*args)
    return call

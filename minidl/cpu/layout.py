"""Where image activations live in memory: NCHW, or CHWN under an NCHW view.

Every image layer takes and returns arrays of shape (N, C, H, W). In memory
such an array is either

    NCHW   the usual C-order array: one image after another;
    CHWN   a C-order (C, H, W, N) array seen through ``.transpose(3, 0, 1, 2)``:
           the batch is the fastest axis, as in the paper's own code
           (cuda-convnet keeps activations as (C, H, W, N)).

The shape, the values and every NumPy operation are the same for both; only
the speed differs. The fast convolution computes its output as (C_out,
H*W*N) matrices, so it hands that out as CHWN when its chunks are large
enough and saves the transpose (see conv.py); pooling then runs along runs
of N images instead of rows of W pixels, which pays for rows of 13-32 values.

Pooling reads either layout through `planes` and writes its output in the
layout it read; ReLU and tanh keep their input's layout (NumPy's elementwise
outputs follow their inputs). LRN accepts both.
"""
from __future__ import annotations

from ..backend import array_module


def is_chwn(x) -> bool:
    """True if the (N, C, H, W) array x is a view of a C-contiguous (C, H, W, N) array."""
    return x.ndim == 4 and x.transpose(1, 2, 3, 0).flags.c_contiguous and not x.flags.c_contiguous


def empty_chwn(xp, shape, dtype):
    """An uninitialized (N, C, H, W) array stored as CHWN."""
    N, C, H, W = shape
    return xp.empty((C, H, W, N), dtype).transpose(3, 0, 1, 2)


def planes(x, chwn=None):
    """x (N, C, H, W) as a (B, H, W, T) array, and the inverse map.

    NCHW -> (N*C, H, W, 1);  CHWN -> (C, H, W, N). With chwn=None the
    arrangement follows x's memory (a view; any other layout is first copied
    to NCHW); True or False asks for that arrangement, a view when x already
    lies so, else a copy (a gradient arranged as its layer's output was).
    Returns (x4, back) with back(y4) mapping a (B, h, w, T) array of the same
    arrangement to its (N, C, h, w) view.
    """
    N, C, H, W = x.shape
    if chwn is None:
        chwn = is_chwn(x)
    if chwn:
        xt = x.transpose(1, 2, 3, 0)
        if not xt.flags.c_contiguous:
            xt = array_module(x).ascontiguousarray(xt)
        return xt, lambda y4: y4.transpose(3, 0, 1, 2)
    return (x.reshape(N * C, H, W, 1),                 # a copy only if x is not C-contiguous
            lambda y4: y4.reshape(N, C, y4.shape[1], y4.shape[2]))

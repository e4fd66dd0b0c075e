"""Dropout as Section 4.2 writes it.

Training: each unit's output is set to zero with probability p.
Testing: every unit is used, its output multiplied by (1 - p) (0.5 in the
paper), which is the expected value of the training-time output. (Modern
"inverted" dropout scales by 1/(1-p) at training instead. The trained
networks then differ by a factor 1/(1-p) in the next layer's weights, so
weights are not interchangeable between the two conventions, and learning
rate and weight decay act on differently scaled weights.)
"""
from __future__ import annotations

from ..autograd import Function
from ..backend import get_device
from .. import random as mrandom


class Dropout(Function):
    def __init__(self, p, mask=None):
        self.p, self.mask = p, mask

    def forward(self, x):
        if self.mask is None:            # test time: y = (1 - p) x
            return x * x.dtype.type(1 - self.p)
        return x * self.mask

    def backward(self, g):
        if self.mask is None:
            return g * g.dtype.type(1 - self.p)
        return g * self.mask


def dropout(x, p=0.5, train=True, generator=None):
    """Drop units with probability `p` when `train`, else scale by 1 - p.

    The mask is drawn on the host from `generator` (a numpy Generator; by
    default minidl's global one, see `minidl.random`), so a seeded run is the
    same on the CPU and the GPU and its state goes into a checkpoint.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout: expected 0 <= p < 1, found p={p}")
    if not train or p == 0:
        return Dropout(p)(x)
    rng = generator if generator is not None else mrandom.default_generator()
    keep = rng.random(x.shape, dtype="float32") >= p
    mask = get_device(x.device).put(keep, dtype=x.dtype)
    return Dropout(p, mask)(x)

"""Dropout as Section 4.2 writes it.

Training: each unit's output is set to zero with probability p.
Testing: every unit is used, its output multiplied by (1 - p) (0.5 in the
paper), which is the expected value of the training-time output. (Modern
"inverted" dropout scales by 1/(1-p) at training instead. The trained
networks then differ by a factor 1/(1-p) in the next layer's weights, so
weights are not interchangeable between the two conventions, and learning
rate and weight decay act on differently scaled weights.)

The mask is a hash, not a stream of random numbers. Each call draws a key
(two 32-bit integers) from minidl's host generator (minidl.random, which
checkpoints save); unit i is kept when

    mix(mix(i * 0x9E3779B9 + key0) ^ key1) >= p * 2^32

with `mix` a 32-bit integer hash (multiply and xor-shift rounds). Why a hash:
it is computed where the array lives, in one elementwise kernel on a GPU
(no mask drawn on the host and uploaded every step); it gives the same mask
on NumPy and CuPy for the same key, so CPU and GPU runs agree; a resumed run
draws the same keys; and backward recomputes the mask from the key instead
of keeping it.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import array_module
from .. import random as mrandom
from .elementwise import fused

_GOLDEN = np.uint32(0x9E3779B9)           # 2^32 / golden ratio: spreads consecutive i
_M1, _M2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)
_S15, _S16 = np.uint32(15), np.uint32(16)


def _mix(h):
    """A 32-bit integer hash (uint32 arrays wrap around): three xor-shifts, two multiplies."""
    h = h ^ (h >> _S16)
    h = h * _M1
    h = h ^ (h >> _S15)
    h = h * _M2
    return h ^ (h >> _S16)


@fused
def _masked(a, i, key0, key1, threshold):
    """a where unit i is kept (its hash >= threshold), else 0."""
    return a * (_mix(_mix(i * _GOLDEN + key0) ^ key1) >= threshold)


class Dropout(Function):
    """y = x * mask (training, `key` given) or y = (1 - p) x (testing, key None);
    the gradient is multiplied alike. Keeps only the key. The counters of x's
    units start at `first` (x's place in a larger batch, see `dropout`)."""

    def __init__(self, p, key=None, first=0):
        self.p, self.key, self.first = p, key, first

    def forward(self, x):
        return self._apply(x)

    def backward(self, g):
        return self._apply(g)

    def _apply(self, a):
        if self.key is None:                 # test time
            return a * a.dtype.type(1 - self.p)
        xp = array_module(a)
        if self.first + a.size > 2 ** 32:
            raise ValueError(f"dropout: expected fewer than 2^32 units in a batch, found "
                             f"{self.first + a.size} (x of shape {a.shape}); apply dropout to "
                             "smaller pieces")
        i = xp.arange(self.first, self.first + a.size, dtype=xp.uint32).reshape(a.shape)
        threshold = np.uint32(min(round(self.p * 2 ** 32), 2 ** 32 - 1))
        return _masked(a, i, np.uint32(self.key[0]), np.uint32(self.key[1]), threshold)


def dropout(x, p=0.5, train=True, generator=None):
    """Drop units with probability `p` when `train`, else scale by 1 - p.

    The key of the mask is drawn from `generator` (a numpy Generator; by
    default minidl's global one, see `minidl.random`); the mask itself is
    computed on x's device (see the module docstring). A generator with a
    method ``first_unit(n)`` also says where x's n units start among a larger
    batch's: each of several processes holding a share of one batch
    (alexnet.distributed) then computes its rows of the whole batch's mask.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout: expected 0 <= p < 1, found p={p}")
    if not train or p == 0:
        return Dropout(p)(x)
    rng = generator if generator is not None else mrandom.default_generator()
    key = tuple(int(k) for k in rng.integers(0, 2 ** 32, size=2, dtype=np.uint64))
    first = rng.first_unit(x.size) if hasattr(rng, "first_unit") else 0
    return Dropout(p, key, first)(x)

"""Moving a tensor between devices: the only op whose input and output live
on different devices. In the two-GPU net of Section 3.2 these copies are the
places where Figure 2's columns cross."""
from __future__ import annotations

from ..autograd import Function
from ..backend import get_device, is_cupy_array


class Copy(Function):
    """y = x on device `dst`; backward sends the gradient home to x's device."""

    def __init__(self, dst):
        self.dst = get_device(dst)

    def output_device(self, inputs):
        self.src = inputs[0].device
        return self.dst

    def forward(self, x):
        y = self.dst.put(x)
        if y is x or (not is_cupy_array(y) and y.base is x):
            y = y.copy()      # virtual cpu:N devices: a real copy, as a transfer would be
        return y

    def backward(self, g):
        return self.src.put(g)


def copy(x, device):
    """x on `device` (a Device or 'cpu', 'cpu:1', 'cuda:0', ...), differentiably."""
    return Copy(device)(x)

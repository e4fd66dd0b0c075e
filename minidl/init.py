"""Weight initialisation (Section 5 of the paper).

"We initialized the weights in each layer from a zero-mean Gaussian
distribution with standard deviation 0.01. We initialized the neuron biases
in the second, fourth, and fifth convolutional layers, as well as in the
fully-connected hidden layers, with the constant 1. ... the remaining
layers with the constant 0."

Draws come from minidl's global generator (`minidl.random`) unless one is
given, on the host, so a seed gives the same net on the CPU and the GPU.
"""
from __future__ import annotations

from . import random as mrandom


def normal_(param, std=0.01, mean=0.0, generator=None):
    """Fill `param` in place with draws from N(mean, std^2)."""
    rng = generator if generator is not None else mrandom.default_generator()
    values = rng.normal(mean, std, size=param.shape)
    param.copy_(values)
    return param


def constant_(param, value):
    """Fill `param` in place with `value`."""
    param.device.run(param.data.fill, value)
    return param

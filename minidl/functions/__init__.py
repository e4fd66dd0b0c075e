"""Every differentiable op of minidl, one file per family.

Each op is a `Function` subclass (forward/backward on plain arrays) and a
lowercase wrapper that takes and returns Tensors: ``relu(x)`` is ``ReLU()(x)``.
"""
from .math import (add, sub, mul, div, neg, power, exp, log, matmul, sum, mean,  # noqa: A004
                   reshape, flatten, transpose, concat, split, getitem, sum_to)
from .activation import relu, tanh, sigmoid
from .linear import linear
from .conv import conv2d, im2col, col2im
from .local import locally_connected
from .pool import max_pool2d, avg_pool2d
from .lrn import local_response_norm
from .dropout import dropout
from .loss import check_labels, softmax, log_softmax, softmax_cross_entropy
from .transfer import copy

__all__ = [
    "add", "sub", "mul", "div", "neg", "power", "exp", "log", "matmul", "sum", "mean",
    "reshape", "flatten", "transpose", "concat", "split", "getitem", "sum_to",
    "relu", "tanh", "sigmoid", "linear", "conv2d", "im2col", "col2im", "locally_connected",
    "max_pool2d", "avg_pool2d", "local_response_norm", "dropout",
    "check_labels", "softmax", "log_softmax", "softmax_cross_entropy", "copy",
]

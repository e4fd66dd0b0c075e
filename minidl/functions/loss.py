"""Softmax and the multinomial logistic loss (Section 3.5: the network
"maximizes the multinomial logistic regression objective")."""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ..backend import array_module


def _log_softmax(x, axis):
    xp = array_module(x)
    z = x - x.max(axis=axis, keepdims=True)          # exp never overflows
    return z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))


class Softmax(Function):
    """y_i = exp(x_i) / sum_j exp(x_j);  dx = y * (g - sum(g * y))."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        self.y = array_module(x).exp(_log_softmax(x, self.axis))
        return self.y

    def backward(self, g):
        return self.y * (g - (g * self.y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x);  dx = g - softmax(x) * sum(g)."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        self.y = _log_softmax(x, self.axis)
        return self.y

    def backward(self, g):
        xp = array_module(g)
        return g - xp.exp(self.y) * g.sum(axis=self.axis, keepdims=True)


class SoftmaxCrossEntropy(Function):
    """Mean over the batch of -log softmax(logits)[label].

    Shapes: logits (N, K) float, labels (N,) integers in [0, K).
    Backward: d logits = (softmax(logits) - onehot(labels)) / N.
    Stable for huge logits: the max is subtracted before exp.
    """

    def __init__(self, labels):
        self.labels = labels

    def forward(self, x):
        xp = array_module(x)
        labels = self.labels
        if x.ndim != 2:
            raise ValueError(f"softmax_cross_entropy: expected logits of shape (N, classes), "
                             f"found {x.shape}")
        if labels.shape != (x.shape[0],):
            raise ValueError(f"softmax_cross_entropy: expected labels of shape ({x.shape[0]},) "
                             f"to match the logits, found {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise ValueError(f"softmax_cross_entropy: expected integer class labels, found "
                             f"dtype {labels.dtype}")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= x.shape[1]):
            raise ValueError(f"softmax_cross_entropy: labels must lie in [0, {x.shape[1]}) for "
                             f"{x.shape[1]} classes; found values from {int(labels.min())} to "
                             f"{int(labels.max())}")
        logp = _log_softmax(x, axis=1)
        self.logp = logp
        n = x.shape[0]
        return -logp[xp.arange(n), labels].mean(keepdims=False).astype(x.dtype)

    def backward(self, g):
        xp = array_module(g)
        n = self.logp.shape[0]
        d = xp.exp(self.logp)
        d[xp.arange(n), self.labels] -= 1
        d *= g / n
        return d


def softmax(x, axis=-1):
    return Softmax(axis)(x)


def log_softmax(x, axis=-1):
    return LogSoftmax(axis)(x)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of integer `labels` (array or Tensor, shape (N,)) under softmax(logits)."""
    labels = labels.data if isinstance(labels, Tensor) else labels
    xp = logits.device.xp
    labels = labels if isinstance(labels, xp.ndarray) else logits.device.put(np.asarray(labels))
    return SoftmaxCrossEntropy(labels)(logits)

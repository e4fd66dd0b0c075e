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


def check_labels(labels, classes):
    """Raise a ValueError unless the host (NumPy) `labels` are integers in [0, classes);
    returns them. Check labels here, on the host, before they go to a GPU."""
    if labels.dtype.kind not in "iu":
        raise ValueError(f"softmax_cross_entropy: expected integer class labels, found "
                         f"dtype {labels.dtype}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"softmax_cross_entropy: labels must lie in [0, {classes}) for "
                         f"{classes} classes; found values from {int(labels.min())} to "
                         f"{int(labels.max())}")
    return labels


class SoftmaxCrossEntropy(Function):
    """Mean over the batch of -log softmax(logits)[label].

    Shapes: logits (N, K) float, labels (N,) integers in [0, K).
    Backward: d logits = (softmax(logits) - onehot(labels)) / N.
    Stable for huge logits: the max is subtracted before exp.

    Labels out of range: NumPy labels are checked on the host (a ValueError).
    Labels already on a GPU are not read back (that would stall the device
    every step); a row with a label out of range makes the loss and its
    gradient NaN instead, which no training run can miss. (The wrapper
    `softmax_cross_entropy` checks host labels before uploading them.)
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
        n, classes = x.shape
        if xp is np:
            check_labels(labels, classes)
            self.bad = None
        elif labels.dtype.kind not in "iu":
            raise ValueError(f"softmax_cross_entropy: expected integer class labels, found "
                             f"dtype {labels.dtype}")
        else:                                      # on the device: NaN rows, no host read
            self.bad = ((labels < 0) | (labels >= classes))[:, None]          # (N, 1)
            labels = self.labels = xp.clip(labels, 0, classes - 1)
        self.logp = logp = _log_softmax(x, axis=1)
        picked = logp[xp.arange(n), labels]                                    # (N,)
        if self.bad is not None:
            picked = xp.where(self.bad[:, 0], xp.nan, picked)
        return -picked.mean(keepdims=False).astype(x.dtype)

    def backward(self, g):
        xp = array_module(g)
        n = self.logp.shape[0]
        d = xp.exp(self.logp)
        d[xp.arange(n), self.labels] -= 1
        d *= g / n
        return d if self.bad is None else xp.where(self.bad, xp.nan, d).astype(d.dtype)


def softmax(x, axis=-1):
    return Softmax(axis)(x)


def log_softmax(x, axis=-1):
    return LogSoftmax(axis)(x)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of integer `labels` (array or Tensor, shape (N,)) under
    softmax(logits). Host labels for a GPU are checked here, before the upload."""
    labels = labels.data if isinstance(labels, Tensor) else labels
    xp = logits.device.xp
    if not isinstance(labels, xp.ndarray):
        labels = np.asarray(labels)
        if xp is not np and logits.ndim == 2:
            check_labels(labels, logits.shape[1])
        labels = logits.device.put(labels)
    return SoftmaxCrossEntropy(labels)(logits)

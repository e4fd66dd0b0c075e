"""Numerical gradient checking: the test every Function must pass.

``gradcheck(f, *inputs)`` compares the gradient that backward computes with
central differences, for every element of every input:

    dL/dx[i] ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps),   L = sum(g * f(x))

where g is a fixed random upstream gradient (a random g catches errors that
an all-ones g hides, e.g. a transposed gradient of a square matrix). Inputs
are promoted to float64: float32 differences are too coarse to check.
"""
from __future__ import annotations

import numpy as np

from .autograd import Tensor
from .backend import to_numpy


def _as_float64_tensor(x):
    device = x.device if isinstance(x, Tensor) else None
    data = to_numpy(x.data if isinstance(x, Tensor) else x).astype(np.float64)
    return data, device


def gradcheck(f, *inputs, eps=1e-6, seed=0, tol=None):
    """Worst relative error between backward's gradients and central differences.

    Args:
        f: a function of tensors returning one tensor (close over anything
            that is not a differentiable input: ``lambda x, w: conv2d(x, w, stride=2)``).
        inputs: arrays or Tensors, each differentiated; converted to float64.
        eps: the finite-difference step.
        seed: seeds the random upstream gradient.
        tol: if given, raise AssertionError naming the input and element
            when the error exceeds it.

    Returns:
        max over inputs and elements of |a - n| / max(|a| + |n|, floor), with
        a the analytic and n the numerical gradient, and floor = 1e-3 times the
        input's largest gradient: elements a thousand times smaller than that
        are compared on that scale, where central differences in float64
        (round-off ~1e-10 of the loss) cannot resolve them better.
    """
    arrays, devices = zip(*(_as_float64_tensor(x) for x in inputs))

    def make(values):
        return [Tensor(v, requires_grad=True, device=d) for v, d in zip(values, devices)]

    tensors = make(arrays)
    y = f(*tensors)
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(y.shape)
    y.backward(y.device.put(g))

    def loss(values):
        out = f(*[Tensor(v, device=d) for v, d in zip(values, devices)])
        return float(np.sum(to_numpy(out.data) * g))

    worst = 0.0
    for k, (x, t) in enumerate(zip(arrays, tensors)):
        analytic = np.zeros_like(x) if t.grad is None else to_numpy(t.grad)
        numeric = np.empty_like(x)
        values = [a.copy() for a in arrays]
        flat = values[k].reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            plus = loss(values)
            flat[i] = old - eps
            minus = loss(values)
            flat[i] = old
            numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
        scale = max(np.abs(numeric).max(initial=0), np.abs(analytic).max(initial=0))
        floor = 1e-3 * scale + 1e-12
        err = np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)
        worst_here = float(err.max(initial=0.0))
        if tol is not None and worst_here > tol:
            i = np.unravel_index(int(err.argmax()), x.shape)
            raise AssertionError(
                f"gradcheck: input {k} (shape {x.shape}) element {i}: backward gives "
                f"{analytic[i]:.6g}, central differences {numeric[i]:.6g} "
                f"(relative error {worst_here:.2e} > tol {tol:.0e})")
        worst = max(worst, worst_here)
    return worst

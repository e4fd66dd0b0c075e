"""Stochastic gradient descent exactly as Section 5 writes it, and the
learning-rate schedule the paper used.

    v <- 0.9 v - 0.0005 * eps * w - eps * <dL/dw>_batch
    w <- w + v

Note where weight decay sits: it is multiplied by the learning rate eps
inside the velocity, like the gradient (so dividing eps by 10 also weakens
decay), and momentum is applied to the velocity, not to the gradient.
"""
from __future__ import annotations

import numpy as np

from .backend import to_numpy


class SGD:
    """SGD with momentum and weight decay, Section 5.

    Args:
        params: the Parameters to update (their ``.grad`` holds <dL/dw>_batch).
        lr: eps, the learning rate (0.01 in the paper).
        momentum: 0.9 in the paper.
        weight_decay: 0.0005 in the paper.
        per_param: optional {parameter index: (learning-rate multiplier, weight decay)} for
            parameters that differ from the rest, as cuda-convnet's per-layer epsW, epsB and
            wc do (its CIFAR-10 nets: biases at twice the weights' rate, decay only in the
            top layers). The paper's net uses none.
    """

    def __init__(self, params, lr=0.01, momentum=0.9, weight_decay=0.0005, per_param=None):
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD: expected at least one parameter, found none")
        self.lr, self.momentum, self.weight_decay = self.check(lr, momentum, weight_decay)
        self.per_param = dict(per_param or {})
        for i, (mult, decay) in self.per_param.items():
            if not 0 <= i < len(self.params) or mult <= 0 or decay < 0:
                raise ValueError(f"SGD: per_param expects {{index in 0..{len(self.params) - 1}: "
                                 f"(lr multiplier > 0, weight decay >= 0)}}; found {i}: "
                                 f"({mult}, {decay})")
        self.velocity = [p.device.zeros(p.shape, p.dtype) for p in self.params]

    @staticmethod
    def check(lr, momentum, weight_decay, where="SGD"):
        """(lr, momentum, weight_decay) as floats if lr > 0, 0 <= momentum < 1 and
        weight_decay >= 0 (all finite); else ValueError. The constructor's check, and
        `load_state_dict`'s: a saved state is held to the same rule."""
        def number(v):
            return (not isinstance(v, bool) and isinstance(v, (int, float, np.floating))
                    and np.isfinite(v))
        if not (number(lr) and number(momentum) and number(weight_decay)
                and lr > 0 and 0 <= momentum < 1 and weight_decay >= 0):
            raise ValueError(f"{where}: expected lr > 0, 0 <= momentum < 1, weight_decay >= 0, "
                             f"all finite; found lr={lr!r}, momentum={momentum!r}, "
                             f"weight_decay={weight_decay!r}")
        return float(lr), float(momentum), float(weight_decay)

    # Elements updated at a time on the CPU: w, v, the gradient and one scratch
    # block (4 x 256 KiB in float32) stay in cache through the four lines of the
    # update, instead of each line streaming all 61M parameters through memory.
    block = 1 << 16

    def step(self):
        """One update of every parameter that has a gradient.

        The same arithmetic, in the same order, as the four lines of the rule;
        done in place through one small scratch array (no temporaries the size
        of fc6's weights) and, on the CPU, a block of elements at a time.
        """
        m = self.momentum
        for i, (p, v) in enumerate(zip(self.params, self.velocity)):
            if p.grad is None:
                continue
            mult, wd = self.per_param.get(i, (1.0, self.weight_decay))
            lr = self.lr * mult
            with p.device:
                xp = p.device.xp
                if not (p.data.flags.c_contiguous and v.flags.c_contiguous):
                    p.data, self.velocity[i] = xp.ascontiguousarray(p.data), xp.ascontiguousarray(v)
                    v = self.velocity[i]
                w, g, v = p.data.reshape(-1), xp.ascontiguousarray(p.grad).reshape(-1), v.reshape(-1)
                n = self.block if xp is np else w.size     # a GPU does it in one go
                scratch = xp.empty(min(n, w.size), w.dtype)
                for a in range(0, w.size, n):
                    wb, gb, vb = w[a:a + n], g[a:a + n], v[a:a + n]
                    s = scratch[:wb.size]
                    vb *= m                                # 0.9 v
                    vb -= xp.multiply(wb, wd * lr, out=s)  # - 0.0005 eps w
                    vb -= xp.multiply(gb, lr, out=s)       # - eps <dL/dw>
                    wb += vb                               # w <- w + v

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "velocity": [to_numpy(v).copy() for v in self.velocity]}

    def load_state_dict(self, state):
        velocity = state["velocity"]
        if len(velocity) != len(self.params):
            raise ValueError(f"SGD.load_state_dict: the state holds {len(velocity)} velocities, "
                             f"this optimizer has {len(self.params)} parameters")
        for i, (p, v) in enumerate(zip(self.params, velocity)):
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"SGD.load_state_dict: velocity {i} has shape {tuple(v.shape)}, "
                                 f"its parameter {p.shape}")
        lr, momentum, weight_decay = self.check(state["lr"], state["momentum"],
                                                state["weight_decay"], "SGD.load_state_dict")
        self.velocity = [p.device.put(np.asarray(v), dtype=p.dtype)
                         for p, v in zip(self.params, velocity)]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay


class ReduceOnPlateau:
    """Divide the learning rate by `factor` when validation error stops improving.

    Section 5: "The heuristic which we followed was to divide the learning
    rate by 10 when the validation error rate stopped improving with the
    current learning rate. ... reduced three times prior to termination."

    ``step(error)`` is called once per epoch. The error "improved" if it is
    below the best seen so far by more than `threshold` (absolute). After
    `patience` epochs without improvement the rate is divided, at most
    `max_reductions` times; the wait starts afresh after each division.
    """

    def __init__(self, optimizer, factor=10.0, patience=3, threshold=1e-3, max_reductions=3):
        self.optimizer, self.factor, self.patience = optimizer, factor, patience
        self.threshold, self.max_reductions = threshold, max_reductions
        self.best, self.bad_epochs, self.reductions = float("inf"), 0, 0

    def step(self, error) -> bool:
        """Record this epoch's validation error; True if the rate was divided."""
        if error < self.best - self.threshold:
            self.best, self.bad_epochs = float(error), 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.reductions < self.max_reductions:
            self.optimizer.lr /= self.factor
            self.reductions += 1
            self.bad_epochs = 0
            return True
        return False

    @property
    def exhausted(self) -> bool:
        """True once the rate has been divided `max_reductions` times."""
        return self.reductions >= self.max_reductions

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs, "reductions": self.reductions,
                "factor": self.factor, "patience": self.patience,
                "threshold": self.threshold, "max_reductions": self.max_reductions}

    def load_state_dict(self, state):
        counts = [state[k] for k in ("bad_epochs", "reductions", "patience", "max_reductions")]
        if not (all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
                and _positive(state["factor"]) and _number(state["best"])
                and _number(state["threshold"]) and state["threshold"] >= 0):
            raise ValueError(f"ReduceOnPlateau.load_state_dict: expected counts >= 0, factor > 0 "
                             f"and finite numbers; found {state!r:.200}")
        for key in ("best", "bad_epochs", "reductions", "factor", "patience", "threshold",
                    "max_reductions"):
            setattr(self, key, state[key])


class StepSchedule:
    """Divide the rate by `factor` at fixed epochs (the 2012 run: 23, 51, 78)."""

    def __init__(self, optimizer, milestones, factor=10.0):
        self.optimizer, self.milestones, self.factor = optimizer, sorted(milestones), factor
        self.base_lr = optimizer.lr

    def lr_at(self, epoch):
        return self.base_lr / self.factor ** sum(epoch >= m for m in self.milestones)

    def set_epoch(self, epoch):
        self.optimizer.lr = self.lr_at(epoch)

    def state_dict(self):
        return {"milestones": list(self.milestones), "factor": self.factor, "base_lr": self.base_lr}

    def load_state_dict(self, state):
        milestones = state["milestones"]
        if not (isinstance(milestones, list) and all(
                isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in milestones)
                and _positive(state["factor"]) and _positive(state["base_lr"])):
            raise ValueError(f"StepSchedule.load_state_dict: expected milestones (whole numbers "
                             f">= 0), factor > 0 and base_lr > 0; found {state!r:.200}")
        self.milestones, self.factor = sorted(milestones), state["factor"]
        self.base_lr = state["base_lr"]


def _number(v):
    """An int or float that is not NaN (infinity allowed: ReduceOnPlateau's best before
    its first epoch)."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and not np.isnan(v)


def _positive(v):
    return _number(v) and np.isfinite(v) and v > 0

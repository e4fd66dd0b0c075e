"""Reverse-mode automatic differentiation on plain NumPy/CuPy arrays.

Two classes carry the whole chain rule:

* `Tensor` wraps an array (``.data``), knows its `Device`, and after
  ``loss.backward()`` holds ``dloss/dself`` in ``.grad`` when it is a leaf
  that ``requires_grad`` (a parameter, typically).
* `Function` is one differentiable op. Subclasses write ``forward(*arrays)``
  and ``backward(*grad_outputs)`` on plain arrays and keep on ``self`` what
  backward needs. Calling a Function on tensors runs forward and, when a
  gradient is wanted, records itself as the ``creator`` of its outputs.

``loss.backward()`` sorts the recorded functions topologically (inputs
before the ops that read them) and walks that list in reverse, handing
each function the gradient of its outputs and collecting the gradients of
its inputs. A tensor read by several ops receives the sum of their
gradients. A recorded function holds its inputs only as edges of the graph
(which op made them, their shape), not their arrays: what its backward
needs, it keeps on itself, so nothing else stays alive until backward.
Once walked, a function drops what it kept, so the activations of a
training step are freed as soon as backward has used them.

A worked example, with every intermediate value, is in docs/autograd.md.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .backend import Device, device_of_array, get_device, is_cupy_array, to_numpy

# ----------------------------------------------------------------------------
# Gradient mode
# ----------------------------------------------------------------------------
_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def no_grad():
    """Run ops without recording them: no graph, no memory kept for backward."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


# ----------------------------------------------------------------------------
# Tensor
# ----------------------------------------------------------------------------
class Tensor:
    """An array, its device, and (after backward) its gradient.

    Args:
        data: a NumPy or CuPy array, or anything ``numpy.asarray`` accepts.
        requires_grad: collect ``.grad`` for this tensor during backward.
        device: where the array lives; default: CuPy arrays on their GPU,
            everything else on ``cpu``. Given explicitly, the array is moved
            there (``cpu:0`` and ``cpu:1`` are NumPy-backed virtual devices).
    """

    __array_priority__ = 1000  # make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, data, requires_grad=False, device=None, name=None):
        if isinstance(data, Tensor):
            raise TypeError("Tensor(data): data is already a Tensor; use t.detach() "
                            "or minidl.copy(t, device) instead")
        if device is None:
            self.device = device_of_array(data)
            self.data = data if is_cupy_array(data) else np.asarray(data)
        else:
            self.device = get_device(device)
            self.data = self.device.put(data)
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.creator = None   # the Function that made this tensor, if recorded
        self.creator_index = 0  # which of the creator's outputs this tensor is
        self.name = name

    # --- array facts ---------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device='{self.device}'{extra})"

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU if needed)."""
        return to_numpy(self.data)

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"item(): expected a tensor of one element, found shape {self.shape}")
        return float(to_numpy(self.data).reshape(-1)[0])

    def detach(self) -> "Tensor":
        """The same array, cut from the graph."""
        t = Tensor.__new__(Tensor)
        t.data, t.device, t.requires_grad, t.grad, t.creator, t.creator_index, t.name = \
            self.data, self.device, False, None, None, 0, self.name
        return t

    # --- backward ------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Fill ``.grad`` of every leaf tensor this one depends on.

        Args:
            grad: dself, same shape as self; default 1 for a one-element tensor.
            retain_graph: keep the recorded graph for a second backward.
        """
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad; no input "
                               "of the ops that made it has requires_grad=True")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward(): grad can be implied only for a one-element "
                                   f"tensor, found shape {self.shape}; pass grad=")
            grad = self.device.run(self.device.xp.ones_like, self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if tuple(grad.shape) != tuple(self.shape):
                raise ValueError(f"backward(): grad must have shape {self.shape}, found {grad.shape}")
            if device_of_array(grad).kind != self.device.kind or (
                    self.device.is_cuda and device_of_array(grad) != self.device):
                raise ValueError(f"backward(): grad must live on '{self.device}' like the tensor, "
                                 f"found it on '{device_of_array(grad)}'; move it with "
                                 f"Device('{self.device}').put(grad)")
        if self.creator is None:  # a leaf: nothing to propagate
            self._accumulate(grad)
            return

        # gradients wait here, keyed by (the function that made a tensor, which output)
        grads = {(id(self.creator), self.creator_index): grad}
        for fn in reversed(_topological_order(self.creator)):
            if fn.inputs is None:
                raise RuntimeError(f"backward(): the graph through {type(fn).__name__} was "
                                   "already freed by an earlier backward; pass retain_graph=True "
                                   "to the first one")
            gys = [grads.pop((id(fn), i), None) for i in range(len(fn.output_meta))]
            if all(g is None for g in gys):
                continue
            with fn.device:
                gys = [g if g is not None else fn.device.xp.zeros(shape, dtype)
                       for g, (shape, dtype) in zip(gys, fn.output_meta)]
                gxs = fn.backward(*gys)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            if len(gxs) != len(fn.inputs):
                raise RuntimeError(f"{type(fn).__name__}.backward returned {len(gxs)} gradients "
                                   f"for {len(fn.inputs)} inputs")
            for x, gx in zip(fn.inputs, gxs):
                if gx is None or not x.requires_grad:
                    continue
                if gx.shape != x.shape:
                    raise RuntimeError(f"{type(fn).__name__}.backward: gradient of shape "
                                       f"{gx.shape} for an input of shape {x.shape}")
                if x.creator is None:
                    x._accumulate(gx)
                else:
                    key = (id(x.creator), x.creator_index)
                    # a new array, never `+=`: gx may be a view of another gradient
                    grads[key] = gx if key not in grads else x.device.run(_add, grads[key], gx)
            if not retain_graph:
                fn.release()

    def _accumulate(self, g):
        """Add `g` to ``.grad`` (on this tensor's device)."""
        self.grad = g if self.grad is None else self.device.run(_add, self.grad, g)

    # --- operators (the ops themselves live in minidl.functions) -------------
    def __add__(self, other):
        return _F().add(self, other)

    def __radd__(self, other):
        return _F().add(other, self)

    def __sub__(self, other):
        return _F().sub(self, other)

    def __rsub__(self, other):
        return _F().sub(other, self)

    def __mul__(self, other):
        return _F().mul(self, other)

    def __rmul__(self, other):
        return _F().mul(other, self)

    def __truediv__(self, other):
        return _F().div(self, other)

    def __rtruediv__(self, other):
        return _F().div(other, self)

    def __neg__(self):
        return _F().neg(self)

    def __pow__(self, exponent):
        return _F().power(self, exponent)

    def __matmul__(self, other):
        return _F().matmul(self, other)

    def __getitem__(self, index):
        return _F().getitem(self, index)

    def sum(self, axis=None, keepdims=False):
        return _F().sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _F().mean(self, axis, keepdims)

    def reshape(self, *shape):
        return _F().reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return _F().transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    @property
    def T(self):
        return _F().transpose(self, None)

    def flatten(self):
        """(N, ...) -> (N, prod(...)): keeps the batch axis, as a net needs."""
        return _F().flatten(self)

    def to(self, device):
        return _F().copy(self, device)


def _F():
    from . import functions  # late import: functions build on this module
    return functions


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """A Tensor for `x`; a Python or NumPy constant goes to `like`'s device and dtype."""
    if isinstance(x, Tensor):
        return x
    if like is None:
        return Tensor(x)
    if not is_cupy_array(x) and not isinstance(x, np.ndarray):
        x = np.asarray(x)                      # a Python number or list
    if x.ndim == 0 and np.issubdtype(x.dtype, np.number):
        return Tensor(like.device.put(x, dtype=like.dtype), device=like.device)  # a constant
    return Tensor(x, device=like.device)


def _add(a, b):
    return a + b


def _topological_order(root):
    """Functions reachable from `root`, each after the functions of its inputs."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        fn, expanded = stack.pop()
        if expanded:
            order.append(fn)
            continue
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        stack.append((fn, True))
        for x in fn.inputs or ():
            if x.creator is not None and id(x.creator) not in seen:
                stack.append((x.creator, False))
    return order


# ----------------------------------------------------------------------------
# Function
# ----------------------------------------------------------------------------
class Function:
    """One differentiable op on plain arrays.

    Subclasses implement::

        forward(self, *arrays)            -> array or tuple of arrays
        backward(self, *grad_outputs)     -> gradient or tuple, one per input
                                             (None where no gradient is needed)

    and keep on ``self`` what backward reads. Inside both, ``xp`` is
    ``array_module(x)`` and ``self.needs_input_grad[i]`` says whether input
    i wants a gradient (skip the work when it does not: the image fed to
    conv1 never needs dx). Inputs must share one device; `Copy` is the only
    op that crosses devices.
    """

    inputs = None          # set when recorded: leaf tensors, and an _Edge for the rest
    output_meta = ()       # (shape, dtype) of each output, for zero gradients
    needs_input_grad = ()

    def __call__(self, *inputs):
        like = next((x for x in inputs if isinstance(x, Tensor)), None)
        if like is None:
            raise TypeError(f"{type(self).__name__}: expected at least one Tensor input")
        inputs = [as_tensor(x, like) for x in inputs]
        self.device = self.output_device(inputs)
        record = _grad_enabled and any(x.requires_grad for x in inputs)
        self.needs_input_grad = tuple(record and x.requires_grad for x in inputs)
        with self.device:
            ys = self.forward(*(x.data for x in inputs))
        single = not isinstance(ys, tuple)
        outs = [_wrap(y, self.device, record) for y in ((ys,) if single else ys)]
        if record:
            # Keep the graph, not the inputs' arrays: what backward needs of an
            # array, the op keeps itself (ReLU keeps y, not x). Leaves that want
            # a gradient stay as they are, to receive it.
            self.inputs = [x if x.creator is None and x.requires_grad else _Edge(x)
                           for x in inputs]
            self.output_meta = [(o.shape, o.dtype) for o in outs]
            for i, o in enumerate(outs):
                o.creator, o.creator_index = self, i
        return outs[0] if single else tuple(outs)

    def output_device(self, inputs) -> Device:
        """The device the op runs on: that of its inputs, which must agree."""
        device = inputs[0].device
        for i, x in enumerate(inputs[1:], 1):
            if x.device != device:
                raise ValueError(
                    f"{type(self).__name__}: inputs live on different devices: input 0 on "
                    f"'{device}', input {i} on '{x.device}'. Move one explicitly with "
                    f"minidl.copy(x, '{device}') first.")
        return device

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, *grad_outputs):
        raise NotImplementedError

    def release(self):
        """Drop everything kept for backward (called once backward has used it)."""
        meta = self.output_meta
        self.__dict__.clear()
        self.inputs, self.output_meta = None, meta


class _Edge:
    """A recorded input without its array: which op made it, its shape, and whether
    it wants a gradient. Holding the array would keep every intermediate alive
    until backward, even those no op needs (a conv's output before its ReLU)."""

    __slots__ = ("creator", "creator_index", "requires_grad", "shape", "device")

    def __init__(self, x: Tensor):
        self.creator, self.creator_index = x.creator, x.creator_index
        self.requires_grad, self.shape, self.device = x.requires_grad, x.shape, x.device


def _wrap(array, device, requires_grad):
    t = Tensor.__new__(Tensor)
    t.data, t.device, t.requires_grad, t.grad, t.creator, t.creator_index, t.name = \
        array, device, requires_grad, None, None, 0, None
    return t

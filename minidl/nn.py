"""Layers as Modules: parameters plus a forward that calls minidl.functions.

A `Module` finds its parameters and sub-modules among its attributes (in
the order they were set), so a layer is written as plainly as::

    class Net(Module):
        def __init__(self):
            super().__init__()
            self.fc = Linear(4, 2)
        def forward(self, x):
            return relu(self.fc(x))

Sizes are stated, never inferred: every layer is built knowing its input
channels/features, as the paper gives every shape.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import functions as F
from . import init
from .autograd import Tensor
from .backend import get_device, to_numpy


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires_grad=True)."""

    def __init__(self, data, device=None, name=None):
        super().__init__(data, requires_grad=True, device=device, name=name)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, device='{self.device}')"

    def copy_(self, values):
        """Overwrite the values in place, from a NumPy array or any device's, on this
        parameter's device and in its dtype."""
        if tuple(values.shape) != tuple(self.shape):
            raise ValueError(f"Parameter.copy_: expected values of shape {self.shape}, "
                             f"found {tuple(values.shape)}")
        values = self.device.put(values, dtype=self.dtype)
        self.device.run(self.data.__setitem__, Ellipsis, values)
        return self


class Module:
    """Base class of layers and networks."""

    def __init__(self):
        self.training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    # --- walking the tree ----------------------------------------------------
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and \
                    all(isinstance(v, Module) for v in value):
                for i, v in enumerate(value):
                    yield f"{name}.{i}", v

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) for every parameter, each once, in definition order."""
        seen = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, value in vars(mod).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # --- modes and devices ---------------------------------------------------
    def train(self, mode=True):
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        """Move every parameter (in place: the Parameter objects stay the same)."""
        device = get_device(device)
        for p in self.parameters():
            p.data, p.device, p.grad = device.put(p.data), device, None
        return self

    def astype(self, dtype):
        """Cast every parameter, e.g. to float64 for a gradient check."""
        for p in self.parameters():
            p.data, p.grad = p.device.run(p.data.astype, dtype), None
        return self

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # --- state ---------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameter name -> NumPy copy of its values."""
        return OrderedDict((name, to_numpy(p.data).copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state, strict=True):
        """Copy values into the parameters, on their devices and dtypes."""
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state does not match "
                             f"this model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                             f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}. "
                             "Was it saved from a model with another configuration?")
        for name, p in params.items():
            if name not in state:
                continue
            value = state[name]
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"{type(self).__name__}.load_state_dict: parameter '{name}' "
                                 f"expects shape {p.shape}, the state has {tuple(value.shape)}")
            p.data = p.device.put(to_numpy(value), dtype=p.dtype)
            p.grad = None
        return self

    # --- display -------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            lines += ["  " + line for line in f"({name}): {child!r}".splitlines()]
        return "\n".join(lines + [")"])


def _param(shape, dtype, device, std=None, value=0.0, generator=None):
    p = Parameter(np.zeros(shape, dtype), device=get_device(device))
    return init.normal_(p, std, generator=generator) if std is not None else init.constant_(p, value)


class Conv2d(Module):
    """2-D convolution, weight (out, in/groups, k, k) ~ N(0, weight_std^2), bias = bias_init."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 bias=True, weight_std=0.01, bias_init=0.0, device="cpu", dtype=np.float32,
                 generator=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.groups = kernel_size, stride, padding, groups
        self.weight = _param((out_channels, in_channels // groups, kernel_size, kernel_size),
                             dtype, device, std=weight_std, generator=generator)
        self.bias = _param((out_channels,), dtype, device, value=bias_init) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}"
                + (f", groups={self.groups}" if self.groups > 1 else ""))


class LocallyConnected2d(Module):
    """A convolution with a filter bank of its own at every output position (cuda-convnet's
    "local" layer): weight (OH, OW, out, in, k, k) ~ N(0, weight_std^2), bias (out, OH, OW)
    = bias_init. The input size is stated, as the output positions depend on it."""

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0,
                 bias=True, weight_std=0.01, bias_init=0.0, device="cpu", dtype=np.float32,
                 generator=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.output_size = (input_size + 2 * padding - kernel_size) // stride + 1
        if self.output_size < 1:
            raise ValueError(f"LocallyConnected2d: input_size {input_size} with kernel "
                             f"{kernel_size} and padding {padding} leaves no output position")
        s = self.output_size
        self.weight = _param((s, s, out_channels, in_channels, kernel_size, kernel_size),
                             dtype, device, std=weight_std, generator=generator)
        self.bias = _param((out_channels, s, s), dtype, device, value=bias_init) if bias else None

    def forward(self, x):
        return F.locally_connected(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"positions={self.output_size}x{self.output_size}, stride={self.stride}, "
                f"padding={self.padding}")


class Linear(Module):
    """y = x W^T + b with W (out_features, in_features) ~ N(0, weight_std^2)."""

    def __init__(self, in_features, out_features, bias=True, weight_std=0.01, bias_init=0.0,
                 device="cpu", dtype=np.float32, generator=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _param((out_features, in_features), dtype, device, std=weight_std,
                             generator=generator)
        self.bias = _param((out_features,), dtype, device, value=bias_init) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class MaxPool2d(Module):
    def __init__(self, kernel_size=3, stride=2, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.ceil_mode = kernel_size, stride, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, ceil_mode=self.ceil_mode)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}" + \
            (", ceil_mode=True" if self.ceil_mode else "")


class AvgPool2d(MaxPool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, ceil_mode=self.ceil_mode)


class LRN(Module):
    """Local response normalization across channels, Section 3.3 (alpha not divided by n)."""

    def __init__(self, n=5, k=2.0, alpha=1e-4, beta=0.75):
        super().__init__()
        self.n, self.k, self.alpha, self.beta = n, k, alpha, beta

    def forward(self, x):
        return F.local_response_norm(x, self.n, self.k, self.alpha, self.beta)

    def extra_repr(self):
        return f"n={self.n}, k={self.k}, alpha={self.alpha}, beta={self.beta}"


class Dropout(Module):
    """Section 4.2: zero each unit with probability p in training; scale by 1-p in eval.

    `share` = (index, count) when this process sees the index-th of `count` equal
    parts of each batch (data-parallel ranks): its masks are its rows of the
    whole batch's (see `minidl.functions.dropout`)."""

    def __init__(self, p=0.5, generator=None, share=(0, 1)):
        super().__init__()
        self.p, self.generator, self.share = p, generator, share

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.generator, self.share)

    def extra_repr(self):
        return f"p={self.p}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W)."""

    def forward(self, x):
        return F.flatten(x)


class Sequential(Module):
    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)

    def named_children(self):
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)


__all__ = ["Parameter", "Module", "Conv2d", "LocallyConnected2d", "Linear", "MaxPool2d", "AvgPool2d", "LRN",
           "Dropout", "ReLU", "Tanh", "Sigmoid", "Flatten", "Sequential"]

"""The paper's network (Section 3, Figure 2) and the small CIFAR-10 nets of Figure 1.

Figure 2 draws AlexNet as two columns, one per GTX 580. Each column holds
half of the kernels of every layer; the columns talk only at a few layers:

    layer   kernels (per column)   reads from                       then
    conv1   96 (48+48)  11x11 s4    the image (on both devices)      ReLU, LRN, pool 3/2
    conv2   256 (128+128) 5x5 p2    its own column only              ReLU, LRN, pool 3/2
    conv3   384 (192+192) 3x3 p1    BOTH columns                     ReLU
    conv4   384 (192+192) 3x3 p1    its own column only              ReLU
    conv5   256 (128+128) 3x3 p1    its own column only              ReLU, pool 3/2
    fc6     4096 (2048+2048)        BOTH columns                     ReLU, dropout 0.5
    fc7     4096 (2048+2048)        BOTH columns                     ReLU, dropout 0.5
    fc8     1000                    BOTH columns (on the 1st device) softmax

`AlexNet` writes that literally: a `Column` of layers per device, and
`minidl.copy` wherever the figure crosses. Both columns may also live on one
device; then the copies vanish and the net equals `GroupedAlexNet`, the same
weights run as ``groups=2`` convolutions (the way Caffe wrote AlexNet) — the
test of that equality is the proof that the split is right.

Input size: the text says 224x224, but (224 - 11) / 4 + 1 is not an integer.
With 227 and no padding conv1 gives exactly 55x55, as Figure 2 shows; Caffe
and Chainer use 227. cuda-convnet (the 2012 code) used 224 with a padding
that its ceil-style output arithmetic absorbed. We default to 227. Other
sizes build a net whose fc6 reads whatever pool5 gives (`layer_sizes()`
tells): 224 with our floor arithmetic gives 54 -> 26 -> 12 -> 5, so fc6 reads
6,400 values instead of 9,216 — a different net from the paper's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

import minidl
from minidl import Tensor, nn
from minidl import functions as F
from minidl.backend import get_device, to_numpy

from .settings import check as check_setting


# ----------------------------------------------------------------------------
# The paper's numbers, each with its section
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AlexNetConfig:
    """Every number of the network, where the paper gives it.

    The defaults are the paper's two-GPU net. `one_column()` gives the
    Section 3.2 baseline; `dataclasses.replace` gives the other ablations
    (``lrn=False``, ``pool_kernel=2``, ``activation="tanh"``).
    """
    input_size: int = 227                 # Sec 3.5 says 224; see the module docstring
    conv1_kernel: int = 11                # Sec 3.5: 96 kernels of 11x11x3, stride 4
    conv1_stride: int = 4                 # (the CIFAR-sized net of the claims: 5x5, stride 1, pad 2)
    conv1_padding: int = 0
    num_classes: int = 1000               # Sec 2: ILSVRC's 1000 classes
    columns: int = 2                      # Sec 3.2: one column per GPU
    # Kernels per layer, all columns together (Sec 3.5, Figure 2).
    conv_channels: tuple = (96, 256, 384, 384, 256)
    fc_features: int = 4096               # Sec 3.5: fc6 and fc7
    activation: str = "relu"              # Sec 3.1 (the alternative: "tanh")
    lrn: bool = True                      # Sec 3.3, after conv1 and conv2
    lrn_n: int = 5                        # Sec 3.3: k=2, n=5, alpha=1e-4, beta=0.75
    lrn_k: float = 2.0
    lrn_alpha: float = 1e-4               # NOT divided by n (see minidl/functions/lrn.py)
    lrn_beta: float = 0.75
    pool_kernel: int = 3                  # Sec 3.4: overlapping pooling z=3, s=2
    pool_stride: int = 2                  #          (the ablation: z=2, s=2)
    pool_ceil: bool = False               # ceil-mode pool sizes (cuda-convnet's; the CIFAR net)
    dropout: float = 0.5                  # Sec 4.2, in fc6 and fc7
    weight_std: float = 0.01              # Sec 5: weights ~ N(0, 0.01^2)
    # Per-layer stds (conv1..conv5, fc6, fc7, fc8) instead, for nets the paper's one std
    # does not start (the CIFAR-sized net: see CIFAR_ALEXNET).
    weight_stds: tuple = None
    # Sec 5: biases 1 in conv2, conv4, conv5 and the hidden fc layers, 0 elsewhere.
    # (Caffe reports learning stuck at ln(1000) with 1 and used 0.1.)
    bias_one_layers: tuple = ("conv2", "conv4", "conv5", "fc6", "fc7")
    bias_one_value: float = 1.0

    def one_column(self) -> "AlexNetConfig":
        """Section 3.2's baseline: one GPU, half the kernels in each conv layer.

        The paper's footnote: the last conv layer and the fc layers are NOT
        halved, so that both nets have about the same number of parameters
        (most of them sit in fc6, which reads conv5).
        """
        c = self.conv_channels
        return dataclasses.replace(self, columns=1,
                                   conv_channels=(c[0] // 2, c[1] // 2, c[2] // 2, c[3] // 2, c[4]))

    LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")

    def std_of(self, layer) -> float:
        """The initial weight std of `layer` (Section 5: 0.01 for all)."""
        if self.weight_stds is None:
            return self.weight_std
        return self.weight_stds[self.LAYERS.index(layer)]

    def layer_sizes(self):
        """Spatial size after conv1, pool1, pool2 and pool5 for this input size."""
        s1 = (self.input_size + 2 * self.conv1_padding - self.conv1_kernel) // self.conv1_stride + 1
        k, st = self.pool_kernel, self.pool_stride
        p = ((lambda s: -(-(s - k) // st) + 1) if self.pool_ceil   # noqa: E731
             else (lambda s: (s - k) // st + 1))
        p1 = p(s1)
        p2 = p(p1)
        return s1, p1, p2, p(p2)

    def check(self):
        for name in ("input_size", "conv_channels", "fc_features", "weight_std"):
            check_setting(name, getattr(self, name), "AlexNetConfig: ")
        if self.weight_stds is not None and len(self.weight_stds) != len(self.LAYERS):
            raise ValueError(f"AlexNetConfig: expected weight_stds for {self.LAYERS}, found "
                             f"{self.weight_stds}")
        if self.columns not in (1, 2):
            raise ValueError(f"AlexNetConfig: expected columns 1 or 2, found {self.columns}")
        if any(c % self.columns for c in self.conv_channels) or self.fc_features % self.columns:
            raise ValueError(f"AlexNetConfig: every layer's kernels must split evenly over "
                             f"{self.columns} columns; found {self.conv_channels}, "
                             f"fc {self.fc_features}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"AlexNetConfig: expected activation one of {sorted(ACTIVATIONS)}, "
                             f"found {self.activation!r}")
        if self.layer_sizes()[-1] < 1:
            raise ValueError(f"AlexNetConfig: input_size {self.input_size} is too small: "
                             f"the sizes after conv1/pool1/pool2/pool5 would be {self.layer_sizes()}")


# Every net here applies its activation to a layer's fresh output that nothing
# else reads (conv and linear backward keep their input, not their output),
# so ReLU overwrites it in place instead of allocating another activation.
ACTIVATIONS = {"relu": lambda x: F.relu(x, inplace=True), "tanh": F.tanh}


# ----------------------------------------------------------------------------
# Two columns, written as Figure 2 draws them
# ----------------------------------------------------------------------------
def to_device(x: Tensor, device) -> Tensor:
    """`x` on `device`: itself if it is already there, else a differentiable copy."""
    return x if x.device == get_device(device) else minidl.copy(x, device)


def exchange(ha: Tensor, hb: Tensor):
    """Where Figure 2's columns cross: each column gets [column A, column B].

    Returns the channel-wise (axis 1) concatenation of both columns on A's
    device and on B's device. The order is the same on both, so the layer
    that reads it sees the same input a single-device layer would.
    """
    a = F.concat([ha, to_device(hb, ha.device)], axis=1)
    b = F.concat([to_device(ha, hb.device), hb], axis=1)
    return a, b


class Column(nn.Module):
    """The layers of one column (one GPU) of Figure 2: conv1..conv5, fc6, fc7.

    `share` is the number of columns the net's kernels are split over (2 for
    the paper's net), so each layer here holds 1/share of the kernels.
    """

    def __init__(self, cfg: AlexNetConfig, device, generator=None):
        super().__init__()
        self.device = get_device(device)
        k = cfg.columns
        c1, c2, c3, c4, c5 = (c // k for c in cfg.conv_channels)
        s = cfg.layer_sizes()[-1]
        def b(name):  # Section 5's bias init
            return cfg.bias_one_value if name in cfg.bias_one_layers else 0.0
        std = cfg.std_of
        common = dict(device=self.device, generator=generator)
        self.conv1 = nn.Conv2d(3, c1, cfg.conv1_kernel, stride=cfg.conv1_stride,
                               padding=cfg.conv1_padding, bias_init=b("conv1"),
                               weight_std=std("conv1"), **common)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, bias_init=b("conv2"), weight_std=std("conv2"),
                               **common)
        self.conv3 = nn.Conv2d(c2 * k, c3, 3, padding=1, bias_init=b("conv3"),   # both columns
                               weight_std=std("conv3"), **common)
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, bias_init=b("conv4"), weight_std=std("conv4"),
                               **common)
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, bias_init=b("conv5"), weight_std=std("conv5"),
                               **common)
        self.fc6 = nn.Linear(c5 * k * s * s, cfg.fc_features // k, bias_init=b("fc6"),
                             weight_std=std("fc6"), **common)
        self.fc7 = nn.Linear(cfg.fc_features, cfg.fc_features // k, bias_init=b("fc7"),
                             weight_std=std("fc7"), **common)


class AlexNet(nn.Module):
    """The network of Figure 2.

    Args:
        cfg: the paper's numbers (`AlexNetConfig`); ``cfg.columns`` is 2 for the
            paper's net and 1 for the one-GPU baseline.
        devices: one device per column: ("cuda:0", "cuda:1") as in the paper,
            ("cpu:0", "cpu:1") to run the split on a laptop, or the same device
            twice. fc8 lives on the first.
        dtype: float32 for training; float64 for gradient checks.

    ``model(x)`` maps images (N, 3, S, S) on any device to logits (N, classes)
    on the first device.
    """

    def __init__(self, cfg: AlexNetConfig = AlexNetConfig(), devices=None, dtype=np.float32,
                 seed=None):
        super().__init__()
        cfg.check()
        devices = devices or ("cpu",) * cfg.columns
        if isinstance(devices, str):
            devices = (devices,) * cfg.columns
        if len(devices) != cfg.columns:
            raise ValueError(f"AlexNet: expected {cfg.columns} device(s), one per column; "
                             f"found {list(devices)}")
        self.cfg = cfg
        self.devices = [get_device(d) for d in devices]
        rng = np.random.default_rng(seed) if seed is not None else None
        self.columns = [Column(cfg, d, generator=rng) for d in self.devices]
        self.fc8 = nn.Linear(cfg.fc_features, cfg.num_classes, weight_std=cfg.std_of("fc8"),
                             bias_init=cfg.bias_one_value if "fc8" in cfg.bias_one_layers else 0.0,
                             device=self.devices[0], generator=rng)
        self.act = ACTIVATIONS[cfg.activation]
        self.drop = nn.Dropout(cfg.dropout)
        if dtype != np.float32:
            self.astype(dtype)

    # --- the pieces of one column's path ----------------------------------------
    def _lrn(self, x):
        c = self.cfg
        return F.local_response_norm(x, c.lrn_n, c.lrn_k, c.lrn_alpha, c.lrn_beta) if c.lrn else x

    def _pool(self, x):
        return F.max_pool2d(x, self.cfg.pool_kernel, self.cfg.pool_stride, self.cfg.pool_ceil)

    def forward(self, x, probe=None):
        """Logits (N, classes) for images x (N, 3, S, S).

        `probe(name, tensor, layer)`, if given, sees every stage's output
        (that is how `trace` works); it does not change the result.
        """
        see = probe or (lambda name, t, layer=None: None)
        act, lrn, pool, drop = self.act, self._lrn, self._pool, self.drop
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"AlexNet: expected images of shape (N, 3, {self.cfg.input_size}, "
                             f"{self.cfg.input_size}), found {tuple(x.shape)}")
        cols = self.columns

        def each(hs, stage, f):
            """f(column, h) on every column; the probe sees each output."""
            out = [f(c, h) for c, h in zip(cols, hs)]
            for name, c, h in zip("AB", cols, out):
                see(f"{stage}/{name}", h, getattr(c, stage, None))
            return out

        # The image goes to every column's device.
        hs = [to_device(x, c.device) for c in cols]                  # (N, 3, 227, 227) each
        # conv1, conv2: each column alone.                           per column, 2 columns:
        hs = each(hs, "conv1", lambda c, h: act(c.conv1(h)))         # (N, 48, 55, 55)
        hs = each(hs, "pool1", lambda c, h: pool(lrn(h)))            # (N, 48, 27, 27)
        hs = each(hs, "conv2", lambda c, h: act(c.conv2(h)))         # (N, 128, 27, 27)
        hs = each(hs, "pool2", lambda c, h: pool(lrn(h)))            # (N, 128, 13, 13)
        # conv3 reads both columns.
        hs = self._cross(hs)                                         # (N, 256, 13, 13)
        hs = each(hs, "conv3", lambda c, h: act(c.conv3(h)))         # (N, 192, 13, 13)
        # conv4, conv5: each column alone again.
        hs = each(hs, "conv4", lambda c, h: act(c.conv4(h)))         # (N, 192, 13, 13)
        hs = each(hs, "conv5", lambda c, h: act(c.conv5(h)))         # (N, 128, 13, 13)
        hs = each(hs, "pool5", lambda c, h: F.flatten(pool(h)))      # (N, 128*6*6 = 4608)
        # fc6, fc7 read both columns.
        hs = self._cross(hs)                                         # (N, 9216)
        hs = each(hs, "fc6", lambda c, h: drop(act(c.fc6(h))))       # (N, 2048)
        hs = self._cross(hs)                                         # (N, 4096)
        hs = each(hs, "fc7", lambda c, h: drop(act(c.fc7(h))))       # (N, 2048)
        # fc8, on the first device, reads both columns.
        h = self._cross(hs)[0]                                       # (N, 4096)
        logits = self.fc8(h)                                         # (N, 1000)
        see("fc8", logits, self.fc8)
        return logits

    @staticmethod
    def _cross(hs):
        return list(exchange(*hs)) if len(hs) == 2 else hs

    def features(self, x):
        """The last hidden layer (fc7, 4096-d, both columns), used for Figure 4's neighbours."""
        out = {}
        def grab(name, t, layer=None):
            if name.startswith("fc7/"):
                out[name] = to_device(t, self.devices[0])
        self.forward(x, probe=grab)
        return F.concat([out[k] for k in sorted(out)], axis=1)

    # --- stepping through --------------------------------------------------------
    def trace(self, x):
        """Yield a `TraceRow` per stage for images x: what each layer made of them."""
        rows = []
        def record(name, t, layer=None):
            rows.append(_trace_row(name, t, layer))
        with minidl.no_grad():
            self.forward(x, probe=record)
        yield from rows


@dataclass
class TraceRow:
    name: str          # stage, e.g. "conv2/B" (column B's conv2 after its ReLU)
    device: str
    shape: tuple       # output shape
    params: int        # parameters of the layer that made it (0 for pooling)
    madds: int         # multiply-adds per image of that layer
    mean: float
    std: float
    zeros: float       # fraction of exact zeros (dead ReLUs, dropout)
    output: object = field(repr=False, default=None)  # the array itself (for activation maps)


def layer_madds(layer, out_shape) -> int:
    """Multiply-adds per image of a conv or linear layer producing `out_shape`."""
    if isinstance(layer, nn.Conv2d):
        per_output = layer.weight.shape[1] * layer.kernel_size ** 2
        return int(np.prod(out_shape[1:])) * per_output
    if isinstance(layer, nn.Linear):
        return layer.in_features * layer.out_features
    return 0


def _trace_row(name, t, layer):
    a = to_numpy(t.data)
    params = layer.num_parameters() if layer is not None else 0
    return TraceRow(name, str(t.device), tuple(a.shape), params, layer_madds(layer, a.shape),
                    float(a.mean()), float(a.std()), float((a == 0).mean()), a)


# ----------------------------------------------------------------------------
# The same network with groups=2 convolutions on one device
# ----------------------------------------------------------------------------
def _stack_columns(layer, la, lb):
    """`layer`'s weight and bias <- column A's stacked on column B's (via the host)."""
    for name in ("weight", "bias"):
        halves = [to_numpy(getattr(column, name).data) for column in (la, lb)]
        getattr(layer, name).copy_(np.concatenate(halves))
    return layer


class GroupedAlexNet(nn.Module):
    """AlexNet on one device, the two columns folded into ``groups=2`` layers.

    conv2, conv4, conv5 become grouped convolutions; conv1, conv3 and the fc
    layers become single layers whose kernels are the two columns' stacked.
    LRN and the channel order stay per column: LRN runs on each half, as it
    did on each GPU (a single 96-channel LRN would mix the columns at
    channels 47/48). Built from a two-column `AlexNet`, it computes the same
    function: `tests/test_model.py` checks logits and every gradient.
    """

    def __init__(self, net: AlexNet):
        super().__init__()
        if net.cfg.columns != 2:
            raise ValueError("GroupedAlexNet: expected a two-column AlexNet")
        self.cfg, (a, b) = net.cfg, net.columns
        device = a.device

        def conv(la, lb, groups):
            layer = nn.Conv2d(la.in_channels * (2 if groups == 2 else 1), la.out_channels * 2,
                              la.kernel_size, la.stride, la.padding, groups=groups, device=device,
                              dtype=la.weight.dtype)
            return _stack_columns(layer, la, lb)

        def fc(la, lb):
            layer = nn.Linear(la.in_features, la.out_features * 2, device=device,
                              dtype=la.weight.dtype)
            return _stack_columns(layer, la, lb)

        self.conv1, self.conv2 = conv(a.conv1, b.conv1, 1), conv(a.conv2, b.conv2, 2)
        self.conv3, self.conv4 = conv(a.conv3, b.conv3, 1), conv(a.conv4, b.conv4, 2)
        self.conv5 = conv(a.conv5, b.conv5, 2)
        self.fc6, self.fc7 = fc(a.fc6, b.fc6), fc(a.fc7, b.fc7)
        self.fc8 = nn.Linear(net.fc8.in_features, net.fc8.out_features, device=device,
                             dtype=net.fc8.weight.dtype)
        self.fc8.load_state_dict(net.fc8.state_dict())
        self.act = ACTIVATIONS[self.cfg.activation]
        self.drop = nn.Dropout(self.cfg.dropout)

    def _lrn_per_column(self, x):
        c = self.cfg
        if not c.lrn:
            return x
        halves = F.split(x, 2, axis=1)
        return F.concat([F.local_response_norm(h, c.lrn_n, c.lrn_k, c.lrn_alpha, c.lrn_beta)
                         for h in halves], axis=1)

    def forward(self, x):
        c, act = self.cfg, self.act
        pool = lambda h: F.max_pool2d(h, c.pool_kernel, c.pool_stride, c.pool_ceil)  # noqa: E731
        h = pool(self._lrn_per_column(act(self.conv1(x))))    # (N, 96, 27, 27)
        h = pool(self._lrn_per_column(act(self.conv2(h))))    # (N, 256, 13, 13)
        h = act(self.conv3(h))                                 # (N, 384, 13, 13)
        h = act(self.conv4(h))                                 # (N, 384, 13, 13)
        h = F.flatten(pool(act(self.conv5(h))))                # (N, 9216)
        h = self.drop(act(self.fc6(h)))                        # (N, 4096)
        h = self.drop(act(self.fc7(h)))                        # (N, 4096)
        return self.fc8(h)                                     # (N, 1000)


# ----------------------------------------------------------------------------
# The CIFAR-10 net of Figure 1
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CifarNetConfig:
    """The four-layer net of Section 3.1 / Figure 1 (three conv layers and one fc).

    The paper does not name it; cuda-convnet's ``layers-80sec.cfg`` is the
    closest public match and is what this follows: conv 5x5x32 (pad 2) ->
    max-pool 3/2 -> conv 5x5x32 -> avg-pool 3/2 -> conv 5x5x64 -> avg-pool
    3/2 -> fc 10, pools sized as cuda-convnet did (ceil: 32 -> 16 -> 8 -> 4).
    Initial weight stds are layers-80sec's initW. No regularization of any
    kind (Figure 1's caption): no dropout, no weight decay, no LRN.
    """
    activation: str = "relu"
    channels: tuple = (32, 32, 64)
    kernel: int = 5
    pools: tuple = ("max", "avg", "avg")
    weight_stds: tuple = (1e-4, 0.01, 0.01, 0.01)   # conv1, conv2, conv3, fc
    num_classes: int = 10
    input_size: int = 32


class CifarNet(nn.Module):
    def __init__(self, cfg: CifarNetConfig = CifarNetConfig(), device="cpu", dtype=np.float32,
                 seed=None):
        super().__init__()
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"CifarNet: expected activation one of {sorted(ACTIVATIONS)}, "
                             f"found {cfg.activation!r}")
        self.cfg = cfg
        rng = np.random.default_rng(seed) if seed is not None else None
        c1, c2, c3 = cfg.channels
        k, p = cfg.kernel, cfg.kernel // 2
        s = cfg.input_size
        for _ in cfg.pools:
            s = -(-(s - 3) // 2) + 1                                   # ceil-mode 3/2 pool
        common = dict(device=device, generator=rng)
        self.conv1 = nn.Conv2d(3, c1, k, padding=p, weight_std=cfg.weight_stds[0], **common)
        self.conv2 = nn.Conv2d(c1, c2, k, padding=p, weight_std=cfg.weight_stds[1], **common)
        self.conv3 = nn.Conv2d(c2, c3, k, padding=p, weight_std=cfg.weight_stds[2], **common)
        self.fc = nn.Linear(c3 * s * s, cfg.num_classes, weight_std=cfg.weight_stds[3], **common)
        self.act = ACTIVATIONS[cfg.activation]
        if dtype != np.float32:
            self.astype(dtype)

    def _act_pool(self, i, x, literal=False):
        """pool(activation(x)), the layer order of layers-80sec. A max-pool is
        computed first unless `literal`: ReLU and tanh never decrease, so
        max(f(a), f(b)) = f(max(a, b)) and the gradient reaches the same
        element; the same values, with the activation on 4x fewer of them
        (as Caffe's CIFAR-10 nets do). tests/test_model.py checks the two orders."""
        if self.cfg.pools[i] == "max":
            if literal:
                return F.max_pool2d(self.act(x), 3, 2, ceil_mode=True)
            # not in place: the max-pool keeps its output for backward
            f = F.relu if self.cfg.activation == "relu" else self.act
            return f(F.max_pool2d(x, 3, 2, ceil_mode=True))
        return F.avg_pool2d(self.act(x), 3, 2, ceil_mode=True)

    def forward(self, x, probe=None, literal=False):
        see = probe or (lambda name, t, layer=None: None)
        h = self._act_pool(0, self.conv1(x), literal)   # (N, 32, 16, 16)
        see("conv1+pool", h, self.conv1)
        h = self._act_pool(1, self.conv2(h), literal)   # (N, 32, 8, 8)
        see("conv2+pool", h, self.conv2)
        h = self._act_pool(2, self.conv3(h), literal)   # (N, 64, 4, 4)
        see("conv3+pool", h, self.conv3)
        logits = self.fc(F.flatten(h))             # (N, 10)
        see("fc", logits, self.fc)
        return logits

    def trace(self, x):
        rows = []
        with minidl.no_grad():
            self.forward(x, probe=lambda name, t, layer=None: rows.append(_trace_row(name, t, layer)))
        yield from rows


# ----------------------------------------------------------------------------
# The nets of the claims experiments (docs/claims.md)
# ----------------------------------------------------------------------------
# The paper's net at CIFAR-10's scale: the same two columns, layers, LRN, overlapping
# pooling, dropout and init (Sections 3-5), on 24x24 patches of the 32x32 images, with
# conv1 5x5 stride 1 instead of 11x11 stride 4 and about a sixth of the kernels.
# Ceil-mode pools (cuda-convnet's) give 24 -> 12 -> 6 -> 3 with z=3 and with z=2 alike,
# so the pooling claim changes the pooling and nothing else.
# Initial weights: the paper's N(0, 0.01^2) everywhere leaves this net at chance for its
# first epochs (measured: 90% training error after an epoch at lr 0.01 and 0.03), as the
# signal shrinks through five thin layers; so conv2..fc7 start at sqrt(2 / fan-in) (He et
# al. 2015), conv1 (which reads pixel values) and fc8 at the paper's 0.01. Section 5's
# biases (1 in conv2, conv4, conv5, fc6, fc7) are kept.
CIFAR_ALEXNET = AlexNetConfig(input_size=24, num_classes=10, conv1_kernel=5, conv1_stride=1,
                              conv1_padding=2, conv_channels=(32, 64, 96, 96, 64),
                              fc_features=256, pool_ceil=True,
                              weight_stds=(0.01, 0.07, 0.06, 0.07, 0.07, 0.06, 0.09, 0.01))


@dataclass(frozen=True)
class ConvLocalConfig:
    """cuda-convnet's ``layers-conv-local-11pct.cfg`` (``lrn=False``: ``-13pct.cfg``), the
    four-layer CIFAR-10 net of Section 3.3's "13% test error without normalization and 11%
    with": conv 64 5x5 -> [LRN] -> max-pool 3/2 -> conv 64 5x5 -> [LRN] -> max-pool 3/2 ->
    two locally connected layers of 32 3x3 filters -> fc 10, ReLU after every hidden layer,
    on 24x24 patches. LRN here comes BEFORE pooling (the paper's net pools after it too).

    Normalization constants as cuda-convnet applies them: its ``scale`` 0.001 is divided by
    ``size`` 5 before use and 1 (not the paper's k = 2) is added, so in the paper's formula
    k = 1, n = 5, alpha = 0.001 / 5 (our alpha is not divided by n), beta = 0.75.
    """
    lrn: bool = True
    channels: tuple = (64, 64, 32, 32)              # conv1, conv2, local3, local4
    weight_stds: tuple = (1e-4, 0.01, 0.04, 0.04, 0.01)  # initW of conv1 .. fc10
    lrn_n: int = 5
    lrn_k: float = 1.0
    lrn_alpha: float = 0.001 / 5
    lrn_beta: float = 0.75
    input_size: int = 24
    num_classes: int = 10


class ConvLocalNet(nn.Module):
    def __init__(self, cfg: ConvLocalConfig = ConvLocalConfig(), device="cpu", dtype=np.float32,
                 seed=None):
        super().__init__()
        self.cfg = cfg
        rng = np.random.default_rng(seed) if seed is not None else None
        c1, c2, c3, c4 = cfg.channels
        s1, s2, s3, s4, s5 = cfg.weight_stds
        common = dict(device=device, generator=rng)
        size = cfg.input_size
        for _ in range(2):
            size = -(-(size - 3) // 2) + 1                    # ceil-mode 3/2 pools: 24 -> 12 -> 6
        self.conv1 = nn.Conv2d(3, c1, 5, padding=2, weight_std=s1, **common)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, weight_std=s2, **common)
        self.local3 = nn.LocallyConnected2d(c2, c3, 3, size, padding=1, weight_std=s3, **common)
        self.local4 = nn.LocallyConnected2d(c3, c4, 3, size, padding=1, weight_std=s4, **common)
        self.fc = nn.Linear(c4 * size * size, cfg.num_classes, weight_std=s5, **common)
        if dtype != np.float32:
            self.astype(dtype)

    def _norm_pool(self, x):
        c = self.cfg
        if c.lrn:
            x = F.local_response_norm(x, c.lrn_n, c.lrn_k, c.lrn_alpha, c.lrn_beta)
        return F.max_pool2d(x, 3, 2, ceil_mode=True)

    def forward(self, x, probe=None):
        see = probe or (lambda name, t, layer=None: None)
        h = self._norm_pool(F.relu(self.conv1(x), inplace=True))   # (N, 64, 12, 12)
        see("conv1", h, self.conv1)
        h = self._norm_pool(F.relu(self.conv2(h), inplace=True))   # (N, 64, 6, 6)
        see("conv2", h, self.conv2)
        h = F.relu(self.local3(h), inplace=True)                   # (N, 32, 6, 6)
        see("local3", h, self.local3)
        h = F.relu(self.local4(h), inplace=True)                   # (N, 32, 6, 6)
        see("local4", h, self.local4)
        logits = self.fc(F.flatten(h))                             # (N, 10)
        see("fc", logits, self.fc)
        return logits

    def optimizer_settings(self, weight_decay=0.004, bias_lr_mult=2.0):
        """cuda-convnet's per-layer rates for `minidl.optim.SGD(per_param=...)`: biases at
        twice the weights' rate (epsB 0.002 against epsW 0.001), weight decay 0.004 on the
        weights of local3, local4 and fc10 and none elsewhere."""
        decayed = {"local3.weight", "local4.weight", "fc.weight"}
        return {i: (bias_lr_mult if name.endswith("bias") else 1.0,
                    weight_decay if name in decayed else 0.0)
                for i, (name, _) in enumerate(self.named_parameters())}

    def trace(self, x):
        rows = []
        with minidl.no_grad():
            self.forward(x, probe=lambda name, t, layer=None: rows.append(_trace_row(name, t, layer)))
        yield from rows

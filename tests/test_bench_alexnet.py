"""The training-step benchmark measures what it says: the same net in PyTorch
(checked without torch, from the table torch_net is built from), and a per-op
timer that leaves minidl as it found it."""
import numpy as np
import pytest

from alexnet.model import AlexNet, AlexNetConfig, GroupedAlexNet
from benchmarks.bench_alexnet import (PAPER_PARAMETERS, TORCH_BIAS_ONE, TORCH_CONVS, TORCH_FCS,
                                      TORCH_LRN, OpTimer, peak_rss_bytes)
from minidl import Tensor, functions as F
from minidl.autograd import Function


def test_torch_reference_is_the_papers_net():
    """The table torch_net is built from, layer by layer, against minidl's net folded
    into groups=2 layers (GroupedAlexNet: the same layers torch_net makes), without
    torch: shapes (PyTorch's (out, in / groups, k, k)), stride, padding, groups, the
    biases' start, the LRN's constants (torch divides alpha by the window)."""
    cfg = AlexNetConfig()
    net = GroupedAlexNet(AlexNet(cfg, seed=0))
    count = 0
    for name, c_in, c_out, k, stride, pad, groups in TORCH_CONVS:
        layer = getattr(net, name)
        assert layer.weight.shape == (c_out, c_in // groups, k, k), name
        assert (layer.stride, layer.padding, layer.groups) == (stride, pad, groups), name
        count += c_out * (c_in // groups * k * k + 1)
    for name, f_in, f_out in TORCH_FCS:
        assert getattr(net, name).weight.shape == (f_out, f_in), name
        count += f_out * (f_in + 1)
    for name in [c[0] for c in TORCH_CONVS] + [f[0] for f in TORCH_FCS]:
        bias = getattr(net, name).bias.data
        assert np.all(bias == (1.0 if name in TORCH_BIAS_ONE else 0.0)), name
    assert count == PAPER_PARAMETERS == net.num_parameters() == 60_965_224
    n = TORCH_LRN["size"]
    assert (n, TORCH_LRN["alpha"] / n, TORCH_LRN["beta"], TORCH_LRN["k"]) == pytest.approx(
        (cfg.lrn_n, cfg.lrn_alpha, cfg.lrn_beta, cfg.lrn_k))


def test_op_timer_times_every_op_by_shape_and_restores_the_classes(rng):
    before = {cls: (vars(cls).get("forward"), vars(cls).get("backward"))
              for cls in Function.__subclasses__()}
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    with OpTimer() as timer:
        F.relu(x * 2.0).sum().backward()
    keys = {(op, shapes, which) for op, shapes, which in timer.times}
    assert ("ReLU", "2x3 -> 2x3", "forward") in keys and ("ReLU", "2x3 -> 2x3", "backward") in keys
    assert all(t >= 0 for t in timer.times.values())
    after = {cls: (vars(cls).get("forward"), vars(cls).get("backward")) for cls in before}
    assert after == before
    assert peak_rss_bytes() > 0

"""The training-step benchmark measures what it says: the same net in PyTorch,
and a per-op timer that leaves minidl as it found it."""
import pytest

from benchmarks.bench_alexnet import OpTimer, peak_rss_bytes, torch_net
from minidl import Tensor, functions as F
from minidl.autograd import Function


def test_torch_reference_is_the_papers_net():
    pytest.importorskip("torch")
    net = torch_net()
    assert sum(p.numel() for p in net.parameters()) == 60_965_224
    assert net.conv2.groups == net.conv4.groups == net.conv5.groups == 2
    assert net.conv2.bias.detach()[0] == 1.0 and net.conv3.bias.detach()[0] == 0.0


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

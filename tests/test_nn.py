import numpy as np
import pytest

import minidl as md
from minidl import Tensor, nn


def small_net(device="cpu"):
    return nn.Sequential(nn.Linear(6, 4, bias_init=1.0, device=device), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(4, 3, device=device))


def test_parameters_in_definition_order_with_names():
    net = small_net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert net.num_parameters() == 6 * 4 + 4 + 4 * 3 + 3
    assert all(p.requires_grad for p in net.parameters())


def test_init_follows_the_requested_gaussian_and_constant():
    md.random.manual_seed(0)
    layer = nn.Linear(1000, 100, weight_std=0.01, bias_init=1.0)
    assert layer.weight.data.std() == pytest.approx(0.01, rel=0.02)
    assert abs(layer.weight.data.mean()) < 5e-4
    np.testing.assert_array_equal(layer.bias.data, 1.0)
    assert layer.weight.dtype == np.float32
    conv = nn.Conv2d(4, 6, 3, groups=2, bias=False)
    assert conv.weight.shape == (6, 2, 3, 3) and conv.bias is None


def test_train_eval_switches_dropout():
    net = small_net()
    x = Tensor(np.ones((2, 6), dtype=np.float32))
    net.eval()
    assert not net[2].training
    a, b = net(x).data, net(x).data
    np.testing.assert_array_equal(a, b)      # eval is deterministic
    net.train()
    assert net[2].training


def test_state_dict_round_trip_and_mismatch_errors():
    a, b = small_net(), small_net()
    b.load_state_dict(a.state_dict())
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    state = a.state_dict()
    state["0.weight"] = np.zeros((5, 5))
    with pytest.raises(ValueError, match=r"'0.weight' expects shape \(4, 6\)"):
        b.load_state_dict(state)
    del state["0.weight"]
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict(state)


def test_to_moves_every_parameter_and_keeps_identity():
    net = small_net()
    p0 = net.parameters()[0]
    net.to("cpu:1")
    assert net.parameters()[0] is p0
    assert all(p.device == "cpu:1" for p in net.parameters())
    y = net(Tensor(np.ones((2, 6), dtype=np.float32), device="cpu:1"))
    assert y.device == "cpu:1"
    with pytest.raises(ValueError, match="different devices"):
        net(Tensor(np.ones((2, 6), dtype=np.float32), device="cpu:0"))


def test_backward_through_a_module_fills_every_gradient(rng):
    net = small_net().astype(np.float64)
    x = Tensor(rng.standard_normal((5, 6)))
    md.functions.softmax_cross_entropy(net(x), np.array([0, 1, 2, 0, 1])).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_repr_shows_the_tree():
    text = repr(small_net())
    assert "(0): Linear(6, 4)" in text and "Dropout(p=0.5)" in text

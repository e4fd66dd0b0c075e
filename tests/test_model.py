"""The paper's network: parameter count, the proof of the two-column split,
the variants of the paper's comparisons, and stepping through with trace."""
import dataclasses

import numpy as np
import pytest

import minidl as md
from minidl import Tensor
from minidl import functions as F
from alexnet.model import AlexNet, AlexNetConfig, CifarNet, CifarNetConfig, GroupedAlexNet


def expected_parameters(cfg):
    """The layer table of Section 3.5, counted by hand: weights + biases per layer."""
    c1, c2, c3, c4, c5 = cfg.conv_channels
    k = cfg.columns
    s = cfg.layer_sizes()[-1]
    conv = (c1 * 3 * 11 * 11 + c1            # conv1 reads the image
            + c2 * (c1 // k) * 5 * 5 + c2    # conv2 reads its own column
            + c3 * c2 * 3 * 3 + c3           # conv3 reads both
            + c4 * (c3 // k) * 3 * 3 + c4    # conv4, conv5 their own
            + c5 * (c4 // k) * 3 * 3 + c5)
    fc = (c5 * s * s * cfg.fc_features + cfg.fc_features
          + cfg.fc_features ** 2 + cfg.fc_features
          + cfg.fc_features * cfg.num_classes + cfg.num_classes)
    return conv + fc


def test_parameter_count_follows_the_layer_table():
    net = AlexNet()
    assert net.num_parameters() == expected_parameters(AlexNetConfig()) == 60_965_224
    # the one-GPU baseline of Section 3.2 has about as many (footnote: conv5 and fc not halved)
    one = AlexNet(AlexNetConfig().one_column())
    assert one.num_parameters() == expected_parameters(AlexNetConfig().one_column())
    assert abs(one.num_parameters() - net.num_parameters()) / net.num_parameters() < 0.03


def test_initialisation_of_section_5():
    net = AlexNet(seed=0)
    a = net.columns[0]
    for name in ("conv2", "conv4", "conv5", "fc6", "fc7"):
        np.testing.assert_array_equal(getattr(a, name).bias.data, 1.0)
    for layer in (a.conv1, a.conv3, net.fc8):
        np.testing.assert_array_equal(layer.bias.data, 0.0)
    assert a.fc6.weight.data.std() == pytest.approx(0.01, rel=0.01)


def small_config(**kw):
    # The real layer structure with fewer kernels, so float64 checks are quick.
    # 67x67 input -> conv1 15 -> pool 7 -> pool 3 -> pool 1.
    return AlexNetConfig(input_size=67, num_classes=7, conv_channels=(8, 12, 16, 12, 8),
                         fc_features=10, **kw)


@pytest.mark.parametrize("cfg", [small_config(), AlexNetConfig(input_size=67, num_classes=5,
                                                               conv_channels=(6, 8, 12, 8, 6),
                                                               fc_features=12, lrn_alpha=1.0,
                                                               lrn_k=1.0)])
def test_split_equals_groups_2_on_one_device(cfg, rng):
    """The proof of the split: logits and every gradient equal those of groups=2 convs."""
    net = AlexNet(cfg, devices=("cpu", "cpu"), dtype=np.float64, seed=1).eval()
    grouped = GroupedAlexNet(net).eval()
    x = rng.standard_normal((3, 3, cfg.input_size, cfg.input_size))
    labels = np.array([0, 3, 4])
    la = net(Tensor(x))
    lb = grouped(Tensor(x))
    np.testing.assert_allclose(la.data, lb.data, rtol=1e-12, atol=1e-12)
    F.softmax_cross_entropy(la, labels).backward()
    F.softmax_cross_entropy(lb, labels).backward()
    a, b = net.columns
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
        for what in ("weight", "bias"):
            two = np.concatenate([getattr(getattr(a, name), what).grad,
                                  getattr(getattr(b, name), what).grad])
            one = getattr(getattr(grouped, name), what).grad
            np.testing.assert_allclose(two, one, rtol=1e-10, atol=1e-13, err_msg=f"{name}.{what}")
    np.testing.assert_allclose(net.fc8.weight.grad, grouped.fc8.weight.grad, rtol=1e-10,
                               atol=1e-13)


def test_columns_on_two_virtual_devices_train_without_a_missing_transfer(rng):
    cfg = small_config()
    net = AlexNet(cfg, devices=("cpu:0", "cpu:1"), dtype=np.float64, seed=2)
    a, b = net.columns
    assert {p.device for p in a.parameters()} == {md.Device("cpu:0")}
    assert {p.device for p in b.parameters()} == {md.Device("cpu:1")}
    assert net.fc8.weight.device == "cpu:0"
    x = rng.standard_normal((2, 3, 67, 67))
    net.eval()
    logits = net(Tensor(x, device="cpu:1"))   # the image may start anywhere
    assert logits.device == "cpu:0"
    F.softmax_cross_entropy(logits, np.array([1, 2])).backward()
    assert all(p.grad is not None for p in net.parameters())
    # the same weights on one device give the same numbers
    same = AlexNet(cfg, devices=("cpu", "cpu"), dtype=np.float64, seed=2).eval()
    np.testing.assert_allclose(same(Tensor(x)).data, logits.data, rtol=1e-12)
    # and a full training-mode step runs too (dropout on both devices)
    net.train()
    F.softmax_cross_entropy(net(Tensor(x, device="cpu:0")), np.array([1, 2])).backward()


def test_gradients_through_the_whole_two_device_net_pass_gradcheck(rng):
    """Gradients of parameters deep in each column, through every crossing (float64)."""
    # weights large enough that gradients at conv1 are not lost in round-off
    cfg = dataclasses.replace(small_config(), weight_std=0.3, lrn_alpha=0.01)
    net = AlexNet(cfg, devices=("cpu:0", "cpu:1"), dtype=np.float64, seed=3).eval()
    x = Tensor(rng.standard_normal((2, 3, 67, 67)), device="cpu:1")
    a, b = net.columns
    slots = [(a.conv1, "bias"), (b.conv2, "bias"), (a.conv4, "bias"), (b.fc7, "bias"),
             (net.fc8, "bias"), (b.conv5, "weight")]

    def f(*values):
        # put gradcheck's tensors where the parameters were, run, put them back
        saved = [getattr(layer, attr) for layer, attr in slots]
        for (layer, attr), v in zip(slots, values):
            setattr(layer, attr, v)
        try:
            return net(x)
        finally:
            for (layer, attr), p in zip(slots, saved):
                setattr(layer, attr, p)

    inputs = [getattr(layer, attr) for layer, attr in slots]
    assert md.gradcheck(f, *inputs, tol=1e-5) < 1e-5


@pytest.mark.parametrize("change,expect", [
    (dict(lrn=False), "no LRN"),
    (dict(pool_kernel=2, pool_stride=2), "2/2 pooling: same sizes 27/13/6"),
    (dict(activation="tanh"), "tanh"),
])
def test_variants_of_the_papers_comparisons(change, expect, rng):
    cfg = dataclasses.replace(small_config(), **change)
    net = AlexNet(cfg, seed=0).eval()
    out = net(Tensor(rng.standard_normal((2, 3, 67, 67)).astype(np.float32)))
    assert out.shape == (2, 7), expect
    assert AlexNetConfig(pool_kernel=2).layer_sizes() == (55, 27, 13, 6)
    if change.get("activation") == "tanh":
        rows = list(net.trace(Tensor(rng.standard_normal((1, 3, 67, 67)).astype(np.float32))))
        assert min(r.mean for r in rows if r.name.startswith("conv1")) > -1  # tanh range


def test_one_column_baseline_runs():
    cfg = small_config().one_column()
    assert cfg.columns == 1 and cfg.conv_channels == (4, 6, 8, 6, 8)
    net = AlexNet(cfg).eval()
    assert len(net.columns) == 1
    assert net(Tensor(np.zeros((1, 3, 67, 67), np.float32))).shape == (1, 7)


def test_trace_lists_every_stage_with_shapes_params_and_madds():
    net = AlexNet().eval()
    rows = list(net.trace(Tensor(np.random.default_rng(0).standard_normal(
        (1, 3, 227, 227)).astype(np.float32))))
    by = {r.name: r for r in rows}
    assert by["conv1/A"].shape == (1, 48, 55, 55) and by["conv1/B"].shape == (1, 48, 55, 55)
    assert by["pool2/B"].shape == (1, 128, 13, 13)
    assert by["conv3/A"].shape == (1, 192, 13, 13)
    assert by["pool5/A"].shape == (1, 4608)
    assert by["fc8"].shape == (1, 1000)
    assert by["conv1/A"].madds == 48 * 55 * 55 * 3 * 11 * 11
    assert by["conv3/A"].madds == 192 * 13 * 13 * 256 * 3 * 3     # reads both columns
    assert sum(r.params for r in rows) == 60_965_224
    assert 0.3 < by["conv1/A"].zeros < 0.7                         # ReLU zeroes about half
    assert all(np.isfinite(r.mean) and r.std >= 0 for r in rows)


def test_bad_configs_and_inputs_are_explained():
    with pytest.raises(ValueError, match="one per column"):
        AlexNet(small_config(), devices=("cpu",))
    with pytest.raises(ValueError, match="expected activation"):
        AlexNet(small_config(activation="gelu"))
    with pytest.raises(ValueError, match="too small"):
        AlexNet(AlexNetConfig(input_size=40))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, 67, 67\)"):
        AlexNet(small_config())(Tensor(np.zeros((1, 1, 67, 67), np.float32)))


def test_cifar_net_shapes_and_both_activations(rng):
    for act in ("relu", "tanh"):
        net = CifarNet(CifarNetConfig(activation=act), seed=0)
        rows = list(net.trace(Tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))))
        assert [r.shape for r in rows] == [(2, 32, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 10)]
    assert net.num_parameters() == (32 * 75 + 32) + (32 * 800 + 32) + (64 * 800 + 64) + (1024 * 10 + 10)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_cifar_net_max_pool_before_the_activation_is_the_same_function(rng, act):
    """CifarNet max-pools before its activation (4x fewer activations to compute):
    the literal order of layers-80sec, activation then pool, gives the same
    outputs and the same gradients, down to ties of the max (float64)."""
    x = rng.standard_normal((3, 3, 32, 32)) * 50
    x[:, :, 4:8, 4:8] = -1.0                  # windows of negatives only: relu gives 0s
    results = []
    for literal in (True, False):
        net = CifarNet(CifarNetConfig(activation=act), dtype=np.float64, seed=0)
        tx = Tensor(x, requires_grad=True)
        logits = net.forward(tx, literal=literal)
        logits.backward(np.cos(np.arange(logits.size)).reshape(logits.shape))
        results.append([logits.data, tx.grad] + [p.grad for p in net.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)

"""Activations stored as CHWN under an NCHW view (minidl/cpu/layout.py):
the same values and gradients as NCHW, whichever layout each layer receives,
on the plain path and on the CPU fast path."""
import numpy as np
import pytest

import minidl as md
import minidl.functions as F
from minidl.cpu import Plan, use_fast_path
from minidl.cpu.layout import empty_chwn, is_chwn, planes
from minidl.gradcheck import gradcheck
from reference import as_chwn, path  # noqa: F401  (a fixture)


def test_as_chwn_is_empty_chwn_filled(rng):
    x = rng.standard_normal((3, 2, 4, 5))
    t = empty_chwn(np, x.shape, x.dtype)
    t[...] = x
    assert is_chwn(as_chwn(x)) and as_chwn(x).strides == t.strides


def test_layout_helpers(rng):
    x = rng.standard_normal((4, 3, 5, 6))
    t = as_chwn(x)
    assert is_chwn(t) and not is_chwn(x)
    assert np.array_equal(t, x)
    for a in (x, t, x[:, :, ::2]):                   # NCHW, CHWN, neither (copied)
        a4, back = planes(a)
        assert a4.ndim == 4 and np.array_equal(back(a4), a)


def _conv_net(x, W1, b1, W2):
    """conv -> relu -> max-pool -> conv -> avg-pool: every layer that reads CHWN."""
    h = F.relu(F.conv2d(x, W1, b1, pad=1))
    h = F.max_pool2d(h, 3, 2, ceil_mode=True)
    h = F.conv2d(h, W2, None, pad=1, groups=2)
    return F.avg_pool2d(h, 2, 2)


@pytest.fixture
def net_inputs(rng):
    return (rng.standard_normal((9, 4, 7, 6)), rng.standard_normal((6, 4, 3, 3)),
            rng.standard_normal(6), rng.standard_normal((4, 3, 3, 3)))


def _run(inputs, min_chunk, schedule="chunks", enabled=True):
    with use_fast_path(enabled, Plan(conv_schedule=schedule, chwn_min_chunk=min_chunk)):
        ts = [md.Tensor(a, requires_grad=True) for a in inputs]
        y = _conv_net(*ts)
        y.backward(np.ones(y.shape))
    return y, [t.grad for t in ts]


def test_chwn_and_nchw_give_the_same_values_and_gradients(net_inputs):
    y_nchw, g_nchw = _run(net_inputs, 10**9)                   # never CHWN
    y_chwn, g_chwn = _run(net_inputs, 1)                       # CHWN whenever possible
    y_pos, g_pos = _run(net_inputs, 10**9, "positions")        # always CHWN
    y_plain, g_plain = _run(net_inputs, 1, enabled=False)      # the plain path
    assert is_chwn(y_chwn.data) and is_chwn(y_pos.data) and not is_chwn(y_nchw.data)
    for y, grads in ((y_chwn, g_chwn), (y_pos, g_pos), (y_plain, g_plain)):
        np.testing.assert_allclose(y.data, y_nchw.data, rtol=1e-12, atol=1e-12)
        for a, b in zip(grads, g_nchw):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule", ["chunks", "positions"])
def test_conv_outputs_chwn_for_large_chunks_and_its_input_gradient_too(rng, schedule):
    x = md.Tensor(rng.standard_normal((8, 3, 6, 6)), requires_grad=True)
    W = md.Tensor(rng.standard_normal((5, 3, 3, 3)), requires_grad=True)
    with use_fast_path(plan=Plan(conv_schedule=schedule, chwn_min_chunk=2)):
        y = F.conv2d(x, W, pad=1)
        assert is_chwn(y.data)
        y.backward(np.ones(y.shape))
    assert is_chwn(x.grad)


@pytest.mark.parametrize("path", ["plain", "fast"])
def test_gradcheck_through_chwn_layers(net_inputs, path):
    with use_fast_path(path == "fast", Plan(chwn_min_chunk=1)):
        assert gradcheck(_conv_net, *net_inputs) < 1e-5   # relu and max kinks


@pytest.mark.parametrize("path", ["plain", "fast", "fast-slicing"], indirect=True)
@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
@pytest.mark.parametrize("x_layout, g_layout", [("chwn", "chwn"), ("chwn", "nchw"),
                                                ("nchw", "chwn")])
def test_pool_reads_and_writes_either_layout(rng, pool, x_layout, g_layout, path):
    """Each path, given either layout, gives what it gives for NCHW: the very
    same numbers (no sum changes its order)."""
    x = rng.standard_normal((5, 3, 9, 8))
    x[:, :, 1, 1] = x[:, :, 0, 0]                     # ties, for max-pooling
    g = None
    ref_x = md.Tensor(x, requires_grad=True)
    ref = pool(ref_x, 3, 2, ceil_mode=True)
    g = rng.standard_normal(ref.shape)
    ref.backward(g)

    xl = md.Tensor(as_chwn(x) if x_layout == "chwn" else x, requires_grad=True)
    y = pool(xl, 3, 2, ceil_mode=True)
    if path == "fast":
        assert is_chwn(y.data) == (x_layout == "chwn")    # written as it was read
    y.backward(as_chwn(g) if g_layout == "chwn" else g)
    np.testing.assert_array_equal(y.data, ref.data)
    np.testing.assert_array_equal(xl.grad, ref_x.grad)


@pytest.mark.parametrize("path", ["plain", "fast"], indirect=True)
def test_lrn_and_relu_accept_chwn(rng, path):
    x = rng.standard_normal((4, 7, 5, 5))
    for f in (F.relu, F.tanh, lambda t: F.local_response_norm(t, 5, 1.0, 1.0, 0.75)):
        a, b = md.Tensor(x, requires_grad=True), md.Tensor(as_chwn(x), requires_grad=True)
        ya, yb = f(a), f(b)
        g = rng.standard_normal(ya.shape)
        ya.backward(g)
        yb.backward(as_chwn(g))
        np.testing.assert_allclose(yb.data, ya.data, rtol=1e-12)
        np.testing.assert_allclose(b.grad, a.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape, W_shape, pad, groups", [
    ((9, 6, 7, 5), (4, 6, 3, 3), 1, 1),          # C_out < C: dx as a convolution of dy
    ((9, 4, 6, 6), (4, 2, 5, 3), 2, 2),          # groups, non-square kernel, C_out == C
    ((3, 4, 5, 7), (2, 4, 3, 3), 0, 1),          # no padding, small batch (NCHW)
])
def test_dx_as_convolution_equals_col2im(rng, shape, W_shape, pad, groups):
    x, W = rng.standard_normal(shape), rng.standard_normal(W_shape)
    grads = []
    for enabled, schedule, as_conv in ((False, "auto", False), ("chunks", "chunks", False),
                                       ("chunks", "chunks", True), ("positions", "positions", True)):
        with use_fast_path(bool(enabled), Plan(conv_schedule=schedule, dx_as_conv=as_conv)):
            xt = md.Tensor(x, requires_grad=True)
            y = F.conv2d(xt, md.Tensor(W), pad=pad, groups=groups)
            y.backward(np.cos(np.arange(y.size)).reshape(y.shape))
        grads.append(xt.grad)
    for g in grads[1:]:
        np.testing.assert_allclose(g, grads[0], rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda a, w: F.conv2d(a, w, pad=pad, groups=groups), x, W) < 1e-5

"""The locally connected layer (cuda-convnet's "local" layer): loops, gradients, module."""
import numpy as np
import pytest

import minidl as md
from minidl import nn
from minidl.functions import locally_connected
from minidl.gradcheck import gradcheck
from reference import local_loops

# (N, C, H, W, C_out, K, stride, pad): odd on purpose
SHAPES = [
    (1, 3, 5, 5, 2, 3, 1, 1),       # batch 1, the claims net's 3x3 pad 1
    (2, 2, 6, 6, 3, 3, 2, 0),       # stride 2, no padding
    (3, 4, 4, 4, 5, 2, 1, 0),       # even kernel, C_out not a multiple of anything
    (2, 1, 3, 3, 4, 3, 1, 0),       # one output position
]


def _random(row, seed=0):
    N, C, H, W, O, K, s, p = row
    rng = np.random.default_rng(seed)
    OH = (H + 2 * p - K) // s + 1
    return (rng.standard_normal((N, C, H, W)), rng.standard_normal((OH, OH, O, C, K, K)),
            rng.standard_normal((O, OH, OH)))


@pytest.mark.parametrize("row", SHAPES)
def test_matches_the_loop_definition(row):
    x, W, b = _random(row)
    s, p = row[6:]
    y = locally_connected(md.Tensor(x), md.Tensor(W), md.Tensor(b), s, p)
    np.testing.assert_allclose(y.data, local_loops(x, W, b, s, p), rtol=1e-10, atol=1e-10)
    y0 = locally_connected(md.Tensor(x), md.Tensor(W), None, s, p)
    np.testing.assert_allclose(y0.data, local_loops(x, W, None, s, p), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("row", SHAPES)
def test_gradients_in_float64_every_input(row):
    x, W, b = _random(row, seed=1)
    s, p = row[6:]
    err = gradcheck(lambda x, W, b: locally_connected(x, W, b, s, p), x, W, b, tol=1e-6)
    assert err < 1e-6
    err = gradcheck(lambda x, W: locally_connected(x, W, None, s, p), x, W, tol=1e-6)
    assert err < 1e-6


def test_shared_weights_make_it_a_convolution():
    """With the same filter bank at every position it is conv2d."""
    x, W, b = _random((2, 3, 6, 6, 4, 3, 1, 1), seed=2)
    W[:] = W[0, 0]
    b[:] = b[:, :1, :1]
    y = locally_connected(md.Tensor(x), md.Tensor(W), md.Tensor(b), 1, 1)
    conv = md.functions.conv2d(md.Tensor(x), md.Tensor(W[0, 0]), md.Tensor(b[:, 0, 0]), 1, 1)
    np.testing.assert_allclose(y.data, conv.data, rtol=1e-10, atol=1e-10)


def test_module_shapes_and_training_dtype():
    layer = nn.LocallyConnected2d(8, 4, 3, input_size=6, padding=1, weight_std=0.04)
    assert layer.weight.shape == (6, 6, 4, 8, 3, 3) and layer.bias.shape == (4, 6, 6)
    y = layer(md.Tensor(np.ones((2, 8, 6, 6), np.float32)))
    assert y.shape == (2, 4, 6, 6) and y.data.dtype == np.float32
    assert layer.num_parameters() == 6 * 6 * 4 * 8 * 9 + 4 * 36


def test_a_wrong_input_size_is_a_clear_error():
    layer = nn.LocallyConnected2d(2, 3, 3, input_size=6, padding=1)
    with pytest.raises(ValueError, match=r"gives 5x5 positions.*Build the layer for this input"):
        layer(md.Tensor(np.ones((1, 2, 5, 5), np.float32)))
    with pytest.raises(ValueError, match="leaves no output position"):
        nn.LocallyConnected2d(2, 3, 5, input_size=3)

"""Dropout as Section 4.2 writes it, and the copy op that moves tensors
between devices (the crossings of Figure 2)."""
import numpy as np
import pytest

import minidl as md
from minidl import Tensor, functions as F
from minidl.functions.dropout import Dropout
from reference import dropout_keeps


def test_dropout_training_zeroes_without_rescaling(rng):
    x = rng.uniform(1, 2, (200, 300))
    y = F.dropout(Tensor(x), 0.5, train=True).data
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])          # no 1/(1-p) scaling
    assert abs(kept.mean() - 0.5) < 0.01


def test_dropout_test_time_multiplies_by_one_minus_p(rng):
    x = rng.standard_normal((4, 5))
    np.testing.assert_allclose(F.dropout(Tensor(x), 0.5, train=False).data, 0.5 * x)
    np.testing.assert_allclose(F.dropout(Tensor(x), 0.2, train=False).data, 0.8 * x)


def test_dropout_gradients(rng):
    x = rng.standard_normal((3, 8))
    # the same mask for every evaluation: a fixed generator state per call
    def f(t):
        return F.dropout(t, 0.5, True, np.random.default_rng(7))
    assert md.gradcheck(f, x, tol=1e-6) < 1e-6
    assert md.gradcheck(lambda t: F.dropout(t, 0.5, False), x, tol=1e-6) < 1e-6


def test_dropout_is_seeded_and_checks_p():
    md.random.manual_seed(3)
    a = F.dropout(Tensor(np.ones(50)), 0.5).data
    md.random.manual_seed(3)
    b = F.dropout(Tensor(np.ones(50)), 0.5).data
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="0 <= p < 1"):
        F.dropout(Tensor(np.ones(3)), 1.0)


@pytest.mark.parametrize("p", [0.5, 0.1, 0.9])
def test_dropout_mask_is_the_hash_of_its_key(p):
    """The mask is the counter hash of the module docstring, unit by unit: the
    array code (NumPy here, CuPy on a GPU) against the same hash in Python ints."""
    key = (123456789, 4000000000)
    x = np.ones((7, 9))
    y = Dropout(p, key).forward(x)
    expected = [dropout_keeps(i, key, p) for i in range(x.size)]
    np.testing.assert_array_equal(y.reshape(-1) != 0, expected)
    np.testing.assert_array_equal(Dropout(p, key).backward(x), y)   # the same mask again
    assert not np.array_equal(Dropout(p, (key[0] + 1, key[1])).forward(x), y)


def test_dropout_draws_its_key_from_minidls_generator():
    """A seeded run draws the same keys; the state saved in a checkpoint resumes them."""
    md.random.manual_seed(5)
    state = md.random.get_state()
    a = F.dropout(Tensor(np.ones(64)), 0.5).data
    md.random.set_state(state)
    np.testing.assert_array_equal(F.dropout(Tensor(np.ones(64)), 0.5).data, a)


def test_copy_moves_between_virtual_devices_and_sends_the_gradient_home(rng):
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True, device="cpu:0")
    y = md.copy(x, "cpu:1")
    assert y.device == "cpu:1" and x.device == "cpu:0"
    assert not np.shares_memory(x.data, y.data)
    w = Tensor(rng.standard_normal((2, 3)), device="cpu:1")
    (y * w).sum().backward()
    np.testing.assert_allclose(x.grad, w.data)
    assert md.gradcheck(lambda t: md.copy(t, "cpu:1") * 2, rng.standard_normal(4), tol=1e-8) < 1e-8
    assert x.to("cpu:1").device == "cpu:1"

"""The engine itself: Tensor, backward by topological sort, accumulation,
no_grad, freeing the graph, and device checks."""
import numpy as np
import pytest

import minidl as md
from minidl import Tensor, functions as F


def test_chain_rule_on_a_small_expression():
    # y = (a*b + a) summed; dy/da = b + 1, dy/db = a
    a = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([4.0, 5.0, -6.0]), requires_grad=True)
    y = (a * b + a).sum()
    y.backward()
    np.testing.assert_allclose(y.data, 1 * 4 - 2 * 5 - 18 + 2)
    np.testing.assert_allclose(a.grad, b.data + 1)
    np.testing.assert_allclose(b.grad, a.data)


def test_gradients_accumulate_when_a_tensor_feeds_several_ops():
    x = Tensor(np.array([2.0]), requires_grad=True)
    y = x * x * x + x * 3          # dy/dx = 3x^2 + 3 = 15
    y.backward(np.ones(1))
    np.testing.assert_allclose(x.grad, [15.0])
    # and across backward calls, as for parameters before zero_grad
    (x * 2).backward(np.ones(1))
    np.testing.assert_allclose(x.grad, [17.0])


def test_diamond_graph_uses_topological_order():
    # x -> h -> (u, v) -> y: h's gradient must be complete before h's creator runs
    x = Tensor(np.array([0.5, -1.5]), requires_grad=True)
    h = F.tanh(x)
    y = (h * 2 + F.relu(h) * h).sum()
    y.backward()
    t = np.tanh(x.data)
    dh = 2 + np.where(t > 0, 2 * t, 0)
    np.testing.assert_allclose(x.grad, dh * (1 - t ** 2))


def test_unused_output_of_a_multi_output_op_gets_zero_gradient():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    top, _ = F.split(x, 2, axis=0)
    top.sum().backward()
    np.testing.assert_allclose(x.grad, [[1, 1, 1], [0, 0, 0]])


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with md.no_grad():
        y = x * 2
    assert y.creator is None and not y.requires_grad
    assert md.is_grad_enabled()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_graph_is_freed_after_backward_unless_retained():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * np.ones(3))
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_constants_take_the_tensor_dtype():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = 2.5 * x - 1 + x / 2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, 3.0)


def test_backward_needs_scalar_or_explicit_grad():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        (x * 2).backward(np.ones(3))


def test_mixing_devices_names_both():
    a = Tensor(np.ones(2), device="cpu:0")
    b = Tensor(np.ones(2), device="cpu:1")
    with pytest.raises(ValueError, match=r"'cpu:0'.*'cpu:1'"):
        a + b
    with pytest.raises(ValueError, match="cpu:1"):
        F.matmul(Tensor(np.ones((2, 2)), device="cpu"), Tensor(np.ones((2, 2)), device="cpu:1"))


def test_leaf_backward_and_detach():
    x = Tensor(np.ones(2), requires_grad=True)
    x.backward(np.array([3.0, 4.0]))
    np.testing.assert_allclose(x.grad, [3, 4])
    d = (x * 2).detach()
    assert d.creator is None and not d.requires_grad
    with pytest.raises(TypeError, match="already a Tensor"):
        Tensor(x)


def test_item_and_numpy():
    x = Tensor(np.array([[2.5]]))
    assert x.item() == 2.5
    assert isinstance(x.numpy(), np.ndarray)
    with pytest.raises(ValueError, match="one element"):
        Tensor(np.ones(2)).item()


def test_gradcheck_catches_a_wrong_backward():
    class Wrong(md.Function):
        def forward(self, x):
            return x * x

        def backward(self, g):
            return g * 3  # should be 2x

    with pytest.raises(AssertionError, match="input 0"):
        md.gradcheck(lambda x: Wrong()(x), np.array([0.3, -0.7]), tol=1e-6)
    assert md.gradcheck(lambda x: Wrong()(x), np.array([0.3, -0.7])) > 0.1

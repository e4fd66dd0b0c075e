"""Gradient checks (float64, every input) and values of the arithmetic,
reduction, shape, activation and linear ops, on the plain path and on the
CPU fast path (ReLU, tanh and linear have one: minidl/cpu)."""
import numpy as np
import pytest

import minidl as md
from minidl import Tensor, functions as F
from reference import on_path

TOL = 1e-6


@pytest.fixture(autouse=True, params=["plain", "fast"])
def path(request):
    with on_path(request.param):
        yield request.param


@pytest.mark.parametrize("op", [F.add, F.sub, F.mul, F.div])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1)),
                                    ((1,), (2, 3))])
def test_broadcasting_binary_ops(op, shapes, rng):
    a = rng.standard_normal(shapes[0])
    b = rng.uniform(0.5, 2.0, shapes[1])  # away from 0 for div
    assert md.gradcheck(op, a, b, tol=TOL) < TOL
    np.testing.assert_allclose(op(Tensor(a), Tensor(b)).data,
                               {F.add: np.add, F.sub: np.subtract, F.mul: np.multiply,
                                F.div: np.divide}[op](a, b))


def test_unary_ops(rng):
    x = rng.uniform(0.5, 2.0, (3, 5))
    for f in (F.neg, F.exp, F.log, lambda t: F.power(t, 3), lambda t: t ** 0.5):
        assert md.gradcheck(f, x, tol=TOL) < TOL


def test_matmul(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    assert md.gradcheck(F.matmul, a, b, tol=TOL) < TOL
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, a @ b)
    with pytest.raises(ValueError, match=r"expected \(M, K\) @ \(K, N\)"):
        F.matmul(Tensor(a), Tensor(a))


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False),
                                           (-1, False)])
def test_sum_and_mean(axis, keepdims, rng):
    x = rng.standard_normal((2, 3, 4))
    assert md.gradcheck(lambda t: F.sum(t, axis, keepdims), x, tol=TOL) < TOL
    assert md.gradcheck(lambda t: F.mean(t, axis, keepdims), x, tol=TOL) < TOL
    np.testing.assert_allclose(F.mean(Tensor(x), axis, keepdims).data,
                               x.mean(axis=axis, keepdims=keepdims))


def test_shape_ops(rng):
    x = rng.standard_normal((2, 3, 4))
    assert md.gradcheck(lambda t: F.reshape(t, (4, 6)), x, tol=TOL) < TOL
    assert md.gradcheck(lambda t: F.transpose(t, (2, 0, 1)), x, tol=TOL) < TOL
    assert md.gradcheck(lambda t: t.T, x, tol=TOL) < TOL
    assert md.gradcheck(F.flatten, x, tol=TOL) < TOL
    assert F.flatten(Tensor(x)).shape == (2, 12)
    assert md.gradcheck(lambda t: t[1:, ::2], x, tol=TOL) < TOL
    assert md.gradcheck(lambda t: t[np.array([0, 0, 1])], x, tol=TOL) < TOL  # repeated index adds


def test_concat_and_split(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 5))
    assert md.gradcheck(lambda p, q: F.concat([p, q], axis=1), a, b, tol=TOL) < TOL
    x = rng.standard_normal((4, 6))
    assert md.gradcheck(lambda t: F.split(t, [1, 5], axis=1)[1] * F.split(t, [1, 5], axis=1)[0],
                        x, tol=TOL) < TOL
    parts = F.split(Tensor(x), 2, axis=0)
    np.testing.assert_array_equal(parts[1].data, x[2:])
    with pytest.raises(ValueError, match="does not divide"):
        F.split(Tensor(x), 4, axis=1)
    with pytest.raises(ValueError, match="add up to 5"):
        F.split(Tensor(x), [2, 3], axis=1)


def test_activations(rng):
    x = rng.standard_normal((3, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep relu away from its kink
    for f in (F.relu, F.tanh, F.sigmoid):
        assert md.gradcheck(f, x, tol=TOL) < TOL
    np.testing.assert_array_equal(F.relu(Tensor(x)).data, np.maximum(x, 0))
    np.testing.assert_allclose(F.sigmoid(Tensor(np.array([-800.0, 0, 800]))).data, [0, 0.5, 1])


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias, rng):
    x, W, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    args = (x, W, b) if bias else (x, W)
    assert md.gradcheck(F.linear, *args, tol=TOL) < TOL
    np.testing.assert_allclose(F.linear(*map(Tensor, args)).data, x @ W.T + (b if bias else 0))


def test_linear_bad_input():
    with pytest.raises(ValueError, match=r"linear: expected x of shape \(N, 4\).*found x \(5, 3\)"):
        F.linear(Tensor(np.ones((5, 3))), Tensor(np.ones((2, 4))))
    with pytest.raises(ValueError, match="floating-point input, found int64"):
        F.linear(Tensor(np.ones((5, 4), dtype=np.int64)), Tensor(np.ones((2, 4))))
    with pytest.raises(ValueError, match=r"bias of shape \(2,\)"):
        F.linear(Tensor(np.ones((5, 4))), Tensor(np.ones((2, 4))), Tensor(np.ones(3)))


def test_relu_in_place_overwrites_its_input_and_has_the_same_gradient(rng):
    x = rng.standard_normal((4, 5))
    w = Tensor(rng.standard_normal((5, 6)), requires_grad=True)
    g = rng.standard_normal((4, 6))
    grads = []
    for inplace in (False, True):
        w.grad = None
        h = Tensor(x) @ w                        # a fresh array that only relu reads
        y = F.relu(h, inplace=inplace)
        assert (y.data is h.data) == inplace
        y.backward(g)
        grads.append(w.grad)
    np.testing.assert_array_equal(*grads)
    assert md.gradcheck(lambda t: F.relu(t * 1.0, inplace=True), x, tol=TOL) < TOL

import numpy as np
import pytest

import minidl as md
from minidl import Tensor, functions as F

TOL = 1e-6


def logsumexp_reference(x):
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


def test_cross_entropy_matches_log_sum_exp_reference(rng):
    x = rng.standard_normal((6, 5)) * 3
    y = np.array([0, 4, 2, 2, 1, 3])
    loss = F.softmax_cross_entropy(Tensor(x), y).item()
    expected = np.mean(logsumexp_reference(x) - x[np.arange(6), y])
    assert loss == pytest.approx(expected, rel=1e-12)
    # a scalar loss: round-off in central differences is ~1e-10 of it, so 1e-5 here
    assert md.gradcheck(lambda t: F.softmax_cross_entropy(t, y), x, tol=1e-5) < 1e-5


def test_cross_entropy_is_stable_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0]], dtype=np.float32)
    t = Tensor(x, requires_grad=True)
    loss = F.softmax_cross_entropy(t, np.array([1, 0]))
    assert np.isfinite(loss.item())
    assert loss.item() == pytest.approx((1e4 + np.log(2)) / 2, rel=1e-6)
    loss.backward()
    assert np.all(np.isfinite(t.grad))
    np.testing.assert_allclose(t.grad, [[0.5, -0.5, 0], [-0.25, 0.25, 0]], atol=1e-6)


def test_cross_entropy_accepts_tensor_labels_and_checks_them():
    x = Tensor(np.zeros((2, 3)))
    assert F.softmax_cross_entropy(x, Tensor(np.array([0, 2]))).item() == pytest.approx(np.log(3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*from 0 to 3"):
        F.softmax_cross_entropy(x, np.array([0, 3]))
    with pytest.raises(ValueError, match="-1"):
        F.softmax_cross_entropy(x, np.array([-1, 0]))
    with pytest.raises(ValueError, match="integer class labels"):
        F.softmax_cross_entropy(x, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels of shape \(2,\)"):
        F.softmax_cross_entropy(x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"logits of shape \(N, classes\)"):
        F.softmax_cross_entropy(Tensor(np.zeros(3)), np.array([0]))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax(axis, rng):
    x = rng.standard_normal((3, 4))
    assert md.gradcheck(lambda t: F.softmax(t, axis), x, tol=TOL) < TOL
    assert md.gradcheck(lambda t: F.log_softmax(t, axis), x, tol=TOL) < TOL
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    p = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(F.softmax(Tensor(x), axis).data, p)
    np.testing.assert_allclose(F.log_softmax(Tensor(x), axis).data, np.log(p))
    big = F.log_softmax(Tensor(np.array([[1000.0, 0.0]])), -1).data
    np.testing.assert_allclose(big, [[0.0, -1000.0]])

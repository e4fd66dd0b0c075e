"""Max and average pooling against the loop definitions of reference.py, on both paths."""
import numpy as np
import pytest

import minidl as md
from minidl.functions import avg_pool2d, max_pool2d
from minidl.functions import pool
from minidl.functions.pool import pool_output_size
from reference import max_pool_grad_loops, on_path, out_size, pool_loops


@pytest.fixture(autouse=True, params=["plain", "fast"])
def impl(request):
    """Every test runs on both paths: the plain slicing (what CuPy runs), and
    the CPU fast path's compiled loops (minidl/cpu/pool_kernels.py, numba)."""
    if request.param == "fast":
        pytest.importorskip("numba")
    with on_path(request.param):
        yield request.param


def distinct(shape, seed=0):
    """Values without ties (a scaled permutation), so max-pooling is differentiable."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / np.prod(shape) - 0.5)


CASES = [  # (shape, kernel, stride, ceil_mode)
    ((2, 3, 13, 13), 3, 2, False),   # AlexNet's 3/2, 13 -> 6
    ((2, 3, 13, 13), 3, 2, True),    # 13 -> 6 both ways (exact fit)
    ((2, 2, 32, 32), 3, 2, True),    # CIFAR layers-80sec: 32 -> 16, last window clipped
    ((2, 2, 32, 32), 3, 2, False),   # 32 -> 15
    ((1, 1, 7, 10), 3, 2, True),     # batch 1, non-square
    ((1, 3, 9, 6), 2, 2, False),     # 2/2, odd height drops the last row
    ((1, 3, 9, 6), 2, 2, True),      # 2/2 ceil: the last row is a window of its own
    ((3, 1, 5, 8), 3, 1, False),     # stride 1
    ((1, 2, 11, 7), 3, 3, True),     # non-overlapping, clipped
    ((1, 1, 4, 4), 1, 2, True),      # kernel < stride: no window may start past the edge
    ((2, 2, 3, 3), 3, 2, False),     # one window covers the whole map
]


@pytest.mark.parametrize("shape,k,s,ceil_mode", CASES)
def test_max_pool_forward_backward_match_loops(shape, k, s, ceil_mode):
    x = distinct(shape)
    t = md.Tensor(x, requires_grad=True)
    y = max_pool2d(t, k, s, ceil_mode)
    np.testing.assert_array_equal(y.data, pool_loops(x, k, s, ceil_mode, np.max))
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(g)
    np.testing.assert_allclose(t.grad, max_pool_grad_loops(x, g, k, s, ceil_mode), atol=1e-12)


@pytest.mark.parametrize("shape,k,s,ceil_mode", CASES)
def test_avg_pool_forward_matches_loops(shape, k, s, ceil_mode):
    x = np.random.default_rng(2).standard_normal(shape)
    y = avg_pool2d(md.Tensor(x), k, s, ceil_mode)
    np.testing.assert_allclose(y.data, pool_loops(x, k, s, ceil_mode, np.mean), atol=1e-12)


def test_output_sizes_of_the_papers_nets():
    assert [pool_output_size(h, 3, 2) for h in (55, 27, 13)] == [27, 13, 6]
    assert [pool_output_size(h, 3, 2, ceil_mode=True) for h in (32, 16, 8)] == [16, 8, 4]
    for h in range(3, 40):
        for k, s in ((3, 2), (2, 2), (3, 1), (1, 2), (3, 3)):
            if k <= h:
                for c in (False, True):
                    assert pool_output_size(h, k, s, c) == out_size(h, k, s, c)


def test_ceil_mode_average_divides_by_the_elements_inside():
    x = np.ones((1, 1, 4, 4))                  # windows at rows/cols 0-2 and 2-3 (clipped)
    y = avg_pool2d(md.Tensor(x), 3, 2, ceil_mode=True).data
    assert y.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(y, 1.0)         # dividing by 9 would give 6/9 and 4/9 at the edge
    x[0, 0, 3, 3] = 5.0                        # only in the bottom-right window of 2x2
    y = avg_pool2d(md.Tensor(x), 3, 2, ceil_mode=True).data
    assert y[0, 0, 1, 1] == pytest.approx((3 + 5) / 4)


def test_max_pool_ties_send_the_gradient_to_one_element():
    x = np.zeros((1, 1, 4, 4))                 # all ties, as after a ReLU of negatives
    t = md.Tensor(x, requires_grad=True)
    y = max_pool2d(t, 2, 2)
    y.backward(np.ones(y.shape))
    expected = np.zeros((4, 4))
    expected[0::2, 0::2] = 1.0                 # the top-left element of each window
    np.testing.assert_array_equal(t.grad[0, 0], expected)
    assert t.grad.sum() == y.size              # total gradient is conserved


@pytest.mark.parametrize("op", [max_pool2d, avg_pool2d])
@pytest.mark.parametrize("shape,k,s,ceil_mode", [
    ((1, 2, 7, 5), 3, 2, False), ((2, 1, 8, 8), 3, 2, True),
    ((1, 2, 5, 6), 2, 2, True), ((1, 1, 6, 7), 3, 1, False)])
def test_gradcheck(op, shape, k, s, ceil_mode):
    x = distinct(shape, seed=3)
    assert md.gradcheck(lambda t: op(t, k, s, ceil_mode), x, tol=1e-6) < 1e-6


@pytest.mark.parametrize("op", [max_pool2d, avg_pool2d])
def test_float32_close_to_float64(op):
    x = np.random.default_rng(4).standard_normal((2, 4, 15, 15))
    g = np.random.default_rng(5).standard_normal((2, 4, 7, 7))
    results = []
    for dtype in (np.float32, np.float64):
        t = md.Tensor(x.astype(dtype), requires_grad=True)
        y = op(t, 3, 2)
        y.backward(g.astype(dtype))
        assert y.dtype == dtype and t.grad.dtype == dtype
        results.append((y.data, t.grad))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,name", [(max_pool2d, "max_pool2d"), (avg_pool2d, "avg_pool2d")])
def test_bad_input(op, name):
    good = md.Tensor(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=rf"{name}.*\(N, C, H, W\).*\(2, 5, 5\)"):
        op(md.Tensor(np.zeros((2, 5, 5), np.float32)))
    with pytest.raises(ValueError, match=rf"{name}.*floating.*int64.*astype"):
        op(md.Tensor(np.zeros((1, 2, 5, 5), np.int64)))
    with pytest.raises(ValueError, match=rf"{name}.*kernel 7x7 is larger than the input 5x5"):
        op(good, kernel=7)
    with pytest.raises(ValueError, match=rf"{name}.*stride > 0.*stride=0"):
        op(good, stride=0)
    with pytest.raises(ValueError, match=rf"{name}.*stride > 0.*stride=-1"):
        op(good, stride=-1)
    with pytest.raises(ValueError, match=rf"{name}.*kernel.*positive int.*float"):
        op(good, kernel=2.5)


def test_no_grad_keeps_nothing():
    x = md.Tensor(distinct((1, 1, 5, 5)))
    fn = md.functions.pool.MaxPool2d(3, 2)
    fn(x)
    assert not hasattr(fn, "x")


def test_compiled_loops_run_on_the_fast_path(impl):
    fn = pool.MaxPool2d(3, 2)
    fn.needs_input_grad = (True,)
    fn.forward(distinct((2, 3, 7, 7)))
    if impl == "fast":                       # each window's winner kept, as one byte
        assert fn.fast.argmax.dtype == np.uint8 and fn.fast.argmax.max() <= 8
    else:
        assert fn.fast is None and fn.y.shape == (2, 3, 3, 3)


def test_max_pool_propagates_nan():
    x = distinct((1, 1, 5, 5))
    x[0, 0, 1, 1] = np.nan                   # in the first window only (3/2: rows, cols 0-2)
    y = max_pool2d(md.Tensor(x), 3, 2).data
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1, 1])
    assert y[0, 0, 1, 1] == x[0, 0, 2:5, 2:5].max()

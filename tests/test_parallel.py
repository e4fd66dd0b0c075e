"""minidl.cpu.parallel: ops split by images over threads give the values of one thread."""
import threading

import numpy as np
import pytest

import minidl
from minidl import Tensor, functions as F, optim
from minidl.cpu import parallel


@pytest.fixture(autouse=True)
def default_threads():
    yield
    minidl.set_num_threads(None)


def test_ranges_cover_in_order_on_distinct_threads():
    minidl.set_num_threads(3)
    seen = []

    def fn(i0, i1):
        seen.append((i0, threading.get_ident()))
        return i0, i1
    ranges = parallel.parallel_for(fn, 10)
    assert ranges == [(0, 3), (3, 6), (6, 10)]
    threads = dict(seen)
    assert threads[6] == threading.get_ident()                  # the caller runs the last
    assert threads[0] != threads[6] and threads[3] != threads[6]  # the others, pool threads
    assert parallel.parallel_for(fn, 2) == [(0, 1), (1, 2)]       # fewer items than threads
    assert parallel.parallel_for(fn, 10, grain=4) == [(0, 5), (5, 10)]
    assert parallel.parallel_for(fn, 10, enabled=False) == [(0, 10)]
    minidl.set_num_threads(1)
    assert parallel.parallel_for(fn, 10) == [(0, 10)]


def test_a_range_inside_a_range_runs_in_its_thread():
    minidl.set_num_threads(2)
    inner = parallel.parallel_for(lambda i0, i1: parallel.parallel_for(lambda a, b: (a, b), 8), 4)
    assert inner == [[(0, 8)], [(0, 8)]]


def test_an_error_in_any_range_is_raised_after_all_ranges_stop():
    minidl.set_num_threads(3)
    finished = []

    def fn(i0, i1):
        if i0 == 0:
            raise RuntimeError("range 0 failed")
        finished.append(i0)
    with pytest.raises(RuntimeError, match="range 0 failed"):
        parallel.parallel_for(fn, 9)
    assert sorted(finished) == [3, 6]


def test_thread_count_checks(monkeypatch):
    with pytest.raises(ValueError, match="positive int"):
        minidl.set_num_threads(0)
    monkeypatch.setenv("MINIDL_NUM_THREADS", "3")
    assert minidl.get_num_threads() == 3
    monkeypatch.setenv("MINIDL_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="MINIDL_NUM_THREADS: expected a positive integer, "
                                         "found 'many'"):
        minidl.get_num_threads()
    minidl.set_num_threads(2)                     # an explicit count wins over the variable
    assert minidl.get_num_threads() == 2


def test_blas_held_at_one_thread_while_split_and_given_back():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]
    minidl.set_num_threads(1)
    before = blas_threads()
    minidl.set_num_threads(2)
    parallel.parallel_for(lambda i0, i1: None, 4)
    assert all(n == 1 for n in blas_threads())
    minidl.set_num_threads(1)
    assert blas_threads() == before


def _grads(build, arrays, threads):
    """Output and input gradients of build(*tensors) with `threads` threads."""
    minidl.set_num_threads(threads)
    ts = [Tensor(a, requires_grad=True) for a in arrays]
    y = build(*ts)
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(g.astype(y.data.dtype))
    return [np.array(y.data)] + [t.grad for t in ts]


rng = np.random.default_rng(0)
CASES = {
    # conv with one image per chunk (NCHW output) and with CHWN chunks; grouped
    "conv_nchw": (lambda x, w: F.conv2d(x, w, pad=1, stride=2),
                  [rng.standard_normal((5, 3, 40, 40)), rng.standard_normal((4, 3, 3, 3))]),
    "conv_chwn_groups": (lambda x, w: F.conv2d(x, w, pad=2, groups=2),
                         [rng.standard_normal((37, 4, 8, 8)), rng.standard_normal((4, 2, 5, 5))]),
    "conv_col2im": (lambda x, w: F.conv2d(x, w, pad=1),       # C_out > C: col2im
                    [rng.standard_normal((19, 2, 9, 7)), rng.standard_normal((6, 2, 3, 3))]),
    "max_pool": (lambda x: F.max_pool2d(x, 3, 2), [rng.standard_normal((6, 5, 15, 15))]),
    "avg_pool_ceil": (lambda x: F.avg_pool2d(x, 3, 2, ceil_mode=True),
                      [rng.standard_normal((6, 5, 16, 16))]),
    "lrn": (lambda x: F.local_response_norm(x, n=5, k=1.0, alpha=1.0),
            [rng.standard_normal((7, 6, 5, 5))]),
    "relu": (F.relu, [rng.standard_normal((9, 8, 40, 40))]),
    "tanh": (F.tanh, [rng.standard_normal((9, 8, 40, 40))]),
    "linear": (lambda x, w, b: F.linear(x, w, b),             # big enough to be split
               [rng.standard_normal((64, 512)), rng.standard_normal((300, 512)),
                rng.standard_normal(300)]),
    "pool_after_chwn_conv": (lambda x, w: F.max_pool2d(F.relu(F.conv2d(x, w, pad=2)), 3, 2),
                             [rng.standard_normal((40, 3, 12, 12)),
                              rng.standard_normal((5, 3, 5, 5))]),
}


# Cases without a BLAS call: each thread's range is computed by the same code
# on the same values as with one thread, so the results are the very same bits.
# Wherever a BLAS runs (conv, linear), its sums may be ordered differently by
# block size and CPU (a different kernel on another machine): a tolerance.
NO_BLAS = {"max_pool", "avg_pool_ceil", "lrn", "relu", "tanh"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_three_threads_give_the_values_of_one(name):
    build, arrays = CASES[name]
    one = _grads(build, arrays, 1)
    three = _grads(build, arrays, 3)
    for a, b in zip(one, three):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    if name in NO_BLAS:
        for a, b in zip(one, three):
            np.testing.assert_array_equal(b, a)


def test_float32_training_step_same_under_threads():
    """A float32 CIFAR-net step: the loss and every parameter after one SGD step agree."""
    from alexnet.model import CifarNet, CifarNetConfig
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32) * 50
    y = rng.integers(0, 10, 16)
    out = []
    for threads in (1, 2):
        minidl.set_num_threads(threads)
        net = CifarNet(CifarNetConfig(activation="tanh"), seed=0)
        opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0)
        loss = F.softmax_cross_entropy(net(Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append([float(loss.data)] + [p.data.copy() for p in net.parameters()])
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-6)
    for a, b in zip(out[0][1:], out[1][1:]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_a_forked_child_starts_its_own_threads():
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    minidl.set_num_threads(2)
    parallel.parallel_for(lambda i0, i1: None, 4)              # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:                                  # would hang on a dead pool
        assert pool.apply_async(_child_ranges).get(timeout=60) == [(0, 2), (2, 4)]


def _child_ranges():
    minidl.set_num_threads(2)
    return parallel.parallel_for(lambda i0, i1: (i0, i1), 4)

"""The plain path of every op on a CuPy device (the stand-in in CI, a GPU
where there is one): the same numbers as on NumPy, no host syncs, few kernels."""
import importlib

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")          # tests/standin or real CuPy (tests/conftest.py)

_mod = {m: importlib.import_module("minidl.functions." + m)
        for m in ("conv", "local", "pool", "lrn", "activation", "linear", "dropout", "loss")}
rng = np.random.default_rng(0)
X = rng.standard_normal((4, 6, 9, 9))

# name -> (Function factory, inputs, kernel budget for forward + backward)
CASES = {
    "conv_groups": (lambda: _mod["conv"].Convolution(1, 1, 2),
                    [X, rng.standard_normal((8, 3, 3, 3)), rng.standard_normal(8)], 40),
    "conv_stride": (lambda: _mod["conv"].Convolution(2, 1, 1),
                    [X, rng.standard_normal((5, 6, 3, 3))], 40),
    "locally_connected": (lambda: _mod["local"].LocallyConnected(1, 1),
                          [X, rng.standard_normal((9, 9, 5, 6, 3, 3)),
                           rng.standard_normal((5, 9, 9))], 40),
    "max_pool": (lambda: _mod["pool"].MaxPool2d(3, 2, True), [X], 60),
    "avg_pool": (lambda: _mod["pool"].AvgPool2d(3, 2, True), [X], 50),
    "lrn": (lambda: _mod["lrn"].LocalResponseNorm(5, 1.0, 1.0, 0.75), [X], 30),
    "relu": (lambda: _mod["activation"].ReLU(), [X], 2),
    "tanh": (lambda: _mod["activation"].Tanh(), [X], 2),
    "linear": (lambda: _mod["linear"].Linear(),
               [rng.standard_normal((4, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)], 6),
    "dropout": (lambda: _mod["dropout"].Dropout(0.5, (12345, 678)), [X], 4),
}


def _forward_backward(make, arrays, g):
    f = make()
    f.needs_input_grad = (True,) * len(arrays)
    y = f.forward(*arrays)
    grads = f.backward(g)
    return [y] + list(grads if isinstance(grads, tuple) else (grads,))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_plain_path_on_a_device_equals_numpy_without_syncs(name):
    import minidl
    make, arrays, budget = CASES[name]
    with minidl.cpu.use_fast_path(False):
        f = make()
        f.needs_input_grad = (False,) * len(arrays)
        y = f.forward(*arrays)
        g = np.cos(np.arange(y.size)).reshape(y.shape)
        expected = _forward_backward(make, arrays, g)
    standin = getattr(cupy, "standin", None)
    if standin is not None:
        standin.reset()
    got = _forward_backward(make, [cupy.asarray(a) for a in arrays], cupy.asarray(g))
    if standin is not None:                  # counted where it can be: the stand-in
        counts = standin.counters()
        assert counts["syncs"] == 0 and counts["d2h"] == 0, counts
        assert counts["kernels"] <= budget, counts
    for a, b in zip(got, expected):
        np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=1e-12, atol=1e-12)


def test_device_labels_out_of_range_give_nan_not_a_sync():
    f = _mod["loss"].SoftmaxCrossEntropy(cupy.asarray(np.array([0, 5, 1, 2])))
    f.needs_input_grad = (True,)
    z = cupy.asarray(rng.standard_normal((4, 3)))
    assert np.isnan(cupy.asnumpy(f.forward(z)))
    d = cupy.asnumpy(f.backward(cupy.asarray(1.0)))
    assert np.isnan(d[1]).all() and not np.isnan(d[[0, 2, 3]]).any()

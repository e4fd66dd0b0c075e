"""The CPU fast path (minidl/cpu) against the plain path and the loop
definitions of reference.py, its switch and its Plan."""
import numpy as np
import pytest

import minidl
import minidl as md
from minidl import functions as F
from minidl.cpu import Plan, use_fast_path
from minidl.cpu import pool as cpu_pool
from minidl.cpu.layout import is_chwn
from minidl.functions import avg_pool2d, local_response_norm, max_pool2d, pool
from reference import as_chwn, conv_loops, lrn_loops, on_path, pool_loops


def distinct(shape, seed=0):
    """Values without ties (a scaled permutation), so max-pooling is differentiable."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape) / np.prod(shape) - 0.5


# --- the switch and the Plan ------------------------------------------------------
def test_the_switch_is_on_by_default_and_a_context_restores_it():
    assert minidl.cpu.enabled() and minidl.cpu.current_plan() == Plan()
    custom = Plan(chunk_columns=64)
    with use_fast_path(False):
        assert not minidl.cpu.enabled()
        with use_fast_path(plan=custom):
            assert minidl.cpu.enabled() and minidl.cpu.current_plan() is custom
        assert not minidl.cpu.enabled() and minidl.cpu.current_plan() == Plan()
    assert minidl.cpu.enabled()


def test_the_plain_path_runs_when_the_switch_is_off(rng):
    f = F.conv.Convolution(1, 1, 1)
    with use_fast_path(False):
        f(md.Tensor(rng.standard_normal((2, 3, 5, 5))), md.Tensor(rng.standard_normal((4, 3, 3, 3))))
    assert f.fast is None
    f = F.conv.Convolution(1, 1, 1)
    f(md.Tensor(rng.standard_normal((2, 3, 5, 5))), md.Tensor(rng.standard_normal((4, 3, 3, 3))))
    assert f.fast is not None


def test_bad_plans_and_switch_values_say_what_was_expected(monkeypatch):
    with pytest.raises(ValueError, match="conv_schedule 'auto', 'direct', 'positions' or 'chunks'"):
        Plan(conv_schedule="fast")
    with pytest.raises(ValueError, match="chunk_bytes a positive int, found 0"):
        Plan(chunk_bytes=0)
    with pytest.raises(ValueError, match="threads a positive int or None"):
        Plan(threads=0)
    with pytest.raises(ValueError, match="expected plan a minidl.cpu.Plan, found dict"):
        use_fast_path(plan={"threads": 2})
    with pytest.raises(ValueError, match="expected enabled True or False"):
        use_fast_path("no")
    import subprocess
    import sys
    env = {"MINIDL_CPU_FAST": "maybe", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", "import minidl"], env=env, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "MINIDL_CPU_FAST: expected 0" in out.stderr
    out = subprocess.run([sys.executable, "-c", "import minidl; print(minidl.cpu.enabled())"],
                         env={**env, "MINIDL_CPU_FAST": "0"}, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


# --- every op: the fast path against the plain path, NCHW and CHWN inputs ---------
def _small_net(x, W1, b1, W2, W3, b3):
    """conv -> relu -> lrn -> max-pool -> grouped conv -> tanh -> avg-pool -> linear."""
    h = F.local_response_norm(F.relu(F.conv2d(x, W1, b1, pad=2)), 5, 1.0, 1.0, 0.75)
    h = F.max_pool2d(h, 3, 2, ceil_mode=True)
    h = F.avg_pool2d(F.tanh(F.conv2d(h, W2, None, pad=1, groups=2)), 3, 2, ceil_mode=True)
    return F.linear(F.flatten(h), W3, b3)


@pytest.mark.parametrize("layout", ["nchw", "chwn"])
@pytest.mark.parametrize("fast", ["fast", "direct", "positions", "chunks"])
def test_a_small_net_is_the_same_on_both_paths(rng, layout, fast):
    inputs = [rng.standard_normal((11, 3, 12, 12)), rng.standard_normal((6, 3, 5, 5)) * 0.3,
              rng.standard_normal(6), rng.standard_normal((4, 3, 3, 3)) * 0.3,
              rng.standard_normal((5, 4 * 3 * 3)), rng.standard_normal(5)]
    if layout == "chwn":
        inputs[0] = as_chwn(inputs[0])
    out = {}
    for name in ("plain", fast):
        with on_path(name):
            ts = [md.Tensor(a, requires_grad=True) for a in inputs]
            y = _small_net(*ts)
            y.backward(np.cos(np.arange(y.size)).reshape(y.shape))
        out[name] = [y.data] + [t.grad for t in ts]
    for a, b in zip(out["plain"], out[fast]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", ["plain", "fast"])
def test_conv_on_chwn_input_matches_the_loops(rng, path):
    x, W, b = rng.standard_normal((9, 4, 7, 6)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    with on_path(path):
        y = F.conv2d(md.Tensor(as_chwn(x)), md.Tensor(W), md.Tensor(b), pad=1, groups=2)
    np.testing.assert_allclose(y.data, conv_loops(x, W, b, 1, 1, 2), rtol=1e-10, atol=1e-10)


def test_lrn_chunks_of_images_give_the_same_result():
    """Images go through in cache-sized chunks; a last, shorter chunk too: the
    very same numbers (each image's arithmetic does not depend on its chunk)."""
    a = np.random.default_rng(5).standard_normal((5, 7, 3, 3))
    g = np.random.default_rng(6).standard_normal(a.shape)
    loud = dict(k=1.0, alpha=1.0, beta=0.75)
    results = []
    for chunk_bytes in (1 << 30, 2 * 7 * 3 * 3 * 8):    # everything at once; 2 images a chunk
        with use_fast_path(plan=Plan(lrn_chunk_bytes=chunk_bytes)):
            t = md.Tensor(a, requires_grad=True)
            y = local_response_norm(t, n=5, **loud)
            y.backward(g)
        results.append((y.data, t.grad))
    for x1, x2 in zip(*results):
        np.testing.assert_array_equal(x1, x2)
    np.testing.assert_allclose(results[1][0], lrn_loops(a, 5, **loud), rtol=1e-12)


@pytest.mark.parametrize("op", [max_pool2d, avg_pool2d])
@pytest.mark.parametrize("layout", [as_chwn, np.ascontiguousarray])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooling_fast_path_matches_the_plain_path(op, layout, dtype):
    """The CIFAR net's pool1 shape (32 -> 16, clipped), a batch of 9 in both
    layouts: the compiled loops and the plain slicing give the same y, and the
    same dx up to the order of additions."""
    x = layout(np.random.default_rng(8).standard_normal((9, 4, 32, 32)).astype(dtype))
    g = layout(np.random.default_rng(9).standard_normal((9, 4, 16, 16)).astype(dtype))
    results = []
    for name in ("plain", "fast"):
        with on_path(name):
            t = md.Tensor(x, requires_grad=True)
            y = op(t, 3, 2, ceil_mode=True)
            y.backward(g)
        assert y.dtype == t.grad.dtype == dtype
        results.append((y.data, t.grad))
    assert is_chwn(results[1][0]) == (layout is as_chwn)      # y keeps x's layout
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1],
                               rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)


@pytest.mark.parametrize("missing", ["numba not installed", "numba broken", "numba too old"])
def test_without_numba_pooling_runs_the_plain_path(missing):
    errors = {"numba not installed": ModuleNotFoundError("No module named 'numba'", name="numba"),
              "numba broken": RuntimeError("cannot cache function: no locator available"),
              "numba too old": ImportError("Numba needs NumPy 2.5 or less. Got NumPy 2.6.")}

    def failing_import(name):
        raise errors[missing]
    if missing == "numba not installed":                   # silently: the plain path then
        assert cpu_pool.load_compiled_kernels(failing_import) is None
    else:                                                  # installed but unusable: say so
        with pytest.warns(RuntimeWarning, match="compiled loops are unavailable.*MINIDL_NUMBA=0"):
            assert cpu_pool.load_compiled_kernels(failing_import) is None
    with use_fast_path(plan=Plan(compiled_pooling=False)):  # what a run without them does
        x = distinct((1, 2, 7, 7))
        f = pool.MaxPool2d(3, 2)
        y = f(md.Tensor(x)).data
    assert f.fast is None
    np.testing.assert_array_equal(y, pool_loops(x, 3, 2, False, np.max))


@pytest.mark.parametrize("layout", ["nchw", "chwn"])
@pytest.mark.parametrize("op", [F.relu, F.tanh])
def test_threaded_activations_give_the_plain_paths_bits(rng, layout, op):
    """Split over threads in ranges of memory: each element computed by the same
    arithmetic as on the plain path, so the very same numbers, in x's layout."""
    x = rng.standard_normal((16, 8, 24, 24))        # above the grain: split
    g = rng.standard_normal(x.shape)
    if layout == "chwn":
        x, g = as_chwn(x), as_chwn(g)
    out = {}
    with minidl.cpu.use_fast_path(plan=Plan(threads=3)):
        for name in ("plain", "fast"):
            with on_path(name):
                t = md.Tensor(x, requires_grad=True)
                y = op(t)
                y.backward(g)
            out[name] = (y.data, t.grad)
    assert is_chwn(out["fast"][0]) == (layout == "chwn")
    for a, b in zip(out["plain"], out["fast"]):
        np.testing.assert_array_equal(b, a)


def test_threaded_linear_matches_the_plain_product(rng):
    x, W, b = rng.standard_normal((64, 512)), rng.standard_normal((300, 512)), rng.standard_normal(300)
    g = rng.standard_normal((64, 300))
    out = {}
    for name in ("plain", "fast"):
        with on_path(name), minidl.cpu.use_fast_path(name == "fast", Plan(threads=3)):
            ts = [md.Tensor(a, requires_grad=True) for a in (x, W, b)]
            y = F.linear(*ts)
            y.backward(g)
        out[name] = [y.data] + [t.grad for t in ts]
    for a, c in zip(out["plain"], out["fast"]):          # BLAS sums: their order may differ
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)

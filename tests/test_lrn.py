"""Local response normalization (Section 3.3) against the paper's formula, literally,
on both paths (the plain one, and the CPU fast path)."""
from pathlib import Path

import numpy as np
import pytest

import minidl as md
from minidl.functions import local_response_norm
from minidl.functions.lrn import LocalResponseNorm
from reference import lrn_loops, on_path


@pytest.fixture(autouse=True, params=["plain", "fast"])
def path(request):
    with on_path(request.param):
        yield request.param


PAPER = dict(k=2.0, alpha=1e-4, beta=0.75)
LOUD = dict(k=1.0, alpha=1.0, beta=0.75)   # every neighbour matters: window mistakes show


@pytest.mark.parametrize("params", [PAPER, LOUD, dict(k=1.5, alpha=0.3, beta=0.6)],
                         ids=["paper", "alpha1k1", "other-beta"])
@pytest.mark.parametrize("C,n", [(3, 5), (7, 5), (7, 3), (96, 5), (13, 7), (4, 1), (2, 9)])
def test_forward_matches_the_formula(C, n, params):
    rng = np.random.default_rng(C * 10 + n)
    a = rng.standard_normal((2, C, 3, 4)) * (10 if params is PAPER else 1)
    b = local_response_norm(md.Tensor(a), n=n, **params).data
    np.testing.assert_allclose(b, lrn_loops(a, n, **params), rtol=1e-12, atol=1e-14)


def test_a_wrong_window_would_fail():
    """The alpha=1, k=1 check is sharp: a window one channel too wide differs clearly."""
    a = np.random.default_rng(0).standard_normal((1, 7, 2, 2))
    ours = local_response_norm(md.Tensor(a), n=5, **LOUD).data
    assert np.abs(ours - lrn_loops(a, 7, **LOUD)).max() > 1e-2


def test_matches_torch_with_alpha_scaled_by_n():
    """torch.nn.functional.local_response_norm divides alpha by the window: ours with
    alpha is torch's with alpha * n. torch's outputs are stored in tests/data (made by
    tests/data/make_references.py), so this runs without torch."""
    ref = np.load(Path(__file__).parent / "data" / "lrn_torch.npz")
    a, cases = ref["input"], ref["cases"]
    assert len(cases) == 3
    for i, (n, k, torch_alpha) in enumerate(cases):
        ours = local_response_norm(md.Tensor(a), n=int(n), k=k, alpha=torch_alpha / n,
                                   beta=0.75).data
        np.testing.assert_allclose(ours, ref[f"output{i}"], rtol=1e-10, atol=1e-12)
    # the check is sharp: torch's alpha taken as ours (not divided by n) differs clearly
    n, k, torch_alpha = cases[1]
    wrong = local_response_norm(md.Tensor(a), n=int(n), k=k, alpha=torch_alpha, beta=0.75).data
    assert np.abs(wrong - ref["output1"]).max() > 1e-2


@pytest.mark.parametrize("shape,n,params", [
    ((2, 3, 2, 3), 5, LOUD),       # fewer channels than the window
    ((1, 7, 3, 2), 5, LOUD),       # C not a multiple of n
    ((1, 7, 2, 2), 3, PAPER),
    ((2, 6, 1, 3), 5, dict(k=1.0, alpha=0.5, beta=0.6)),   # general power path
    ((1, 4, 2, 2), 1, dict(k=1.0, alpha=1.0, beta=0.5)),   # n = 1, the sqrt path
])
def test_gradcheck(shape, n, params):
    a = np.random.default_rng(2).standard_normal(shape)
    assert md.gradcheck(lambda t: local_response_norm(t, n=n, **params), a, tol=1e-6) < 1e-6


def test_float32_close_to_float64():
    a = np.abs(np.random.default_rng(3).standard_normal((2, 10, 5, 5))) * 5
    g = np.random.default_rng(4).standard_normal(a.shape)
    results = []
    for dtype in (np.float32, np.float64):
        t = md.Tensor(a.astype(dtype), requires_grad=True)
        y = local_response_norm(t, n=5, **LOUD)
        y.backward(g.astype(dtype))
        assert y.dtype == dtype and t.grad.dtype == dtype
        results.append((y.data, t.grad))
    for x32, x64 in zip(*results):
        np.testing.assert_allclose(x32, x64, rtol=1e-4, atol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match=r"local_response_norm.*odd.*n=4"):
        local_response_norm(md.Tensor(np.zeros((1, 8, 2, 2))), n=4)
    with pytest.raises(ValueError, match=r"local_response_norm.*\(N, C, H, W\).*\(8, 2, 2\)"):
        local_response_norm(md.Tensor(np.zeros((8, 2, 2))))
    with pytest.raises(ValueError, match=r"local_response_norm.*floating.*int32.*astype"):
        local_response_norm(md.Tensor(np.zeros((1, 8, 2, 2), np.int32)))
    with pytest.raises(ValueError, match=r"local_response_norm.*k > 0.*k=0"):
        local_response_norm(md.Tensor(np.zeros((1, 8, 2, 2))), k=0)
    with pytest.raises(ValueError, match=r"local_response_norm.*alpha >= 0"):
        local_response_norm(md.Tensor(np.zeros((1, 8, 2, 2))), alpha=-1.0)


def test_backward_keeps_nothing_without_grad():
    fn = LocalResponseNorm()
    fn(md.Tensor(np.ones((1, 6, 2, 2))))
    assert not hasattr(fn, "s")


@pytest.mark.parametrize("g_layout", ["chwn", "nchw"])
@pytest.mark.parametrize("chunk_bytes", [1 << 30, 7 * 5 * 4 * 8])   # whole; one row a chunk
def test_chwn_input_goes_by_rows_and_keeps_its_layout(path, chunk_bytes, g_layout):
    """A CHWN input (a compiled convolution's output): the same numbers as the
    formula and the plain path's gradient, in chunks of image rows; b and da CHWN."""
    from minidl.cpu import Plan, use_fast_path
    from minidl.cpu.layout import is_chwn
    from reference import as_chwn
    rng = np.random.default_rng(3)
    a, g = rng.standard_normal((5, 7, 3, 4)), rng.standard_normal((5, 7, 3, 4))
    with on_path("plain"):
        t = md.Tensor(a, requires_grad=True)
        local_response_norm(t, n=5, **LOUD).backward(g)
        da_plain = t.grad
    with use_fast_path(path == "fast", Plan(lrn_chunk_bytes=chunk_bytes)):
        t = md.Tensor(as_chwn(a), requires_grad=True)
        b = local_response_norm(t, n=5, **LOUD)
        b.backward(as_chwn(g) if g_layout == "chwn" else g)
    np.testing.assert_allclose(b.data, lrn_loops(a, 5, **LOUD), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(t.grad, da_plain, rtol=1e-12, atol=1e-14)
    if path == "fast":
        assert is_chwn(b.data) and is_chwn(t.grad)

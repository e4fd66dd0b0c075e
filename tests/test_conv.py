"""conv2d, im2col, col2im: every path against the loop definitions of reference.py."""
import numpy as np
import pytest

import minidl as md
from minidl.cpu import Plan, use_fast_path
from minidl.cpu import conv as cpu_conv
from minidl.functions import col2im, conv2d, im2col
from minidl.functions import conv as conv_module
from reference import as_chwn, conv_loops, im2col_loops, on_path


# (N, C, H, W, C_out, KH, KW, stride, pad, groups): awkward on purpose
SHAPES = [
    (1, 3, 7, 7, 5, 3, 3, 1, 0, 1),     # batch 1
    (2, 2, 5, 8, 3, 3, 2, 1, 1, 1),     # non-square image and kernel, padding
    (2, 3, 9, 7, 4, 3, 3, 2, 1, 1),     # stride 2, padding
    (3, 4, 6, 5, 6, 3, 3, 1, 1, 2),     # groups=2
    (2, 6, 5, 5, 9, 2, 2, 1, 0, 3),     # groups=3, C_out=9
    (2, 3, 4, 5, 7, 1, 1, 1, 0, 1),     # 1x1 kernel, C_out=7
    (1, 4, 11, 11, 6, 5, 5, 3, 2, 2),   # big kernel, stride 3, groups 2, leftover rows
    (2, 3, 6, 6, 5, 6, 6, 1, 0, 1),     # kernel == image: OH = OW = 1
]


def _ids(shapes):
    return ["N{}C{}H{}W{}O{}k{}x{}s{}p{}g{}".format(*s) for s in shapes]


def _random(shape_row, seed=0, bias=True):
    N, C, H, Wd, C_out, KH, KW, s, p, G = shape_row
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, Wd))
    W = rng.standard_normal((C_out, C // G, KH, KW))
    b = rng.standard_normal(C_out) if bias else None
    return x, W, b


@pytest.fixture(params=["plain", "direct", "positions", "chunks"])
def schedule(request):
    """Every path of conv2d: the plain im2col -> matmul -> col2im, and the
    schedules of the CPU fast path (minidl/cpu/conv.py): the compiled loops
    of conv_kernels.py for every part they can run (forced here for every
    layer, whatever its shape), blocks of output positions over the whole
    batch (stride 1), or chunks of images (forced here for every layer;
    strided layers always take it)."""
    with on_path(request.param):
        yield request.param


# ----------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=_ids(SHAPES))
def test_forward_matches_loops(shape, schedule):
    x, W, b = _random(shape)
    s, p, G = shape[7:]
    y = conv2d(md.Tensor(x), md.Tensor(W), md.Tensor(b), stride=s, pad=p, groups=G)
    ref = conv_loops(x, W, b, s, p, G)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.data, ref, rtol=1e-10, atol=1e-10)
    y0 = conv2d(md.Tensor(x), md.Tensor(W), stride=s, pad=p, groups=G)  # no bias
    np.testing.assert_allclose(y0.data, conv_loops(x, W, None, s, p, G), rtol=1e-10, atol=1e-10)


def test_forward_in_several_chunks():
    """A chunk smaller than the batch (and not dividing it) changes nothing."""
    shape = (5, 4, 6, 7, 6, 3, 3, 1, 1, 2)
    x, W, b = _random(shape, seed=3)
    ref = conv_loops(x, W, b, 1, 1, 2)
    one = Plan(conv_schedule="chunks", chunk_columns=1, chunk_bytes=1)    # one image per chunk
    with use_fast_path(plan=one):
        y1 = conv2d(md.Tensor(x), md.Tensor(W), md.Tensor(b), pad=1, groups=2)
    two = Plan(conv_schedule="chunks", chunk_columns=1, chunk_bytes=2 * 36 * 42 * 8)  # the last alone
    with use_fast_path(plan=two):
        y2 = conv2d(md.Tensor(x), md.Tensor(W), md.Tensor(b), pad=1, groups=2)
    np.testing.assert_allclose(y1.data, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y2.data, ref, rtol=1e-10, atol=1e-10)


def test_two_threads_running_convolutions_do_not_share_scratch():
    from concurrent.futures import ThreadPoolExecutor
    cases = [_random((2, 3, 9, 9, 4, 3, 3, 1, 1, 1), seed=s) for s in (14, 15)]
    expected = [conv_loops(x, W, b, 1, 1) for x, W, b in cases]

    def run(k):
        x, W, b = cases[k]
        return [conv2d(md.Tensor(x), md.Tensor(W), md.Tensor(b), pad=1).data for _ in range(20)]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, [0, 1]))
    for ys, ref in zip(results, expected):
        for y in ys:
            np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


def test_float32_matches_float64():
    shape = (2, 6, 9, 8, 10, 3, 3, 2, 1, 2)
    x, W, b = _random(shape, seed=1)
    y64 = conv2d(md.Tensor(x), md.Tensor(W), md.Tensor(b), stride=2, pad=1, groups=2)
    t32 = [md.Tensor(a.astype(np.float32), requires_grad=True) for a in (x, W, b)]
    y32 = conv2d(*t32, stride=2, pad=1, groups=2)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.data, y64.data, rtol=1e-4, atol=1e-4)
    g = np.random.default_rng(2).standard_normal(y32.shape)
    t64 = [md.Tensor(a, requires_grad=True) for a in (x, W, b)]
    conv2d(*t64, stride=2, pad=1, groups=2).backward(g)
    y32.backward(g.astype(np.float32))
    for a32, a64 in zip(t32, t64):
        assert a32.grad.dtype == np.float32
        np.testing.assert_allclose(a32.grad, a64.grad, rtol=1e-4, atol=1e-3)


def test_workspaces_do_not_leak_between_calls():
    """Two calls with the same shapes return distinct arrays with their own values."""
    shape = (2, 3, 6, 6, 4, 3, 3, 1, 1, 1)
    x1, W, b = _random(shape, seed=4)
    x2 = x1 + 1.0
    y1 = conv2d(md.Tensor(x1), md.Tensor(W), md.Tensor(b), pad=1)
    y2 = conv2d(md.Tensor(x2), md.Tensor(W), md.Tensor(b), pad=1)
    np.testing.assert_allclose(y1.data, conv_loops(x1, W, b, 1, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y2.data, conv_loops(x2, W, b, 1, 1), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=_ids(SHAPES))
def test_im2col_matches_loops(shape):
    x, W, _ = _random(shape)
    KH, KW, s, p = W.shape[2], W.shape[3], shape[7], shape[8]
    np.testing.assert_array_equal(im2col(x, KH, KW, s, p), im2col_loops(x, KH, KW, s, p))


@pytest.mark.parametrize("shape", SHAPES, ids=_ids(SHAPES))
def test_col2im_is_the_adjoint_of_im2col(shape):
    x, W, _ = _random(shape)
    KH, KW, s, p = W.shape[2], W.shape[3], shape[7], shape[8]
    cols = im2col(x, KH, KW, s, p)
    c = np.random.default_rng(5).standard_normal(cols.shape)
    back = col2im(c, x.shape, KH, KW, s, p)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-12)
    # and not trivially: col2im of all ones counts how many windows read each pixel
    counts = col2im(np.ones_like(cols), x.shape, KH, KW, s, p)
    assert counts.max() > 1 or (KH == KW == 1) or cols.shape[1] == x.shape[0]


# ----------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------
GRAD_SHAPES = [
    (1, 2, 5, 4, 3, 3, 3, 1, 1, 1),     # batch 1, non-square, padding
    (2, 2, 7, 5, 3, 3, 2, 2, 1, 1),     # stride 2, non-square kernel
    (2, 4, 5, 5, 6, 3, 3, 1, 1, 2),     # groups=2
    (2, 3, 4, 3, 5, 1, 1, 1, 0, 1),     # 1x1
    (1, 4, 7, 7, 2, 4, 4, 3, 2, 2),     # stride 3, pad 2, leftover rows
]


@pytest.mark.parametrize("shape", GRAD_SHAPES, ids=_ids(GRAD_SHAPES))
def test_gradcheck(shape, schedule):
    x, W, b = _random(shape, seed=7)
    s, p, G = shape[7:]
    err = md.gradcheck(lambda x, W, b: conv2d(x, W, b, stride=s, pad=p, groups=G), x, W, b,
                       tol=1e-6)
    assert err < 1e-6
    err = md.gradcheck(lambda x, W: conv2d(x, W, stride=s, pad=p, groups=G), x, W, tol=1e-6)
    assert err < 1e-6


@pytest.mark.parametrize("shape", [(2, 4, 6, 5, 6, 3, 3, 2, 1, 2),    # stride 2: chunks
                                   (3, 4, 6, 5, 6, 3, 3, 1, 1, 2),    # stride 1: either schedule
                                   (3, 4, 6, 5, 6, 3, 3, 1, 1, 1)],   # one group: db by the GEMM
                         ids=["stride2", "stride1", "stride1-one-group"])
def test_dW_db_match_the_loop_reference(shape, schedule):
    """<conv(x, W), g> is linear in W, so dW[i] = <conv(x, E_i), g> exactly, with
    E_i the one-hot kernel: dW from the loop reference alone, no differences."""
    s, p, G = shape[7:]
    x, W, b = _random(shape, seed=8)
    g = np.random.default_rng(9).standard_normal(conv_loops(x, W, b, s, p, G).shape)
    t = [md.Tensor(a, requires_grad=True) for a in (x, W, b)]
    conv2d(*t, stride=s, pad=p, groups=G).backward(g)
    dW = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = 1
        dW[idx] = np.sum(conv_loops(x, E, None, s, p, G) * g)
    np.testing.assert_allclose(t[1].grad, dW, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(t[2].grad, g.sum(axis=(0, 2, 3)), rtol=1e-10, atol=1e-10)


def test_no_grad_for_the_image(schedule):
    """conv1 never needs the image's gradient: x gets none, W and b do."""
    x, W, b = _random((2, 3, 6, 6, 4, 3, 3, 1, 1, 1), seed=10)
    tx = md.Tensor(x)
    tW, tb = md.Tensor(W, requires_grad=True), md.Tensor(b, requires_grad=True)
    y = conv2d(tx, tW, tb, pad=1)
    y.backward(np.ones(y.shape))
    assert tx.grad is None
    assert tW.grad is not None and tW.grad.shape == W.shape
    assert tb.grad is not None and np.allclose(tb.grad, np.prod(y.shape) / y.shape[1])


def test_backward_skips_the_work_nobody_asked_for(schedule):
    x, W, b = _random((2, 3, 6, 6, 4, 3, 3, 1, 1, 1), seed=11)
    f = conv_module.Convolution(1, 1, 1)
    tx, tW, tb = md.Tensor(x), md.Tensor(W, requires_grad=True), md.Tensor(b)
    y = f(tx, tW, tb)
    assert f.needs_input_grad == (False, True, False)
    dx, dW, db = f.backward(np.ones(y.shape))
    assert dx is None and db is None and dW.shape == W.shape
    f = conv_module.Convolution(1, 1, 1)
    y = f(md.Tensor(x, requires_grad=True), md.Tensor(W), md.Tensor(b))
    dx, dW, db = f.backward(np.ones(y.shape))
    assert dW is None and db is None and dx.shape == x.shape


def test_db_alone(schedule):
    """A bias that needs a gradient beside a W that does not: db summed from dy
    (with dW wanted too, schedule 1 takes it from dW's GEMM instead)."""
    x, W, b = _random((3, 4, 6, 5, 6, 3, 3, 1, 1, 1), seed=14)
    tb = md.Tensor(b, requires_grad=True)
    y = conv2d(md.Tensor(x), md.Tensor(W), tb, pad=1)
    g = np.random.default_rng(15).standard_normal(y.shape)
    y.backward(g)
    np.testing.assert_allclose(tb.grad, g.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_padded_input_kept_for_dW_gives_the_recomputed_result():
    """The positions schedule keeps forward's padded x for dW's columns (and
    drops it in backward); a second backward pads x again: the same dW, to the
    bit (the same code on the same values)."""
    x, W, b = _random((5, 4, 7, 6, 6, 3, 3, 1, 1, 1), seed=12)
    with on_path("positions"):
        f = conv_module.Convolution(1, 1, 1)
        y = f(md.Tensor(x), md.Tensor(W, requires_grad=True), md.Tensor(b, requires_grad=True))
        assert f.fast.xt.shape == (4, 9, 8, 5)                  # (C, H + 2p, W + 2p, N)
        g = np.random.default_rng(13).standard_normal(y.shape)
        _, dW_kept, db = f.backward(g)
        assert not hasattr(f.fast, "xt")
        _, dW_again, _ = f.backward(g)
        np.testing.assert_array_equal(dW_kept, dW_again)
        f = conv_module.Convolution(1, 1, 1)                    # no dW wanted: nothing kept
        f(md.Tensor(x, requires_grad=True), md.Tensor(W), md.Tensor(b))
        assert not hasattr(f.fast, "xt")


# ----------------------------------------------------------------------------
# The compiled loops (minidl/cpu/conv_kernels.py)
# ----------------------------------------------------------------------------
def _geometry(N, C, H, C_out, K, stride, pad, groups=1):
    return cpu_conv.Geometry(N, C, H, H, C_out, K, K, stride, pad, groups)


NARROW_BLAS, WIDE_BLAS = (512, 256), (512, 512)      # (the loops', the BLAS's vector bits)


@pytest.mark.parametrize("widths", [NARROW_BLAS, WIDE_BLAS], ids=["avx2-blas", "avx512-blas"])
def test_the_plan_picks_the_compiled_parts_by_shape(widths):
    """auto: forward and dx where the array they read has enough channels, dW for
    stride 1; beside a BLAS as wide as the loops, only layers with few channels
    on one side. direct: every part the loops can run; the BLAS schedules: none."""
    D, f32 = cpu_conv.Direct, np.float32
    cifar1, cifar2 = _geometry(128, 3, 32, 32, 5, 1, 2), _geometry(128, 32, 16, 32, 5, 1, 2)
    alex1, alex2 = _geometry(128, 3, 227, 96, 11, 4, 0), _geometry(128, 96, 27, 256, 5, 1, 2, 2)
    alex3 = _geometry(128, 256, 13, 384, 3, 1, 1)
    auto, direct = Plan(), Plan(conv_schedule="direct")

    def parts(g, plan=auto, dtype=f32):
        return cpu_conv.direct_parts(g, plan, dtype, widths)
    assert parts(cifar1) == D(False, True, True)         # 3 channels read: forward by the BLAS
    assert parts(cifar2) == D(True, True, True)
    assert parts(alex1) == D(False, False, False)        # 3 channels, stride 4
    assert parts(alex2) == D(True, True, True)           # 48 channels a group on one side
    assert parts(alex3) == (D(True, True, True) if widths == NARROW_BLAS else D())
    assert parts(cifar1, direct) == D(True, True, True)
    assert parts(alex1, direct) == D(True, False, False)
    assert parts(alex3, direct) == D(True, True, True)
    for plan in (Plan(conv_schedule="positions"), Plan(conv_schedule="chunks"),
                 Plan(compiled_conv=False)):
        assert parts(cifar2, plan) == D()
    assert parts(cifar2, auto, np.float16) == D()
    big_pad = _geometry(4, 8, 6, 8, 3, 1, 3)                # pad >= KH: dx not a convolution
    assert parts(big_pad, direct) == D(True, True, False)
    few = _geometry(4, 6, 9, 40, 7, 1, 3)                   # 6 channels a group, K = 294
    assert parts(few) == D(False, True, True)
    assert parts(few, Plan(direct_min_channels=6)) == D(True, True, True)


def test_the_vector_widths_name_the_blas_kernels(monkeypatch):
    import threadpoolctl
    for architecture, bits in (("Haswell", 256), ("SkylakeX", 512), ("Zen", 256)):
        monkeypatch.setattr(cpu_conv, "_widths", None)
        monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda a=architecture: [
            {"internal_api": "openblas", "architecture": a}])
        assert cpu_conv.vector_widths()[1] == bits
    monkeypatch.setattr(cpu_conv, "_widths", None)


def test_a_layer_runs_the_parts_its_plan_names(rng):
    x, W = rng.standard_normal((3, 32, 8, 8)), rng.standard_normal((16, 32, 5, 5))
    with use_fast_path(plan=Plan()):
        f = conv_module.Convolution(1, 2, 1)
        f(md.Tensor(x, requires_grad=True), md.Tensor(W, requires_grad=True))
    assert f.fast.direct == cpu_conv.Direct(True, True, True)
    with use_fast_path(plan=Plan(compiled_conv=False)):
        f = conv_module.Convolution(1, 2, 1)
        f(md.Tensor(x, requires_grad=True), md.Tensor(W, requires_grad=True))
    assert f.fast.direct == cpu_conv.Direct()


@pytest.mark.parametrize("layout", ["nchw", "chwn"])
@pytest.mark.parametrize("shape", [
    (6, 32, 16, 16, 32, 5, 5, 1, 2, 1),     # the CIFAR net's conv2
    (5, 32, 8, 8, 64, 5, 5, 1, 2, 1),       # its conv3
    (1, 3, 9, 7, 6, 5, 5, 1, 2, 1),         # batch 1; channels, widths not multiples of 4
    (3, 10, 9, 11, 14, 3, 3, 1, 1, 2),      # groups 2, 5 channels / 7 outputs a group
    (3, 5, 13, 12, 6, 5, 5, 2, 2, 1),       # stride 2: dx by the BLAS
], ids=["cifar2", "cifar3", "batch1", "groups2", "stride2"])
def test_compiled_loops_in_float32_are_within_rounding_of_float64(shape, layout):
    """float32 on the compiled loops against the float64 plain path (which the
    tests above hold to the loop reference): each sum reassociated (vector
    lanes, fastmath) loses no more than float32 rounding of its terms:
    |error| <= 2e-6 * (the largest |value| of that output) (measured: up to
    2.4e-7; the BLAS schedules' float32: up to 5.6e-7)."""
    x, W, b = _random(shape, seed=21)
    s, p, G = shape[7:]
    N, _, H, Wd, C_out, KH, KW = shape[:7]
    g = np.random.default_rng(22).standard_normal(
        (N, C_out, (H + 2 * p - KH) // s + 1, (Wd + 2 * p - KW) // s + 1))
    if layout == "chwn":
        x, g = as_chwn(x), as_chwn(g)
    results = {}
    for name, dtype in (("plain", np.float64), ("direct", np.float32)):
        with on_path(name):
            t = [md.Tensor(a.astype(dtype), requires_grad=True) for a in (x, W, b)]
            y = conv2d(*t, stride=s, pad=p, groups=G)
            y.backward(g.astype(dtype))
        assert y.dtype == dtype
        results[name] = [y.data] + [a.grad for a in t]
    for ref, got in zip(results["plain"], results["direct"]):
        assert np.abs(got - ref).max() <= 2e-6 * np.abs(ref).max()


@pytest.mark.parametrize("layout", ["nchw", "chwn"])
def test_the_nhwc_copy_pads_with_zeros(rng, layout):
    from minidl.cpu import conv_kernels
    x = rng.standard_normal((19, 21, 4, 6))          # tiles of 16 and a remainder
    x4 = np.ascontiguousarray(x.transpose(1, 2, 3, 0) if layout == "chwn" else x)
    out = np.full((19, 4 + 2, 6 + 4, 21), np.nan)
    conv_kernels.pad_to_nhwc(x4, layout == "chwn", out, 1, 2, 0, 3)   # rows 0..2 here,
    conv_kernels.pad_to_nhwc(x4, layout == "chwn", out, 1, 2, 3, 6)   # the rest there
    np.testing.assert_array_equal(out, np.pad(x.transpose(0, 2, 3, 1),
                                              ((0, 0), (1, 1), (2, 2), (0, 0))))


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------
def _err(x, W, b=None, **kw):
    args = [md.Tensor(x), md.Tensor(W)] + ([md.Tensor(b)] if b is not None else [])
    with pytest.raises(ValueError) as e:
        conv2d(*args, **kw)
    msg = str(e.value)
    assert msg.startswith("conv2d:") and "expected" in msg and "found" in msg, msg
    return msg


def test_error_wrong_rank():
    msg = _err(np.zeros((3, 8, 8)), np.zeros((4, 3, 3, 3)))
    assert "rank 4" in msg and "(3, 8, 8)" in msg
    msg = _err(np.zeros((1, 3, 8, 8)), np.zeros((4, 27)))
    assert "W of rank 4" in msg and "(4, 27)" in msg


def test_error_channel_mismatch():
    msg = _err(np.zeros((1, 3, 8, 8)), np.zeros((4, 2, 3, 3)))
    assert "W.shape[1]=2" in msg and "C=3" in msg
    msg = _err(np.zeros((1, 4, 8, 8)), np.zeros((4, 4, 3, 3)), groups=2)  # should be 2 per group
    assert "(4, 2, 3, 3)" in msg and "W.shape[1]=4" in msg


def test_error_integer_arrays():
    msg = _err(np.zeros((1, 3, 8, 8), dtype=np.uint8), np.zeros((4, 3, 3, 3)))
    assert "floating-point x" in msg and "uint8" in msg
    msg = _err(np.zeros((1, 3, 8, 8)), np.zeros((4, 3, 3, 3), dtype=np.int64))
    assert "floating-point W" in msg and "int64" in msg


def test_error_mixed_dtypes():
    msg = _err(np.zeros((1, 3, 8, 8), np.float32), np.zeros((4, 3, 3, 3)))
    assert "float32" in msg and "float64" in msg


def test_error_kernel_larger_than_padded_input():
    msg = _err(np.zeros((1, 3, 5, 9)), np.zeros((4, 3, 7, 3)), pad=0)
    assert "7x3" in msg and "5x9" in msg
    _err(np.zeros((1, 3, 5, 5)), np.zeros((4, 3, 8, 8)), pad=1)
    conv2d(md.Tensor(np.zeros((1, 3, 5, 5))), md.Tensor(np.zeros((4, 3, 7, 7))), pad=1)  # fits


def test_error_groups_do_not_divide():
    msg = _err(np.zeros((1, 3, 8, 8)), np.zeros((4, 1, 3, 3)), groups=2)
    assert "C=3" in msg and "groups=2" in msg
    msg = _err(np.zeros((1, 4, 8, 8)), np.zeros((5, 2, 3, 3)), groups=2)
    assert "C_out=5" in msg and "groups=2" in msg


def test_error_bias_shape():
    msg = _err(np.zeros((1, 3, 8, 8)), np.zeros((4, 3, 3, 3)), np.zeros((3,)))
    assert "(4,)" in msg and "(3,)" in msg
    _err(np.zeros((1, 3, 8, 8)), np.zeros((4, 3, 3, 3)), np.zeros((4, 1)))


def test_error_bad_hyperparameters():
    for kw in ({"stride": 0}, {"pad": -1}, {"groups": 0}, {"stride": 1.5}):
        _err(np.zeros((1, 3, 8, 8)), np.zeros((4, 3, 3, 3)), **kw)


def test_empty_batch(schedule):
    x = md.Tensor(np.zeros((0, 3, 8, 8)), requires_grad=True)
    W = md.Tensor(np.ones((4, 3, 3, 3)), requires_grad=True)
    y = conv2d(x, W, pad=1)
    assert y.shape == (0, 4, 8, 8)
    y.backward(np.zeros(y.shape))
    assert x.grad.shape == x.shape and np.array_equal(W.grad, np.zeros(W.shape))


# --- blocks: im2col and the GEMMs a few output positions at a time -----------
BLOCK_CASES = [  # x shape, W shape, stride, pad, groups
    ((9, 4, 11, 7), (4, 4, 3, 3), 1, 1, 1),        # stride 1: blocks of positions
    ((9, 2, 10, 9), (6, 2, 3, 3), 1, 1, 1),        # C_out > C
    ((20, 3, 8, 8), (4, 3, 5, 5), 1, 2, 1),        # 5x5, as the CIFAR net
    ((3, 4, 13, 12), (6, 2, 5, 3), 2, 2, 2),       # stride 2, groups: chunks, by rows
]


@pytest.mark.parametrize("xs, ws, stride, pad, groups", BLOCK_CASES)
@pytest.mark.parametrize("block_bytes", [512, 3000])   # one position / pieces of rows per block
def test_blocks_give_the_values_of_whole_chunks(rng, xs, ws, stride, pad, groups, block_bytes):
    x = rng.standard_normal(xs)
    W = rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    results = {}
    for blocks in (False, True):
        plan = Plan(block_columns=1 if blocks else None, block_bytes=block_bytes)
        with use_fast_path(plan=plan):
            tx, tW, tb = (md.Tensor(a, requires_grad=True) for a in (x, W, b))
            y = conv2d(tx, tW, tb, stride=stride, pad=pad, groups=groups)
            g = np.random.default_rng(5).standard_normal(y.shape)
            y.backward(g)
        results[blocks] = [np.array(y.data), tx.grad, tW.grad, tb.grad]
    for whole, blocked in zip(results[False], results[True]):
        np.testing.assert_allclose(blocked, whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(results[True][0], conv_loops(x, W, b, stride, pad, groups),
                               rtol=1e-10, atol=1e-10)


def test_row_blocks_of_a_chunk():
    one_row = Plan(block_columns=1, block_bytes=512)       # one output row per block
    assert cpu_conv.row_blocks(4, 3, 2, 18, one_row) == [(0, 1, 0, 3), (1, 2, 0, 3),
                                                         (2, 3, 0, 3), (3, 4, 0, 3)]
    assert cpu_conv.row_blocks(4, 3, 2, 18, Plan(block_columns=None)) == [(0, 4, 0, 3)]


@pytest.mark.parametrize("OH, OW, N, K, threads", [
    (16, 16, 128, 800, 2),      # the CIFAR net's conv2: pieces of rows
    (32, 32, 128, 75, 2),       # its conv1: whole rows, at least one block per thread
    (8, 8, 128, 800, 3),
    (5, 7, 1, 10, 4),           # a small batch: several rows per block
    (3, 5, 0, 10, 2),           # an empty batch
    (4, 9, 1000, 800, 1),       # more images than a block's columns: one position
])
def test_position_blocks_cover_every_position_once(OH, OW, N, K, threads):
    plan = Plan()
    blocks = cpu_conv.position_blocks(OH, OW, N, K, plan, threads)
    seen = np.zeros((OH, OW), int)
    per = max(1, plan.block_bytes // (4 * K) // max(1, N))
    for r0, r1, w0, w1 in blocks:
        assert 0 <= r0 < r1 <= OH and 0 <= w0 < w1 <= OW
        assert r1 == r0 + 1 or (w0, w1) == (0, OW)     # whole rows, or part of one row
        assert (r1 - r0) * (w1 - w0) <= per             # columns: at most ~block_bytes
        seen[r0:r1, w0:w1] += 1
    assert (seen == 1).all()
    if per >= OW:
        assert len(blocks) >= min(threads, OH)


def test_gradcheck_with_one_position_per_block(rng):
    x = rng.standard_normal((2, 2, 7, 6))
    W = rng.standard_normal((3, 2, 3, 3))
    with use_fast_path(plan=Plan(block_columns=1, block_bytes=512)):
        for stride in (1, 2):                    # blocks of positions; rows of a chunk
            err = md.gradcheck(lambda a, w: conv2d(a, w, pad=1, stride=stride), x, W)
            assert err < 1e-6

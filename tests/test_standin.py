"""The CuPy stand-in holds arrays to CuPy's rules, and each rule fires.

Runs against whichever CuPy tests/conftest.py chose (MINIDL_TEST_CUPY): on the
stand-in, every rule; on real CuPy with a GPU, the same semantic tests, less the
rules where the stand-in is stricter than CuPy and the counters (skipped with
their reason). tests/standin/README.md lists the rules.
"""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import cupy

STANDIN = getattr(cupy, "__standin__", False)
stricter = pytest.mark.skipif(
    not STANDIN, reason="a rule where the stand-in is stricter than real CuPy, which allows this")


def on(device, make):
    with cupy.cuda.Device(device):
        return make()


def event_on(device):
    """An Event recorded on `device`'s current stream, after the work given to it so far."""
    with cupy.cuda.Device(device):
        ev = cupy.cuda.Event()
        ev.record()
    return ev


@pytest.fixture
def two(cupy_devices):
    return cupy_devices(2)


@pytest.fixture
def no_peer_access(two):
    if cupy.cuda.runtime.deviceCanAccessPeer(0, 1):
        pytest.skip("devices 0 and 1 have peer access here: CuPy runs such a kernel over the link")


# --- (a) no implicit conversion to NumPy ---------------------------------------------------
@pytest.mark.parametrize("convert", [np.asarray, np.array,
                                     lambda a: np.asarray(a, dtype=np.float32)])
def test_implicit_conversion_to_numpy_is_refused(convert):
    a = cupy.arange(3.0)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        convert(a)


@stricter
@pytest.mark.parametrize("numpy_call", [np.exp, np.sum, lambda a: np.add(a, 1),
                                        lambda a: np.concatenate([a])])
def test_numpy_functions_and_ufuncs_refuse_device_arrays(numpy_call):
    with pytest.raises(TypeError, match="cupy.ndarray"):
        numpy_call(cupy.arange(3.0))


def test_a_host_array_in_a_device_op_is_refused():
    a, host = cupy.arange(3.0), np.ones(3)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        a + host
    with pytest.raises(TypeError, match="numpy.ndarray"):
        cupy.matmul(a, host)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        cupy.exp(host)
    with pytest.raises(TypeError):
        cupy.exp(a, out=np.empty(3))


@stricter
def test_a_host_array_on_the_left_assigned_or_as_an_index_is_refused():
    a, host = cupy.arange(3.0), np.ones(3)
    with pytest.raises(TypeError):
        host + a
    with pytest.raises(TypeError, match="numpy.ndarray"):
        a[...] = host
    with pytest.raises(TypeError, match="numpy.ndarray"):
        a[np.array([0, 1])]
    with pytest.raises(TypeError, match="numpy.ndarray"):
        cupy.concatenate([a, host])
    with pytest.raises(TypeError, match="numpy.ndarray"):
        cupy.zeros_like(host)


def test_scalars_are_kernel_arguments_and_the_ways_in_and_out_work():
    a = cupy.asarray(np.arange(3.0))
    b = a * 2 + np.float32(1) - np.int64(1)            # Python and NumPy scalars are allowed
    c = np.float64(2) * a - 1.5 / (a + 1) + 3          # also on the left of an operator
    assert isinstance(b, cupy.ndarray) and isinstance(c, cupy.ndarray) and c.device.id == 0
    np.testing.assert_array_equal(b.get(), [0.0, 2.0, 4.0])
    np.testing.assert_allclose(c.get(), [1.5, 4.25, 6.5])
    np.testing.assert_array_equal(cupy.asnumpy(cupy.array([1, 2])), [1, 2])
    d = cupy.empty(3)
    d.set(np.array([7.0, 8.0, 9.0]))
    assert d.tolist() == [7.0, 8.0, 9.0]


# --- (b) devices ---------------------------------------------------------------------------
def test_new_arrays_go_on_the_current_device(two):
    a0 = cupy.ones(4, dtype=cupy.float32)
    with cupy.cuda.Device(1):
        assert cupy.cuda.Device().id == 1 and cupy.cuda.runtime.getDevice() == 1
        made = [cupy.empty(2), cupy.zeros(2), cupy.ones(2), cupy.full(2, 3.0), cupy.arange(2),
                cupy.empty_like(a0), cupy.zeros_like(a0), cupy.ones_like(a0),
                cupy.asarray(np.ones(2)), cupy.array([1, 2]), cupy.random.rand(2)]
        for a in made:
            assert a.device.id == 1
        b = cupy.ones(2)
        for r in [b + 1, cupy.exp(b), b.sum(), b.astype(cupy.float32), b.copy(),
                  cupy.concatenate([b, b])]:
            assert r.device.id == 1
    assert a0.device.id == 0 and cupy.cuda.Device().id == 0


def test_the_current_device_is_per_thread_and_starts_at_zero(two):
    seen = {}

    def work():
        seen.update(device=cupy.cuda.Device().id, array=cupy.zeros(1).device.id)

    with cupy.cuda.Device(1):
        t = threading.Thread(target=work)
        t.start()
        t.join()
        assert cupy.cuda.Device().id == 1
    assert seen == {"device": 0, "array": 0}


def test_device_contexts_nest_and_use_sets_the_device(two):
    with cupy.cuda.Device(1):
        with cupy.cuda.Device(0):
            assert cupy.cuda.Device().id == 0
        assert cupy.cuda.Device().id == 1
    cupy.cuda.Device(1).use()
    try:
        assert cupy.cuda.runtime.getDevice() == 1
    finally:
        cupy.cuda.Device(0).use()


def test_a_kernel_on_another_device_is_refused(two, no_peer_access):
    a = cupy.arange(6.0).reshape(2, 3)                 # on device 0
    with cupy.cuda.Device(1):
        b = cupy.ones(3)
        kernels = {
            "ufunc": lambda: a + 1, "binary": lambda: b + a, "reduction": lambda: a.sum(axis=0),
            "matmul": lambda: cupy.matmul(a, a.T), "concatenate": lambda: cupy.concatenate([a, a]),
            "fill": lambda: a.fill(2.0), "astype": lambda: a.astype(cupy.float32),
            "setitem": lambda: a.__setitem__(0, 1.0), "gather": lambda: a[:, cupy.arange(2)],
            "argmax": lambda: cupy.argmax(a), "where": lambda: cupy.where(a > 1, a, 0)}
        for name, kernel in kernels.items():
            with pytest.raises(ValueError, match="is different from the current device"):
                kernel()
    assert (a + 1).device.id == 0                      # the same kernels are fine on device 0


def test_views_keep_their_device_and_share_memory(two):
    with cupy.cuda.Device(1):
        a = cupy.zeros((2, 3))
    views = [a[0], a[:, 1:], a.reshape(3, 2), a.T, a.transpose(1, 0), a.ravel(), a[None],
             cupy.lib.stride_tricks.as_strided(a, shape=(2,), strides=(8,))]
    for v in views:                                    # made while device 0 is current
        assert v.device.id == 1
    with cupy.cuda.Device(1):
        a[0, 0] = 5.0
    assert float(on(1, lambda: views[0][0])) == 5.0
    assert float(on(1, lambda: views[2][0, 0])) == 5.0


def test_a_device_that_does_not_exist_is_refused(cupy_devices):
    cupy_devices(1)
    n = cupy.cuda.runtime.getDeviceCount()
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError):
        with cupy.cuda.Device(n):
            pass


def test_zero_devices_look_like_a_machine_without_a_gpu(cupy_devices):
    import minidl
    cupy_devices(0)
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError, match="no CUDA-capable device"):
        cupy.cuda.runtime.getDeviceCount()
    assert not minidl.cupy_available()
    with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
        minidl.Device("cuda:0")


# --- (c) copies between devices, ordered by events -------------------------------------------
def test_a_peer_copy_after_an_event_lands_on_the_current_device(two):
    a = cupy.arange(6.0).reshape(2, 3) * 2             # kernels on device 0
    ev = event_on(0)
    with cupy.cuda.Device(1):
        cupy.cuda.get_current_stream().wait_event(ev)
        copies = [a.copy(), cupy.copy(a)]
        for c in copies:
            assert c.device.id == 1
            np.testing.assert_array_equal(c.get(), np.arange(6.0).reshape(2, 3) * 2)
        copies[0][0, 0] = -1.0                         # a copy, not the same memory
    assert float(a[0, 0]) == 0.0


@stricter
def test_a_peer_copy_not_ordered_after_the_source_work_is_refused(two, cupy_counters):
    a = cupy.arange(4.0) + 1                           # a kernel on device 0 ...
    ev = event_on(0)
    b = a * 3                                          # ... and one after the event
    with cupy.cuda.Device(1):
        cupy.cuda.get_current_stream().wait_event(ev)
        with pytest.raises(RuntimeError, match="not ordered after device 0's work"):
            cupy.copy(b)
        cupy.cuda.get_current_stream().wait_event(event_on(0))
        assert cupy.copy(b).device.id == 1             # ordered now
    c = a * 2
    with cupy.cuda.Device(1):
        with pytest.raises(RuntimeError, match="Event"):
            c.copy()
    cupy.cuda.Device(0).synchronize()                  # the host waited for device 0: ordered too
    with cupy.cuda.Device(1):
        assert c.copy().device.id == 1
    counted = cupy_counters.read()
    assert counted["peer_copy"] == 2 and counted["memcpy"] == 2
    assert counted["syncs_by_kind"] == {"synchronize": 1} and counted["d2h"] == 0


def test_a_raw_peer_copy_between_pointers_is_ordered_too(two):
    a = cupy.arange(4.0) * 2                           # a kernel on device 0
    with cupy.cuda.Device(1):
        b = cupy.zeros(4)
        if STANDIN:
            with pytest.raises(RuntimeError, match="not ordered after device 0's work"):
                b.data.copy_from_device_async(a.data, a.nbytes)
        stream = cupy.cuda.Stream()
        stream.wait_event(event_on(0))
        b.data.copy_from_device_async(a.data, a.nbytes, stream)
        stream.synchronize()
        assert b.tolist() == [0.0, 2.0, 4.0, 6.0]


@stricter
def test_an_event_orders_the_work_of_its_own_stream_only(two):
    side = on(0, lambda: cupy.cuda.Stream(non_blocking=True))
    a = cupy.arange(4.0) + 1                           # on device 0's null stream
    with cupy.cuda.Device(0), side:
        b = a * 2                                      # on device 0's other stream
    with cupy.cuda.Device(1):
        cupy.cuda.get_current_stream().wait_event(event_on(0))   # the null stream's work only
        with pytest.raises(RuntimeError, match="not ordered"):
            b.copy()
        side.synchronize()                             # the host waited for the other stream
        assert b.copy().device.id == 1


@stricter
def test_only_contiguous_arrays_are_copied_between_devices(two):
    a = cupy.arange(6.0).reshape(2, 3)
    cupy.cuda.Device(0).synchronize()
    with cupy.cuda.Device(1):
        with pytest.raises(ValueError, match="non-contiguous"):
            a.T.copy()
        assert a.copy().device.id == 1


def test_asarray_of_a_device_array_moves_nothing(two):
    a = cupy.zeros(3)
    with cupy.cuda.Device(1):
        assert cupy.asarray(a) is a and a.device.id == 0   # even from another device
    assert cupy.asarray(a) is a
    assert cupy.asarray(a, dtype=cupy.float32).device.id == 0


@stricter
def test_array_of_another_devices_array_is_refused(two):
    a = cupy.zeros(3)
    cupy.cuda.Device(0).synchronize()
    with cupy.cuda.Device(1):
        with pytest.raises(ValueError, match="is different from the current device"):
            cupy.array(a)


@stricter
def test_an_event_records_only_a_stream_of_its_own_device(two):
    with cupy.cuda.Device(1):
        stream1 = cupy.cuda.get_current_stream()
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError, match="cannot record a stream of"):
        cupy.cuda.Event().record(stream1)


# --- (d) counters --------------------------------------------------------------------------
def test_counters_count_kernels_memsets_and_transfers(cupy_counters):
    a = cupy.empty(3)
    assert cupy_counters.read()["kernels"] == 0 and cupy_counters["memset"] == 0
    z = cupy.zeros(3)
    assert cupy_counters["memset"] == 1 and cupy_counters["kernels"] == 0
    b = (z + 1) * 2                                    # two kernels
    b.sum()                                            # one more
    a[...] = 0.5                                       # a fill kernel
    assert cupy_counters.kernels() == 4 and cupy_counters.kernels(0) == 4
    cupy.asarray(np.ones(2))
    b.get()
    c = cupy_counters.read()
    assert (c["h2d"], c["d2h"], c["syncs"]) == (1, 1, 1)


def test_each_host_read_is_a_counted_sync_and_len_is_not(cupy_counters):
    a = cupy.arange(4)                                 # int64
    s = a.sum()
    len(a), a.shape, a.ndim, a.dtype, a[1], list(iter(a))
    assert cupy_counters["syncs"] == 0
    a.get(), cupy.asnumpy(a), s.item(), int(s), float(s), bool(s), a.tolist(), range(10)[s]
    repr(a)
    c = cupy_counters.read()
    assert c["syncs_by_kind"] == {"get": 1, "asnumpy": 1, "item": 1, "int": 1, "float": 1,
                                  "bool": 1, "tolist": 1, "index": 1, "repr": 1}
    assert c["syncs"] == c["d2h"] == 9


def test_zero_d_results_are_arrays_and_data_dependent_sizes_are_syncs(cupy_counters):
    s = cupy.arange(5).sum()
    assert isinstance(s, cupy.ndarray) and s.shape == ()   # CuPy: a 0-d array, not a scalar
    x = cupy.arange(4.0)
    x[x > 1.5]                                         # a boolean mask: its size read on the host
    cupy.nonzero(x)
    cupy.where(x > 1)
    assert cupy_counters["syncs_by_kind"] == {"boolean_index": 1, "nonzero": 1, "where": 1}


def test_fuse_counts_one_kernel_per_call(cupy_counters):
    @cupy.fuse
    def update(w, g, lr):
        return w - lr * (g + 0.1 * w)                  # four elementwise ops

    @cupy.fuse(kernel_name="axpy")
    def axpy(a, x, y):
        return a * x + y

    w, g = cupy.ones(3), cupy.ones(3)
    cupy_counters.reset()
    w = update(w, g, 0.5)
    axpy(2.0, w, g)
    assert cupy_counters["kernels"] == 2
    np.testing.assert_allclose(w.get(), 1 - 0.5 * 1.1)
    with cupy_counters.count() as n:
        update(w, g, 0.5)
    assert n["kernels"] == 1


def test_a_host_read_inside_fuse_is_refused(cupy_counters):
    @cupy.fuse
    def bad(x):
        return x * float(x.sum())

    with pytest.raises(TypeError, match="fuse"):
        bad(cupy.ones(2))


@stricter
@pytest.mark.parametrize("body", [lambda x: x @ x, lambda x: x[0] + 1, lambda x: x.reshape(2, 2),
                                  lambda x: cupy.zeros(4) + x, lambda x: cupy.concatenate([x, x])])
def test_fuse_takes_only_elementwise_ops_and_reductions(body):
    x = cupy.arange(4.0)
    assert float(cupy.fuse(lambda x: cupy.sum(x * 2 + 1))(x)) == 16.0
    with pytest.raises(TypeError, match="cupy.fuse"):
        cupy.fuse(body)(x)


def test_setitem_launches_what_cupy_scatter_op_launches(cupy_counters):
    """CuPy's `_scatter_op(..., 'update')`: `x[view] += y` is one kernel (the in-place
    add; writing the view back onto itself is skipped), a same-layout contiguous copy
    a memcpy, a 0 into a contiguous view a memset, a boolean mask a sync."""
    x, y = cupy.zeros((4, 6)), cupy.ones((4, 3))
    steps = [
        (lambda: x.__setitem__((slice(None), slice(0, 3)), x[:, 0:3].__iadd__(y)),
         {"kernels": 1}),
        (lambda: x.__setitem__((slice(None), slice(None, None, 2)), y), {"kernels": 1}),
        (lambda: x.__setitem__(slice(1, 3), cupy.ones((2, 6))), {"kernels": 1, "memcpy": 1}),
        (lambda: x.__setitem__(slice(1, 3), cupy.ones((1, 2, 6))),    # leading 1 dropped
         {"kernels": 1, "memcpy": 1}),
        (lambda: x.__setitem__(slice(1, 3), cupy.ones((2, 6), np.float32)), {"kernels": 2}),
        (lambda: x.__setitem__(slice(1, 3), 0), {"memset": 1}),
        (lambda: x.__setitem__((slice(None), slice(0, 3)), 0), {"kernels": 1}),  # not contiguous
        (lambda: x.__setitem__(0, 2.5), {"kernels": 1}),
        (lambda: x.__setitem__(cupy.arange(2), 1.0), {"kernels": 2}),        # arange + scatter
        (lambda: x.__setitem__(x > 1, 0.0), {"kernels": 2, "syncs": 1})]
    for i, (step, want) in enumerate(steps):
        with cupy_counters.count() as n:
            step()
        got = {k: n[k] for k in ("kernels", "memcpy", "memset", "syncs") if n[k]}
        assert got == want, (i, got)
    x[:, 0:3] += y                                     # the statement itself, as Python runs it
    with cupy_counters.count() as n:
        x[:, 0:3] += y
    assert n["kernels"] == 1 and n["memcpy"] == 0
    want = np.zeros((4, 6))
    want[:, 0:3] += 1
    want[:, ::2] = 1
    want[1:3] = 0
    want[:, 0:3] = 0
    want[0] = 2.5
    want[[0, 1]] = 1
    want[want > 1] = 0
    want[:, 0:3] += 2
    np.testing.assert_array_equal(x.get(), want)


def test_kernels_are_counted_per_device(two, cupy_counters):
    cupy.ones(2) + 1
    with cupy.cuda.Device(1):
        cupy.ones(2) + 1
        cupy.ones(2).sum()
    assert cupy_counters.read()["kernels_per_device"] == {0: 2, 1: 4}


# --- (e) random ----------------------------------------------------------------------------
def draws():
    rng = cupy.random.default_rng(2)
    return [cupy.random.rand(2, 3), cupy.random.uniform(-1, 1, (4,)), cupy.random.normal(0, 1, 5),
            cupy.random.standard_normal((2,), dtype=cupy.float32), cupy.random.randint(0, 9, (3,)),
            cupy.random.permutation(6), cupy.random.RandomState(1).random_sample((2,)),
            rng.random((3,), dtype=cupy.float32), rng.standard_normal((3,)),
            rng.integers(0, 5, (3,))]


def test_random_draws_are_on_the_current_device(two):
    with cupy.cuda.Device(1):
        cupy.random.seed(3)
        made = draws()
    for d in made:
        assert d.device.id == 1
    assert made[3].dtype == np.float32 and made[7].dtype == np.float32
    assert made[0].shape == (2, 3) and sorted(made[5].tolist()) == list(range(6))
    cupy.random.seed(3)
    a = cupy.random.rand(4).get()
    cupy.random.seed(3)
    np.testing.assert_array_equal(a, cupy.random.rand(4).get())


def test_each_random_draw_is_one_kernel(two, cupy_counters):
    with cupy.cuda.Device(1):
        cupy.random.seed(0)
        cupy_counters.reset()
        n = len(draws())
    assert cupy_counters.kernels(1) == n and cupy_counters.kernels(0) == 0


@stricter
def test_a_generator_is_used_on_its_own_device(two):
    rng = cupy.random.default_rng(0)
    with cupy.cuda.Device(1):
        with pytest.raises(ValueError, match="is different from the current device"):
            rng.random((2,))


# --- (f) the API minidl, alexnet and the benchmarks use, against NumPy ----------------------
def _after(f, a, *args, **kwargs):
    b = a.copy()
    f(b, *args, **kwargs)
    return b


def _into(f, out, *args):
    f(*args, out=out)
    return out


API = {
    "pad": lambda xp, a, i: xp.pad(a, ((0, 0), (1, 2)), mode="constant"),
    "einsum": lambda xp, a, i: xp.einsum("ij,kj->ik", a, a),
    "tensordot": lambda xp, a, i: xp.tensordot(a, a, axes=([1], [1])),
    "dot": lambda xp, a, i: xp.dot(a, a.T),
    "matmul @": lambda xp, a, i: a @ a.T,
    "take_along_axis": lambda xp, a, i: xp.take_along_axis(a, i, axis=1),
    "put_along_axis": lambda xp, a, i: _after(xp.put_along_axis, a, i, -1.0, axis=1),
    "argsort": lambda xp, a, i: xp.argsort(a, axis=1),
    "argpartition": lambda xp, a, i: xp.sort(
        xp.take_along_axis(a, xp.argpartition(a, 2, axis=1)[:, :2], 1), 1),
    "cumsum": lambda xp, a, i: xp.cumsum(a, axis=1),
    "broadcast_to": lambda xp, a, i: xp.broadcast_to(a[:1], (3, 4)),
    "expand_dims": lambda xp, a, i: xp.expand_dims(a, 0),
    "stack": lambda xp, a, i: xp.stack([a, a], axis=1),
    "split": lambda xp, a, i: xp.split(a, 2, axis=1)[1],
    "clip": lambda xp, a, i: a.clip(0.2, 0.7),
    "where": lambda xp, a, i: xp.where(a > 0.5, a, -a),
    "max keepdims": lambda xp, a, i: a.max(axis=1, keepdims=True),
    "argmax": lambda xp, a, i: xp.argmax(a, axis=0),
    "mean": lambda xp, a, i: a.mean(axis=(0, 1)),
    "any": lambda xp, a, i: (a > 0.9).any(axis=1),
    "add.at": lambda xp, a, i: _after(xp.add.at, a, (slice(None), i[:, 0]), 1.0),
    "maximum out=": lambda xp, a, i: _into(xp.maximum, xp.empty_like(a), a, 0.5),
    "sum out=": lambda xp, a, i: _into(lambda x, out: xp.sum(x, axis=1, out=out), xp.empty(3), a),
    "ascontiguousarray": lambda xp, a, i: xp.ascontiguousarray(a.T),
    "as_strided": lambda xp, a, i: xp.lib.stride_tricks.as_strided(a, (2, 2), a.strides),
    "gather": lambda xp, a, i: a[i[:, 0]],
    "in-place": lambda xp, a, i: _after(lambda b: b.__imul__(a), a),
    "power": lambda xp, a, i: 2.0 ** a + a ** 2 - a / 3 + (1 - a) // 0.3,
    "astype": lambda xp, a, i: a.astype(xp.float32),
    "reshape of a transpose": lambda xp, a, i: a.T.reshape(-1),
    "logsumexp": lambda xp, a, i: xp.log(xp.exp(a - a.max(1, keepdims=True)).sum(1)),
    "result_type": lambda xp, a, i: xp.zeros(1, dtype=xp.result_type(a, xp.float32)),
    "tanh, reciprocal": lambda xp, a, i: xp.tanh(a) * xp.reciprocal(a + 1),
    "comparisons": lambda xp, a, i: xp.equal(i, 1) & (i != 2) | (i >= 3),
    "arange": lambda xp, a, i: xp.arange(5, dtype=xp.float32),
    "concatenate": lambda xp, a, i: xp.concatenate([a, a], axis=0),
    "flatten": lambda xp, a, i: a.T.flatten(),
    "ones_like": lambda xp, a, i: xp.ones_like(a, dtype=xp.int32),
    "sqrt, multiply, subtract": lambda xp, a, i: xp.subtract(xp.sqrt(a), xp.multiply(a, a)),
}


@pytest.mark.parametrize("name", API)
def test_the_api_gives_numpys_values_on_the_current_device(name):
    last = cupy.cuda.runtime.getDeviceCount() - 1      # not device 0, where there are two or more
    rng = np.random.default_rng(0)
    a, i = rng.random((3, 4)), rng.integers(0, 3, (3, 2))
    want = API[name](np, a, i)
    with cupy.cuda.Device(last):
        got = API[name](cupy, cupy.asarray(a), cupy.asarray(i))
    assert isinstance(got, cupy.ndarray) and got.device.id == last
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.get(), want, rtol=1e-12)


def test_runtime_streams_and_memory_pool(two):
    assert cupy.cuda.runtime.getDeviceCount() >= 2
    pool = cupy.get_default_memory_pool()
    before = pool.used_bytes()
    a = cupy.empty(1 << 20, dtype=cupy.uint8)
    assert pool.used_bytes() >= before + (1 << 20)
    del a
    pool.free_all_blocks()
    assert isinstance(cupy.ones(2).data.ptr, int)
    b = cupy.ones((2, 3))
    assert b.flags.c_contiguous and not b.T.flags.c_contiguous and b.T.flags.f_contiguous
    assert cupy.get_array_module(b) is cupy and cupy.get_array_module(np.ones(1)) is np
    cupy.cuda.Device(1).synchronize()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        assert cupy.cuda.get_current_stream() == stream
        (b + 1).sum()
    stream.synchronize()
    assert cupy.cuda.get_current_stream() != stream


@stricter
def test_the_standin_says_what_it_is(two):
    assert cupy.__standin__ and cupy.cuda.runtime.deviceCanAccessPeer(0, 1) == 0
    assert "stand-in" in cupy.__doc__.lower()


@stricter
def test_library_stand_ins_find_arrays_by_pointer_count_and_check_order(two, cupy_counters):
    with cupy.cuda.Device(1):
        a = cupy.arange(4.0)
    found = cupy.standin.array_at(a.data.ptr)
    assert found is a and found.device.id == 1
    cupy_counters.reset()
    cupy.standin.host_view(a)[0] = 9.0                 # shared memory, as a library would write
    cupy.standin.launch(1)                             # ... in one kernel on device 1
    assert cupy_counters.kernels(1) == 1
    with pytest.raises(RuntimeError, match="not ordered"):
        cupy.standin.check_ordered(1, 0)
    with cupy.cuda.Device(1):
        assert float(a[0]) == 9.0


# --- the switch ----------------------------------------------------------------------------
def test_the_switch_reaches_subprocesses(cupy_mode):
    assert os.environ["MINIDL_TEST_CUPY"] == cupy_mode and STANDIN == (cupy_mode == "standin")
    code = ("import cupy; "
            "print(getattr(cupy, '__standin__', False), cupy.cuda.runtime.getDeviceCount())")
    env = dict(os.environ, MINIDL_STANDIN_DEVICES="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.split()[0] == str(STANDIN)
    if STANDIN:
        assert out.stdout.split()[1] == "3"
        env["MINIDL_STANDIN_DEVICES"] = "many"
        bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert bad.returncode != 0
        assert "MINIDL_STANDIN_DEVICES: expected a whole number" in bad.stderr


NCCL_ID_FORMS = """
import cupy
from cupy.cuda import nccl
uid = nccl.get_unique_id()
print(cupy.__version__, cupy.standin.cupy_major(), type(uid).__name__, len(uid), nccl.available)
other_form = bytes(128) if cupy.standin.cupy_major() == 13 else (1,) * 128
for bad in (other_form, bytes(1), (200,) * 128, (1,) * 3, [0] * 128, bytearray(128)):
    try:
        nccl.NcclCommunicator(2, bad, 0)
    except (TypeError, ValueError, AssertionError, OverflowError) as e:
        print(type(e).__name__, end=" ")
"""


@stricter
@pytest.mark.parametrize("major, version, form, refusals", [
    ("13", "13.6.0+standin", "tuple",
     "TypeError TypeError OverflowError AssertionError TypeError TypeError"),
    ("14", "14.2.0+standin", "bytes",
     "TypeError ValueError TypeError TypeError TypeError TypeError")])
def test_the_standin_follows_cupy_13_or_14_where_they_differ(major, version, form, refusals):
    """MINIDL_STANDIN_CUPY (default 14): NCCL's unique id is bytes from CuPy 14 on, a tuple
    of 128 ints (the id's C chars) before; NcclCommunicator refuses the other form, a
    wrong length and (CuPy 13) an int a signed char cannot hold, before any NCCL call.
    The same refusals as the real wheels (13.6.0 and 14.2.0, checked by hand)."""
    env = {k: v for k, v in os.environ.items() if k != "MINIDL_STANDIN_CUPY"}
    if major != "14":
        env["MINIDL_STANDIN_CUPY"] = major
    out = subprocess.run([sys.executable, "-c", NCCL_ID_FORMS], capture_output=True, text=True,
                         env=env, check=True).stdout.split("\n")
    assert out[0] == f"{version} {major} {form} 128 True"
    assert out[1].split() == refusals.split()
    env["MINIDL_STANDIN_CUPY"] = "12"
    bad = subprocess.run([sys.executable, "-c", NCCL_ID_FORMS], capture_output=True, text=True,
                         env=env)
    assert bad.returncode != 0 and "MINIDL_STANDIN_CUPY: expected the CuPy major" in bad.stderr

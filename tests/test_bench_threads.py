"""bench_threads measures the three configurations it names."""
import pytest

import minidl
from benchmarks.bench_threads import configure

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads():
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_configurations_set_minidl_and_blas_threads():
    try:
        configure("blas", 2)
        given_back = blas_threads()
        assert minidl.get_num_threads() == 1
        configure("one", 2)
        assert minidl.get_num_threads() == 1 and all(n == 1 for n in blas_threads())
        configure("split", 3)
        assert minidl.get_num_threads() == 3 and all(n == 1 for n in blas_threads())
        configure("blas", 2)
        assert minidl.get_num_threads() == 1 and blas_threads() == given_back
    finally:
        minidl.set_num_threads(None)

import numpy as np
import pytest

from minidl import Device, Tensor, array_module
from minidl.backend import get_device


def test_virtual_cpu_devices_are_distinct_and_numpy_backed():
    assert Device("cpu:0") != Device("cpu:1")
    assert Device("cpu") != Device("cpu:0")
    assert Device("cpu:1") == Device("cpu:1") == "cpu:1"
    assert Device("cpu:1").xp is np
    assert len({Device("cpu:0"), Device("cpu:0"), Device("cpu:1")}) == 2
    t = Tensor(np.ones(3), device="cpu:1")
    assert t.device == Device("cpu:1") and isinstance(t.data, np.ndarray)
    assert array_module(t) is np and array_module(t.data) is np


@pytest.mark.parametrize("spec", ["gpu", "cpu:x", "cuda:-1", "", "cpu:0:1"])
def test_bad_device_specs_are_explained(spec):
    with pytest.raises(ValueError, match="expected 'cpu', 'cpu:N' or 'cuda:N'"):
        Device(spec)


def test_device_spec_type_error():
    with pytest.raises(TypeError, match="expected a string"):
        Device(3)


def test_cuda_without_a_gpu_gives_a_clear_error(cupy_devices):
    cupy_devices(0)                      # the CuPy stand-in as a machine without a GPU
    with pytest.raises(RuntimeError, match=r"cuda:0.*(CuPy|GPU)"):
        Device("cuda:0")


def test_a_gpu_the_machine_lacks_gives_a_clear_error():
    with pytest.raises(RuntimeError, match=r"cuda:16.*CUDA device\(s\), numbered 0\.\."):
        Device("cuda:16")


def test_get_device_and_str():
    d = get_device("cpu:1")
    assert get_device(d) is d
    assert str(d) == "cpu:1" and repr(d) == "Device('cpu:1')"


def test_import_minidl_does_not_import_cupy():
    import subprocess
    import sys
    code = "import sys, minidl, minidl.nn, minidl.optim; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

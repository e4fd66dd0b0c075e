"""The GPU check script: a dry run on a virtual CPU device keeps it from rotting
in CI; on a machine with CuPy and a GPU the same checks run on cuda:0."""
import pytest

import minidl
from benchmarks import gpu_check


def test_gpu_check_dry_run_on_a_virtual_device(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "RESULTS", tmp_path)    # not into the source tree
    assert gpu_check.main(["--device", "cpu:1", "--skip", "layers,speed,pipeline"]) == 0
    out = capsys.readouterr().out
    assert "gradcheck" in out and "lrn alpha=1 k=1" in out and "0 check(s) failed" in out
    assert (tmp_path / "gpu_check.json").is_file()


@pytest.mark.skipif(not minidl.cupy_available(), reason="needs CuPy and a CUDA GPU")
def test_gpu_check_on_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "RESULTS", tmp_path)
    assert gpu_check.main(["--device", "cuda:0", "--skip", "speed,pipeline"]) == 0


def test_gpu_check_without_a_gpu_explains(capsys):
    if minidl.cupy_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check.main(["--device", "cuda:0"]) == 2
    assert "cuda:0" in capsys.readouterr().err

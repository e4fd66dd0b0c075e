"""The GPU check script: a dry run on a virtual CPU device; the run on CUDA devices
(the CuPy stand-in in CI, a GPU where there is one) is in test_device_path.py."""
from benchmarks import gpu_check


def test_gpu_check_dry_run_on_a_virtual_device(capsys, tmp_path):
    assert gpu_check.main(["--device", "cpu:1", "--skip", "layers,speed,pipeline",
                           "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gradcheck" in out and "lrn alpha=1 k=1" in out and "0 check(s) failed" in out
    assert (tmp_path / "gpu_check.json").is_file()


def test_gpu_check_on_a_missing_gpu_explains(capsys, tmp_path):
    # on the CuPy stand-in or a real GPU machine alike: no machine here has 17 GPUs
    assert gpu_check.main(["--device", "cuda:16", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cuda:16" in err and ("CUDA device(s)" in err or "CuPy" in err)

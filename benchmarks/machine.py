"""What a measurement ran on and how it was started, for the results page.

Every benchmark's JSON carries `machine()`: the CPU model, its cores (all of
them, and those this process may use), the versions of Python, NumPy, numba
and PyTorch (PyTorch is the yardstick of most ratios), and the command that
ran it. A ratio means little without them: the same code gives another ratio
on another CPU or another BLAS. docs/results.md shows them beside each table
(`python -m benchmarks.report`).
"""
from __future__ import annotations

import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent   # the repository


def cpu_model():
    """The CPU's name as the OS reports it ('model name' in /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores():
    """Cores this process may run on (a container or `taskset` can allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # macOS, Windows
        return os.cpu_count()


def version(package):
    """The installed version of `package`, read without importing it; None if it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def command(argv=None):
    """The command line that started this process, as a user would type it.

    `python -m benchmarks.bench_cifar --steps 3` comes back as that, not as
    the path Python puts in sys.argv[0].
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return "python"
    script = Path(argv[0])
    try:
        relative = script.resolve().relative_to(ROOT)
    except (ValueError, OSError):
        return shlex.join(argv)
    if relative.suffix == ".py":
        module = ".".join(relative.with_suffix("").parts)
        return shlex.join(["python", "-m", module.removesuffix(".__main__"), *argv[1:]])
    return shlex.join(argv)


def blas():
    """The BLAS NumPy runs and the kernels it picked, e.g. 'OpenBLAS 0.3.31, SkylakeX
    kernels' (OPENBLAS_CORETYPE can force narrower ones than the CPU has); None
    when threadpoolctl cannot tell."""
    try:
        import numpy  # noqa: F401,PLC0415  (loads the BLAS)
        from threadpoolctl import threadpool_info  # noqa: PLC0415
    except ImportError:
        return None
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            name = {"openblas": "OpenBLAS", "mkl": "MKL"}.get(lib.get("internal_api"),
                                                             lib.get("internal_api"))
            kernels = f", {lib['architecture']} kernels" if lib.get("architecture") else ""
            return f"{name} {lib.get('version')}{kernels}"
    return None


def machine(argv=None):
    """The machine and command of a measurement, as a JSON-ready dict."""
    return {
        "command": command(argv),
        "cpu": cpu_model(),
        "blas": blas(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "os": platform.system(),
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "numba": version("numba"),
        "torch": version("torch"),
        "cupy": version("cupy-cuda12x") or version("cupy-cuda13x") or version("cupy"),
    }

"""Worker threads on the CPU: one op's images split over the cores.

The paper splits its net over two GPUs by *kernels* (Section 3.2; alexnet.model
does that by hand). On a CPU, minidl splits each big op by *images*: the
convolution, pooling and LRN layers cut their batch into one contiguous range
per thread and run the same code on every range at once. NumPy releases the
GIL inside its copies, ufuncs and BLAS calls, so plain Python threads run on
separate cores; the values are those of one thread (each image is computed
alone; only the sum of a weight gradient over the ranges changes its order).

Why not leave it to the BLAS: the GEMMs of a convolution are only part of its
time. The copies around them (im2col, col2im, transposes) and pooling are
single-threaded NumPy, so with OpenBLAS's threads alone a second core sat idle
through much of a CIFAR step. With both, the threads fight: BLAS threads spin
after each call and steal the core our other range runs on. So while minidl
runs more than one thread, it holds the BLAS NumPy loaded to ONE thread per
call (through threadpoolctl, which finds that library and sets its count;
OpenBLAS, MKL and BLIS each name the call differently), and splits every
layer with big GEMMs, fully-connected ones included, over its own threads.
The hold is set once (OpenBLAS frees and reallocates its buffers each time its
count changes: setting it around every op made a convolution 1.7x slower) and
lifted by ``set_num_threads(1)``. It also applies to your own NumPy matrix
products in this process. Measured by benchmarks/bench_threads.py (CIFAR
net, batch 128, BLAS at one thread): 2 threads run a conv layer 1.48-1.83x
and a training step 1.73-1.81x as fast as one.

    import minidl
    minidl.set_num_threads(1)     # everything in the calling thread, BLAS as it was
    minidl.get_num_threads()      # default: $MINIDL_NUM_THREADS, else the cores
                                  # this process may run on

CuPy arrays never use these threads (the GPU runs the whole batch at once).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

_ENV = "MINIDL_NUM_THREADS"

_threads = None            # set_num_threads(); None: the default
_pool = None               # a ThreadPoolExecutor of (threads - 1) workers
_pool_size = 0
_blas_hold = None          # threadpoolctl's hold of the BLAS at one thread
_lock = threading.Lock()
_local = threading.local()  # .inside: this thread runs a range already


def _after_fork_in_child():
    """A forked child has none of the parent's threads: start a fresh pool when needed."""
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, where there is one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads an op splits its images over: set_num_threads, else $MINIDL_NUM_THREADS,
    else `available_cores()`."""
    if _threads is not None:
        return _threads
    env = os.environ.get(_ENV)
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{_ENV}: expected a positive integer, found {env!r}; "
                             f"unset it to use every core ({available_cores()} here)")
        return n
    return available_cores()


def set_num_threads(n: int | None) -> None:
    """Split ops over `n` threads from now on (1: none, and the BLAS gets back the
    thread count it had; None: back to the default)."""
    global _threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"set_num_threads: expected a positive int or None, found {n!r}")
    _threads = n
    if get_num_threads() == 1:
        _release_blas()


def _executor(workers):
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="minidl")
            _pool_size = workers
        return _pool


def _hold_blas():
    """BLAS at one thread per call from now on (once: see the module docstring)."""
    global _blas_hold
    if _blas_hold is not None:
        return
    with _lock:
        if _blas_hold is not None:
            return
        try:
            from threadpoolctl import ThreadpoolController   # noqa: PLC0415
        except ImportError as e:
            raise ImportError(
                "minidl: splitting ops over threads needs threadpoolctl (a dependency "
                "of this project; found missing): pip install threadpoolctl, or run "
                "on one thread with minidl.set_num_threads(1) / MINIDL_NUM_THREADS=1") from e
        blas = ThreadpoolController().select(user_api="blas")
        _blas_hold = blas.limit(limits=1)    # remembers the counts it replaced


def _release_blas():
    global _blas_hold
    with _lock:
        if _blas_hold is not None:
            _blas_hold.restore_original_limits()
            _blas_hold = None


def _run(fn, i0, i1):
    _local.inside = True
    try:
        return fn(i0, i1)
    finally:
        _local.inside = False


def parallel_for(fn, n, grain=1, enabled=True):
    """Results of fn(i0, i1) over ranges that cover 0..n in order, run at once.

    Up to get_num_threads() ranges of about equal size (at least `grain`
    items each, unless n is smaller); the calling thread runs the last one.
    fn must write only its own range of any shared output. With one range,
    `enabled` false (CuPy arrays), or when called from inside a range, it is
    simply ``[fn(0, n)]``. An exception in any range is raised here, once
    every range has stopped.
    """
    T = min(get_num_threads(), max(1, n // max(1, grain)))
    if T <= 1 or not enabled or getattr(_local, "inside", False):
        return [fn(0, n)]
    _hold_blas()
    bounds = [n * t // T for t in range(T + 1)]
    pool = _executor(T - 1)
    futures = [pool.submit(_run, fn, bounds[t], bounds[t + 1]) for t in range(T - 1)]
    try:
        last = _run(fn, bounds[T - 1], bounds[T])
    finally:
        wait(futures)                     # no range may still be writing once we return
    return [f.result() for f in futures] + [last]


def parallel_chunks(step, chunks, body, enabled=True):
    """body(chunks[k0:k1], step) for runs of `chunks` (slices of an array, each
    at most `step` long), one run per thread: the loops of pooling and LRN,
    which work a cache-sized chunk at a time and make their scratch arrays
    (of `step` items) per run."""
    parallel_for(lambda k0, k1: body(chunks[k0:k1], step), len(chunks), enabled=enabled)

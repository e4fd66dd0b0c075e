"""Worker threads on the CPU: one op's work split over the cores.

The paper splits its net over two GPUs by *kernels* (Section 3.2; alexnet.model
does that by hand). On a CPU, the fast path splits each big op by *images* (or
blocks of output positions): one contiguous range per thread, the same code
on every range at once. NumPy releases the GIL inside its copies, ufuncs and
BLAS calls, so plain Python threads run on separate cores; the values are
those of one thread, except for sums over the ranges (a weight gradient),
which change their order.

Why not leave it to the BLAS: the copies around a convolution's GEMMs and
pooling are single-threaded NumPy, so a BLAS-threaded run leaves cores idle;
and BLAS threads spin after each call, stealing the core another range runs
on. So while minidl runs more than one thread it holds the BLAS at ONE thread
per call (threadpoolctl), set once because OpenBLAS reallocates its buffers
on every change; ``set_num_threads(1)`` lifts the hold. The hold applies to
every NumPy matrix product in this process.

    import minidl
    minidl.set_num_threads(1)     # everything in the calling thread, BLAS as it was
    minidl.get_num_threads()      # default: $MINIDL_NUM_THREADS, else the cores
                                  # this process may run on

CuPy arrays never use these threads (the GPU runs the whole batch at once).
"""
from __future__ import annotations

import os
import queue
import threading

_ENV = "MINIDL_NUM_THREADS"

_threads = None            # set_num_threads(); None: the default
_workers = []              # the inboxes of the worker threads (queue.SimpleQueue each)
_blas_hold = None          # threadpoolctl's hold of the BLAS at one thread
_lock = threading.Lock()
_local = threading.local()  # .inside: this thread runs a range already


def _after_fork_in_child():
    """A forked child has none of the parent's threads: start fresh workers when needed."""
    global _workers, _lock
    _workers, _lock = [], threading.Lock()


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


def _worker(inbox):
    """A worker thread: runs (fn, i0, i1, reply, t) from its inbox and puts
    (t, ok, result or exception) in reply."""
    while True:
        fn, i0, i1, reply, t = inbox.get()
        try:
            reply.put((t, True, _run(fn, i0, i1)))
        except BaseException as e:          # noqa: BLE001  handed to the caller
            reply.put((t, False, e))


def _inboxes(n):
    """The inboxes of n worker threads, started the first time they are needed.

    Plain threads and queues, not a ThreadPoolExecutor: a hand-off costs about
    15 us instead of 55 (futures, their conditions and the executor's lock),
    and a training step makes ~50 of them."""
    with _lock:
        while len(_workers) < n:
            inbox = queue.SimpleQueue()
            threading.Thread(target=_worker, args=(inbox,), daemon=True,
                             name=f"minidl-{len(_workers)}").start()
            _workers.append(inbox)
        return _workers[:n]


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


def parallel_for(fn, n, grain=1, enabled=True, threads=None):
    """Results of fn(i0, i1) over ranges that cover 0..n in order, run at once.

    Up to `threads` (None: get_num_threads()) ranges of about equal size (at least `grain`
    items each, unless n is smaller); the calling thread runs the last one.
    fn must write only its own range of any shared output. With one range,
    `enabled` false (CuPy arrays), or when called from inside a range, it is
    simply ``[fn(0, n)]``. An exception in any range is raised here, once
    every range has stopped.
    """
    T = min(threads or get_num_threads(), max(1, n // max(1, grain)))
    if T <= 1 or not enabled or getattr(_local, "inside", False):
        return [fn(0, n)]
    _hold_blas()
    bounds = [n * t // T for t in range(T + 1)]
    reply = queue.SimpleQueue()
    for t, inbox in enumerate(_inboxes(T - 1)):
        inbox.put((fn, bounds[t], bounds[t + 1], reply, t))
    try:
        last = _run(fn, bounds[T - 1], bounds[T])
    finally:
        answers = sorted(reply.get() for _ in range(T - 1))  # no range may still be writing
    for _, ok, result in answers:
        if not ok:
            raise result
    return [result for _, _, result in answers] + [last]


def parallel_chunks(a, nbytes, body, threads=None):
    """body(chunks, step) over runs of chunks of a's first axis, one run per
    thread: each chunk a slice of at most `step` items of about `nbytes`, so
    that an op's passes over it find it in cache (body makes its scratch
    arrays of `step` items once per run)."""
    N = a.shape[0]
    step = max(1, nbytes // max(1, a[0].nbytes)) if N else 1
    chunks = [slice(i, min(i + step, N)) for i in range(0, N, step)]
    parallel_for(lambda k0, k1: body(chunks[k0:k1], step), len(chunks), threads=threads)

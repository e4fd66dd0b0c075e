"""Data parallelism: one model trained by R processes, MPI between them, NCCL between GPUs.

    python -m alexnet train --data-dir CACHE ...               # one process (as always)
    mpiexec -n 2 python -m alexnet train --data-dir CACHE ...  # the same run, 2 x 64 images

The paper trained one model on the two GPUs of one machine, split by kernels
(Section 3.2). Past one machine the next step of this net's lineage splits by
*images* (Krizhevsky 2014, "One weird trick"): R processes ("ranks"), each with
the whole model (both columns, on its own --devices), each given a disjoint share
of every global batch of B = 128 images (Section 5). One step:

    rank r: images [r*B/R, (r+1)*B/R) of the batch  (the loader's `shard=(r, R)`)
    forward, loss = mean over its B/R images, backward     -> g_r
    Allreduce(sum) of the g_r, in a few large flat buckets  -> sum_r g_r
    times 1/R                                               -> the gradient of the
                                                               mean over all B images
    the same SGD step on every rank                         -> the same weights everywhere

Every random draw depends on an image's place in the global batch, never on the
rank: crops, flips and colour noise are drawn for the whole batch from (seed,
epoch, batch) and each rank keeps its rows (alexnet.data.loader); dropout masks
are a hash of a key from minidl's common generator and of each unit's place in
the whole batch, so each rank computes its rows of them (`share_dropout`,
minidl.functions.dropout). So R ranks compute the single-process run up
to the order of floating-point sums (tests/test_distributed.py checks 1e-12 in
float64), and the generator's state is the same on every rank and for every R.

What must agree is checked, and a disagreement is an error on every rank (no
hang): the model, recipe and cache (`agree`), a global batch R divides
(`check_batch`); rank 0's weights, momenta, schedule, generator and position are
broadcast at the start (`synchronize`: a fresh run and a resumed one alike).
Every rank takes the same branches: the trainer's loss and error sums are summed
over the ranks when it reads them (`sum_counts`), and each step ends with one
decision for all (`decide`): a checkpoint due by rank 0's clock, and a stop if any
rank was sent a signal (Ctrl-C or SIGTERM, which the launcher forwards to every
rank: alexnet.stopping), so that every rank stops after the same step and rank 0
saves the checkpoint a single process would. Metrics, progress bars and
checkpoints come from rank 0 only; a checkpoint holds nothing rank-specific, so
a run can resume on another R that divides B.
Any other error on one rank aborts the whole job (`abort_on_error`), and a rank
that dies is noticed by the launcher, which stops the others (mpiexec does so
by itself; Slurm: `srun --kill-on-bad-exit=1`). The last checkpoint is kept.

Between GPUs the buckets are summed by NCCL (`cupy.cuda.nccl`, its unique id sent
with MPI), on the device, never through the host: one NCCL communicator per
column device, linking that column on every rank.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np

import minidl
from minidl import nn, serialize
from minidl.backend import get_device

from .stopping import Interrupted, exit_status

# Set by the launchers in every process they start: MPICH's and Intel MPI's mpiexec
# (and srun --mpi=pmi2), Open MPI's mpirun, PMIx launchers (srun --mpi=pmix).
LAUNCHER_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")
BUCKET_BYTES = 64 << 20     # gradients are summed in buffers of at most 64 MiB


class RunMismatch(ValueError):
    """The ranks cannot train one model together; raised on every rank at once."""


class Communicator:
    """One process on its own: every call does nothing (today's single-process run)."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    threads = None             # this rank's share of the machine's cores (MPI only)

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that logs, draws progress bars and writes checkpoints."""
        return self.rank == 0

    @property
    def shard(self) -> tuple:
        """(index, count) of this rank's share of every batch (the Loader's `shard`)."""
        return self.rank, self.size

    def check_batch(self, batch_size):
        """Raise on every rank unless R divides the global batch."""

    def agree(self, what, value):
        """Raise on every rank unless every rank has the same `value` (JSON-able)."""

    def root_check(self, check):
        """Run `check()` (which raises on a bad setup) on rank 0; its error on every rank."""
        check()

    def local_devices(self, devices):
        """The devices this rank runs its columns on (see MPICommunicator)."""
        return devices

    def broadcast_tree(self, tree):
        """Rank 0's nested dict/list of arrays and JSON values on every rank."""
        return tree

    def synchronize(self, trainer):
        """Give every rank rank 0's whole training state (`Trainer.state_dict`)."""

    def share_dropout(self, model):
        """Make the model's dropout draw masks for the global batch (see the module doc)."""

    def allreduce_gradients(self, params):
        """Replace each parameter's .grad by the mean over the ranks."""

    def sum_counts(self, sums, n: int):
        """(sums, images) over all ranks of a rank's running sums (loss x images, top-k
        errors: a NumPy vector) over its n images."""
        return sums, n

    def decide(self, due: bool, stop: int) -> tuple:
        """(rank 0's `due`, the largest `stop` of any rank), the same on every rank: the
        decisions a step ends with, in one collective. due: a checkpoint is due by
        rank 0's clock; stop: the signal a rank was sent (0: none)."""
        return bool(due), int(stop or 0)

    def combine_means(self, result: dict) -> dict:
        """An `evaluate` result {"loss", "top1", ..., "n"} of this rank's share -> all ranks'."""
        return result

    @contextlib.contextmanager
    def abort_on_error(self, prog="alexnet", hint=None):
        """An error raised on one rank only would leave the others waiting: abort them.
        hint(): what the user can do then (true to what is on disk)."""
        yield


class MPICommunicator(Communicator):
    """R > 1 processes started by an MPI launcher (`world()` makes it).

    comm: an mpi4py communicator (MPI.COMM_WORLD); bucket_bytes: the most bytes
    summed by one Allreduce.
    """

    def __init__(self, comm, bucket_bytes=BUCKET_BYTES):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)          # the ranks on this machine
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.bucket_bytes = int(bucket_bytes)
        self._buckets = None
        self._nccl = None

    # ------------------------------------------------------------------ raw traffic
    def sum(self, values):
        """Element-wise sum over the ranks of a NumPy array (a new array)."""
        out = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, out, op=self.MPI.SUM)
        return out

    def broadcast_text(self, text):
        """Rank 0's string on every rank (sent as UTF-8 bytes: nothing is unpickled)."""
        data = np.frombuffer(text.encode(), np.uint8) if self.is_root else None
        size = np.array([0 if data is None else data.size], np.int64)
        self.comm.Bcast(size, root=0)
        buf = data.copy() if self.is_root else np.empty(int(size[0]), np.uint8)
        self.comm.Bcast(buf, root=0)
        return buf.tobytes().decode()

    def gather_text(self, text):
        """Every rank's string, in rank order, on every rank."""
        data = np.frombuffer(text.encode(), np.uint8)
        sizes = np.empty(self.size, np.int64)
        self.comm.Allgather(np.array([data.size], np.int64), sizes)
        out = np.empty(int(sizes.sum()), np.uint8)
        self.comm.Allgatherv(data, [out, sizes.tolist()])
        ends = np.cumsum(sizes)
        return [out[e - s:e].tobytes().decode() for s, e in zip(sizes, ends)]

    def broadcast_tree(self, tree):
        """Rank 0's nested dict/list of arrays and JSON values on every rank
        (the structure `minidl.serialize` stores; arrays sent as raw buffers)."""
        arrays = {}
        if self.is_root:
            skeleton, arrays = serialize.split_arrays(tree)
            specs = {k: [a.dtype.str, list(a.shape)] for k, a in arrays.items()}
            header = json.dumps({"tree": skeleton, "arrays": specs})
        header = json.loads(self.broadcast_text(header if self.is_root else ""))
        for key in sorted(header["arrays"]):
            dtype, shape = header["arrays"][key]
            a = np.ascontiguousarray(arrays[key]) if self.is_root else np.empty(shape, dtype)
            self.comm.Bcast(a, root=0)
            arrays[key] = a
        return serialize.join_arrays(header["tree"], arrays)

    # ------------------------------------------------------------------ agreement
    def _raise_together(self, message):
        """`message` (None: all is well) from any rank -> RunMismatch on every rank."""
        messages = [json.loads(m) for m in self.gather_text(json.dumps(message))]
        bad = [(r, m) for r, m in enumerate(messages) if m]
        if len({m for _, m in bad}) == 1 and len(bad) == self.size:
            raise RunMismatch(bad[0][1])                          # every rank says the same
        if bad:
            raise RunMismatch("; ".join(f"rank {r}: {m}" for r, m in bad))

    def check_batch(self, batch_size):
        self._raise_together(None if batch_size % self.size == 0 else (
            f"the global batch of {batch_size} images cannot be shared by {self.size} "
            f"processes (each must get the same number); start a number of processes "
            f"that divides it (e.g. {_divisors(batch_size)}), or change --batch"))

    def agree(self, what, value):
        texts = self.gather_text(json.dumps(value, sort_keys=True, default=str))
        ours = json.loads(texts[0])
        for r, text in enumerate(texts[1:], 1):
            if text != texts[0]:
                diff = _differences(ours, json.loads(text), f"rank {r}")
                raise RunMismatch(
                    f"rank {r} of {self.size} was given another {what} than rank 0: "
                    f"{'; '.join(diff[:5])}. Every process must be started with the same "
                    f"arguments and read the same data (a copy of one cache on every machine).")

    def root_check(self, check):
        message = None
        if self.is_root:
            try:
                check()
            except (ValueError, OSError) as e:       # a bad setup (a missing or used run)
                message = str(e)
        message = self.broadcast_text(json.dumps(message))
        if json.loads(message):
            raise RunMismatch(json.loads(message))

    def local_devices(self, devices):
        """`--devices` names the GPUs of the first rank on a machine; the next rank on
        the same machine takes the next ones (cuda:0,cuda:1 -> cuda:2,cuda:3 for local
        rank 1) when the machine shows enough GPUs; when the launcher gives each rank
        only its own (CUDA_VISIBLE_DEVICES, srun --gpus-per-task) they stay as named."""
        names = [str(d) for d in devices]
        cuda = sorted({get_device(d).index for d in names if d.startswith("cuda")})
        if not cuda or self.local_size == 1:
            return names
        from minidl.backend import cuda_device_count
        per_rank = max(cuda) + 1
        if cuda_device_count() < per_rank * self.local_size:
            return names
        shift = self.local_rank * per_rank
        return [f"cuda:{get_device(d).index + shift}" if d.startswith("cuda") else d
                for d in names]

    # ------------------------------------------------------------------ training
    def synchronize(self, trainer):
        state = self.broadcast_tree(trainer.state_dict() if self.is_root else None)
        if not self.is_root:
            trainer.load_state_dict(state)

    def share_dropout(self, model):
        for _, module in model.named_modules():
            if isinstance(module, nn.Dropout):
                module.share = (self.rank, self.size)

    def allreduce_gradients(self, params):
        params = list(params)
        if self._buckets is None or not self._buckets.fits(params):
            self._buckets = GradientBuckets(params, self.bucket_bytes)
        self._buckets.reduce(params, self._allreduce, 1.0 / self.size)

    def _allreduce(self, flat, device):
        """Sum `flat` over the ranks, in place: NCCL on a GPU, MPI on the host."""
        if device.is_cuda:
            if self._nccl is None:
                self._nccl = NcclGroup(self, [p.device for p in self._buckets.params])
            self._nccl.allreduce(flat, device)
        else:
            self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)

    def sum_counts(self, sums, n):
        total = self.sum([*np.asarray(sums, np.float64), n])
        return total[:-1], int(total[-1])

    def decide(self, due, stop):
        values = np.array([int(bool(due)) if self.is_root else 0, int(stop or 0)], np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, values, op=self.MPI.MAX)
        return bool(values[0]), int(values[1])

    def combine_means(self, result):
        keys = sorted(k for k in result if k != "n")
        total = self.sum([result["n"], *(result[k] * result["n"] for k in keys)])
        return {**{k: float(v / total[0]) for k, v in zip(keys, total[1:])}, "n": int(total[0])}

    @contextlib.contextmanager
    def abort_on_error(self, prog="alexnet", hint=None):
        try:
            yield
        except RunMismatch:
            raise                      # raised on every rank at once: each exits on its own
        except Interrupted as e:
            if e.together:             # every rank stopped after the same step
                raise
            self._abort(prog, f"interrupted by {e.name} where the ranks could not stop "
                              "together", hint, e.status)
        except BaseException as e:     # noqa: BLE001 - reported, then the whole job stops
            if isinstance(e, SystemExit) and not e.code:
                raise
            if isinstance(e, KeyboardInterrupt):
                self._abort(prog, "interrupted", hint, exit_status(e))
            self._abort(prog, f"error: {type(e).__name__}: {e}", hint, 1)

    def _abort(self, prog, what, hint, status):
        then = hint() if hint else "the last checkpoint, if there is one, is kept"
        print(f"{prog} (rank {self.rank} of {self.size}): {what}\nstopping every rank "
              f"(MPI_Abort); {then}", file=sys.stderr, flush=True)
        self.comm.Abort(status)


class GradientBuckets:
    """The gradients of `params` as a few flat arrays: grouped by device and dtype,
    cut into buckets of at most `bucket_bytes` (a parameter never split).

    reduce() copies each .grad into its bucket, sums the bucket over the ranks in
    one call, scales it, and leaves each .grad a view of the bucket (no copy back).
    A gradient of `bucket_bytes` or more (fc6's 151 MB in the paper's net) is a
    bucket by itself, summed where it lies (no copy at all).
    """

    def __init__(self, params, bucket_bytes=BUCKET_BYTES):
        self.params = list(params)
        self.signature = [(id(p), tuple(p.shape), p.data.dtype.str) for p in self.params]
        self.buckets = []                  # (device, dtype, [(param index, start, stop)], flat)
        groups = {}
        for i, p in enumerate(self.params):
            groups.setdefault((p.device, p.data.dtype.str), []).append(i)
        for (device, dtype), members in groups.items():
            item = np.dtype(dtype).itemsize
            spans, size = [], 0
            for i in members:
                n = self.params[i].size
                if n * item >= bucket_bytes:                  # big enough alone: no copy
                    self.buckets.append((device, dtype, [(i, 0, n)], None))
                    continue
                if spans and (size + n) * item > bucket_bytes:
                    self.buckets.append(self._bucket(device, dtype, spans, size))
                    spans, size = [], 0
                spans.append((i, size, size + n))
                size += n
            if spans:
                self.buckets.append(self._bucket(device, dtype, spans, size))

    @staticmethod
    def _bucket(device, dtype, spans, size):
        with device:
            return device, dtype, spans, device.xp.empty(size, dtype)

    @property
    def nbytes(self):
        """Bytes of the buckets' own buffers (the gradients summed where they lie: none)."""
        return sum(flat.nbytes for *_, flat in self.buckets if flat is not None)

    def fits(self, params):
        return [(id(p), tuple(p.shape), p.data.dtype.str) for p in params] == self.signature

    def reduce(self, params, allreduce, scale):
        """allreduce(flat, device) sums a bucket in place; then .grad = scale * sum."""
        for device, dtype, spans, flat in self.buckets:
            with device:
                if flat is None:                                  # one big gradient
                    (i, _, _), = spans
                    params[i].grad = self._own(params[i], device)
                    flat = params[i].grad.reshape(-1)
                    allreduce(flat, device)
                    flat *= flat.dtype.type(scale)
                    continue
                for i, a, z in spans:
                    g = params[i].grad
                    flat[a:z] = 0 if g is None else g.reshape(-1)   # None counts as zero
                allreduce(flat, device)
                flat *= flat.dtype.type(scale)
                for i, a, z in spans:
                    params[i].grad = flat[a:z].reshape(params[i].shape)

    @staticmethod
    def _own(p, device):
        """p.grad as a contiguous, writable array of p's dtype (zeros if None) to sum in place."""
        g, xp = p.grad, device.xp
        if g is None:
            return xp.zeros(p.shape, p.data.dtype)
        if g.flags.c_contiguous and getattr(g.flags, "writeable", True) and g.dtype == p.data.dtype:
            return g
        return xp.array(g, dtype=p.data.dtype, order="C")


NCCL_UNIQUE_ID_BYTES = 128     # the size of NCCL's ncclUniqueId


def nccl_id_bytes(uid) -> bytes:
    """NCCL's unique id as its 128 bytes, in either form CuPy gives it: bytes (CuPy 14 on)
    or a tuple of the id's C chars as ints (CuPy 13: -128..127 where char is signed, as on
    x86-64; 0..255 where it is unsigned, as on aarch64)."""
    return uid if isinstance(uid, bytes) else bytes(int(v) & 0xFF for v in uid)


def nccl_communicator(nccl, cupy_major: int, ndev: int, uid: bytes, rank: int):
    """`nccl.NcclCommunicator(ndev, commId, rank)` given the id in the form this CuPy takes:
    bytes from CuPy 14 on; before, a tuple of ints that CuPy's compiled code turns into C
    chars, so in the range of this platform's char. Signed is tried first (x86-64); a
    platform whose char is unsigned (aarch64) refuses a negative one with OverflowError
    before any NCCL call, and gets 0..255."""
    if cupy_major >= 14:
        return nccl.NcclCommunicator(ndev, uid, rank)
    try:
        return nccl.NcclCommunicator(ndev, tuple(b - 256 if b > 127 else b for b in uid), rank)
    except OverflowError:
        return nccl.NcclCommunicator(ndev, tuple(uid), rank)


class NcclGroup:
    """One NCCL communicator per local GPU the parameters live on, linking the same
    column on every rank; rank 0 makes each unique id and MPI sends its 128 bytes.

    allreduce(flat, device) sums a CuPy array in place, on the device's current
    stream: the gradients never leave the GPU.
    """

    def __init__(self, mpi, devices):
        import cupy
        from cupy.cuda import nccl
        if not nccl.available:
            raise RuntimeError("data parallelism between GPUs needs NCCL, and CuPy "
                               f"{cupy.__version__} found no NCCL library: install the one of "
                               "your CUDA (pip install nvidia-nccl-cu12, or nvidia-nccl-cu13), "
                               "or point LD_LIBRARY_PATH at your cluster's NCCL")
        self.cupy, self.nccl = cupy, nccl
        self.types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}
        cupy_major = int(cupy.__version__.split(".")[0])
        self.comms = {}
        for device in sorted({d for d in devices if d.is_cuda}, key=lambda d: d.index):
            uid = np.zeros(NCCL_UNIQUE_ID_BYTES, np.uint8)
            if mpi.is_root:
                uid[...] = np.frombuffer(nccl_id_bytes(nccl.get_unique_id()), np.uint8)
            mpi.comm.Bcast(uid, root=0)
            with cupy.cuda.Device(device.index):
                self.comms[device] = nccl_communicator(nccl, cupy_major, mpi.size,
                                                       uid.tobytes(), mpi.rank)

    def allreduce(self, flat, device):
        dtype = self.types.get(flat.dtype.name)
        if dtype is None:
            raise TypeError(f"NCCL gradients: expected float32 or float64, found {flat.dtype}")
        stream = self.cupy.cuda.get_current_stream()
        self.comms[device].allReduce(flat.data.ptr, flat.data.ptr, flat.size, dtype,
                                     self.nccl.NCCL_SUM, stream.ptr)


# ---------------------------------------------------------------------- the world
_world = None


def launched_by_mpi() -> bool:
    """True when an MPI launcher (mpiexec, mpirun, srun) started this process."""
    return any(name in os.environ for name in LAUNCHER_ENV)


def world() -> Communicator:
    """This process's communicator: MPI when an MPI launcher started more than one
    process, else the single-process one (and mpi4py is not even imported)."""
    global _world
    if _world is None:
        _world = _connect()
    return _world


def _connect():
    if not launched_by_mpi():
        return Communicator()
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(
            f"an MPI launcher started this process, but mpi4py is not importable ({e}). "
            "Install the MPI extra (`pip install -e \".[mpi]\"`: mpi4py and MPICH), or "
            "see docs/howto_distributed.md for a cluster's own MPI.") from e
    if MPI.COMM_WORLD.Get_size() == 1:
        return Communicator()
    comm = MPICommunicator(MPI.COMM_WORLD)
    comm.threads = share_cores(comm.local_size)
    return comm


# Thread counts of the BLAS (OpenBLAS, MKL, BLIS) and OpenMP that a user may set.
BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "BLIS_NUM_THREADS")


def share_cores(ranks_here):
    """Give this rank its share of the machine's cores: cores // (ranks on the machine)
    threads for minidl's ops AND for the BLAS. Returns the share.

    Both matter: a rank with one minidl thread lets the BLAS have all its threads
    back (minidl.cpu.parallel), and OpenBLAS's threads spin after every call; two
    ranks on two cores then ran 4 spinning BLAS threads and trained the tiny net at
    0.22x the speed of one process (now about 1.1x: benchmarks/bench_ranks.py).
    MINIDL_NUM_THREADS, and the BLAS's own variables (BLAS_VARIABLES), still win
    when the user sets them."""
    from minidl.cpu.parallel import available_cores
    share = max(1, available_cores() // max(1, ranks_here))
    if not any(v in os.environ for v in BLAS_VARIABLES):
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=share, user_api="blas")       # for the life of the process
    if "MINIDL_NUM_THREADS" not in os.environ:
        minidl.set_num_threads(share)
    return share


# ---------------------------------------------------------------------- messages
def _divisors(n, most=6):
    return ", ".join(str(d) for d in [d for d in range(1, n + 1) if n % d == 0][:most])


def _differences(a, b, other, path=""):
    """'key: x on rank 0, y on `other`' for every leaf where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), other, f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [f"{path or 'value'}: {a!r} on rank 0, {b!r} on {other}"]

"""`cupy.cuda.nccl` of the CuPy stand-in: a STAND-IN for NCCL, not NCCL.

The NCCL calls alexnet.distributed makes, with CuPy's signatures, carried out by
MPI on the host underneath (mpi4py; every rank of the communicator is an MPI
rank of one job). Nothing here is fast or runs on a GPU: it exists so that the
NCCL path of data-parallel training runs in CI under the rules a GPU would hold
it to, and stricter where unsure:

* buffers are device pointers (ints, `array.data.ptr`) of the stand-in's arrays:
  a pointer that is not one (a NumPy array's address) is refused (TypeError), as
  NCCL refuses host memory;
* the buffers must live on the communicator's device, which must be the current
  device (ValueError, the stand-in's wording for another device's array);
* the stream must be the current stream of that device (RuntimeError);
* `count` elements of `datatype` must fit in the buffer (ValueError);
* every call counts as one kernel on the device (`cupy.standin.counters()`).

    uid = nccl.get_unique_id()                          # rank 0; sent to the others by MPI
    comm = nccl.NcclCommunicator(nranks, uid, rank)     # under cupy.cuda.Device(d)
    comm.allReduce(x.data.ptr, x.data.ptr, x.size, nccl.NCCL_FLOAT32, nccl.NCCL_SUM,
                   cupy.cuda.get_current_stream().ptr)
    comm.bcast(x.data.ptr, x.size, nccl.NCCL_FLOAT32, 0, stream.ptr)

The unique id takes the form of the CuPy release the stand-in follows
(`MINIDL_STANDIN_CUPY`, `cupy.standin.cupy_major()`), and `NcclCommunicator`
refuses the other form as that release's compiled signature does:

* CuPy 14: `get_unique_id()` gives `bytes` (128); `NcclCommunicator(int ndev,
  bytes commId, int rank, NcclConfig config=None)` raises TypeError for any
  other type and ValueError ("commId length 1 != 128.") for another length;
* CuPy 13: `get_unique_id()` gives a tuple of 128 ints, NCCL's C chars (signed
  on x86-64, which the stand-in follows: -128..127; unsigned on aarch64);
  `NcclCommunicator(int ndev, tuple commId, int rank)` raises TypeError for
  any other type, AssertionError for another length and OverflowError for an
  int a char cannot hold.

A pointer is traced back to its array by the stand-in's hooks for library
stand-ins (`cupy.standin.array_at`, `host_view`, `launch`; real NCCL asks the
CUDA driver, cudaPointerGetAttributes).
"""
from __future__ import annotations

import operator
import os

import numpy as np

from .. import _state, standin
from .._ndarray import device_error
from . import get_current_stream, get_device_id

# The values of nccl.h (CuPy exposes them under these names).
NCCL_INT8, NCCL_INT32, NCCL_INT64 = 0, 2, 4
NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 6, 7, 8
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3
_DTYPES = {NCCL_INT8: np.int8, NCCL_INT32: np.int32, NCCL_INT64: np.int64,
           NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32, NCCL_FLOAT64: np.float64}
_UNIQUE_ID_BYTES = 128   # NCCL_UNIQUE_ID_BYTES

available = True         # CuPy: False when the NCCL library could not be loaded


class NcclError(RuntimeError):
    """CuPy raises `cupy.cuda.nccl.NcclError` for a failing NCCL call."""


def _buffer(ptr, count, datatype, where) -> np.ndarray:
    """The host memory behind device pointer `ptr`: `count` elements of `datatype`,
    after the checks of the module docstring."""
    if datatype not in _DTYPES:
        raise NcclError(f"{where}: unknown NCCL datatype {datatype!r} (ncclInvalidArgument)")
    try:
        array = standin.array_at(int(ptr))
    except KeyError:
        raise TypeError(f"{where}: {ptr:#x} is not a device pointer of this process (a host "
                        "array's address?); NCCL reads device memory only: pass "
                        "`cupy_array.data.ptr` (CuPy stand-in)") from None
    if array.device.id != get_device_id():
        raise device_error(array.device.id, get_device_id())
    host = standin.host_view(array)
    if not host.flags.c_contiguous:
        raise ValueError(f"{where}: the buffer must be contiguous (CuPy stand-in)")
    flat = host.reshape(-1).view(np.uint8)
    size = int(count) * np.dtype(_DTYPES[datatype]).itemsize
    if size > flat.size:
        raise ValueError(f"{where}: {count} elements of {np.dtype(_DTYPES[datatype])} do not fit "
                         f"in the {flat.size}-byte buffer at {ptr:#x}")
    return flat[:size].view(_DTYPES[datatype])


def get_unique_id():
    """A fresh id that names one communicator: 128 bytes (CuPy 14), or a tuple of their 128
    C chars as ints, -128..127 (CuPy 13 on x86-64)."""
    raw = os.urandom(_UNIQUE_ID_BYTES)
    if _state.cupy_major >= 14:
        return raw
    return tuple(np.frombuffer(raw, np.int8).tolist())


def _unique_id(commId) -> bytes:
    """The 128 bytes of `commId`, refused as the compiled `NcclCommunicator.__init__` of the
    CuPy release the stand-in follows refuses it."""
    want = bytes if _state.cupy_major >= 14 else tuple
    if type(commId) is not want:     # Cython's check of a typed argument
        raise TypeError(f"Argument 'commId' has incorrect type (expected {want.__name__}, got "
                        f"{type(commId).__name__}) (CuPy {_state.cupy_major}: "
                        f"get_unique_id() gives the {want.__name__} it takes)")
    if want is bytes:
        if len(commId) != _UNIQUE_ID_BYTES:
            raise ValueError(f"commId length {len(commId)} != {_UNIQUE_ID_BYTES}.")
        return commId
    if len(commId) != _UNIQUE_ID_BYTES:   # CuPy 13: a bare `assert len(commId) == 128`
        raise AssertionError(f"NcclCommunicator: commId must hold {_UNIQUE_ID_BYTES} ints, "
                             f"found {len(commId)}")
    chars = [operator.index(v) for v in commId]    # Cython's conversion of each int to a char
    for v in chars:
        if not -128 <= v <= 127:
            raise OverflowError(f"value too large to convert to char ({v}; CuPy 13 on x86-64 "
                                "takes NCCL's chars as -128..127)")
    return bytes(v & 0xFF for v in chars)


def get_version() -> int:
    return 22000


class NcclCommunicator:
    """`cupy.cuda.nccl.NcclCommunicator(ndev, commId, rank)`: this rank's member of the
    communicator named by `commId`, on the current device. Stand-in: the group is the
    whole MPI job (COMM_WORLD), so `ndev` must be its size and `rank` this MPI rank."""

    def __init__(self, ndev, commId, rank):
        uid = np.frombuffer(_unique_id(commId), np.uint8)    # before NCCL is called, as CuPy
        from mpi4py import MPI
        self._MPI = MPI
        world = MPI.COMM_WORLD
        if ndev != world.Get_size() or rank != world.Get_rank():
            raise NcclError(f"NcclCommunicator({ndev}, id, {rank}): the stand-in links the whole "
                            f"MPI job ({world.Get_size()} ranks, this one {world.Get_rank()}); "
                            "ncclInvalidArgument")
        ids = np.empty((world.Get_size(), _UNIQUE_ID_BYTES), np.uint8)
        world.Allgather(uid, ids)
        if not (ids == ids[0]).all():
            raise NcclError("NcclCommunicator: the ranks were given different unique ids "
                            "(rank 0 must make one and send it to every rank)")
        self._comm = world.Dup()
        self._device = get_device_id()
        self._rank, self._size = rank, ndev

    # --- what it is -------------------------------------------------------------------------
    def rank_id(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def device_id(self) -> int:
        return self._device

    def destroy(self) -> None:
        if self._comm is not None:
            self._comm.Free()
            self._comm = None

    abort = destroy

    # --- collectives --------------------------------------------------------------------
    def _enter(self, where, stream):
        if self._comm is None:
            raise NcclError(f"{where}: the communicator was destroyed")
        if get_device_id() != self._device:
            raise device_error(self._device, get_device_id())
        if int(stream) != get_current_stream().ptr:
            raise RuntimeError(f"{where}: stream {stream} is not the current stream of device "
                               f"{self._device} (CuPy stand-in: pass "
                               "cupy.cuda.get_current_stream().ptr)")
        standin.launch(self._device, int(stream))

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        """recv = op over the ranks of send (`count` elements); send == recv: in place."""
        self._enter("allReduce", stream)
        ops = {NCCL_SUM: self._MPI.SUM, NCCL_PROD: self._MPI.PROD, NCCL_MAX: self._MPI.MAX,
               NCCL_MIN: self._MPI.MIN}
        if op not in ops:
            raise NcclError(f"allReduce: unknown reduction {op!r} (ncclInvalidArgument)")
        recv = _buffer(recvbuf, count, datatype, "allReduce")
        if int(sendbuf) == int(recvbuf):
            self._comm.Allreduce(self._MPI.IN_PLACE, recv, op=ops[op])
        else:
            send = _buffer(sendbuf, count, datatype, "allReduce").copy()
            self._comm.Allreduce(send, recv, op=ops[op])

    def bcast(self, buff, count, datatype, root, stream):
        """`count` elements of rank `root`'s buffer into every rank's, in place."""
        self._enter("bcast", stream)
        self._comm.Bcast(_buffer(buff, count, datatype, "bcast"), root=root)

    def broadcast(self, sendbuff, recvbuff, count, datatype, root, stream):
        self._enter("broadcast", stream)
        recv = _buffer(recvbuff, count, datatype, "broadcast")
        if self._rank == root and int(sendbuff) != int(recvbuff):
            recv[...] = _buffer(sendbuff, count, datatype, "broadcast")
        self._comm.Bcast(recv, root=root)

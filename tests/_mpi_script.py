"""Programs that tests/test_distributed.py starts under `mpiexec -n R` (or alone).

    python _mpi_script.py equivalence OUT [--own-dropout]
        The real Trainer, Loader (with augmentation) and two-column AlexNet (dropout
        on) in float64, on a synthetic split of 3 batches of 128 images; rank 0
        writes the final weights to OUT/checkpoint.npz. --own-dropout: each rank
        draws dropout masks for its own images only (the mistake the test must see).

    python _mpi_script.py nccl
        With the CuPy stand-in first on PYTHONPATH: gradients on two devices per
        rank summed by NCCL (the stand-in's, as the CuPy release MINIDL_STANDIN_CUPY
        names), checked against their mean, with no transfer to the host; then
        NCCL's refusals. Prints "ok" lines.

    python _mpi_script.py train [--kill-at EPOCH BATCH] [--fail-at EPOCH BATCH]
                                [--rank R] -- ARGS OF `alexnet train`
        `alexnet train`; on rank R (default 0) the process SIGKILLs itself
        (--kill-at), or raises an error (--fail-at), when the training loader is
        about to hand out that batch.

    python _mpi_script.py threads
        Prints "threads RANK MINIDL BLAS": the threads minidl's ops and the BLAS use
        in this rank (its share of the machine's cores).

    python _mpi_script.py COMMAND ARGS
        Any other `alexnet COMMAND ARGS`.
"""
import os
import signal
import sys

import numpy as np

import minidl
from alexnet import cli
from alexnet.data import loader
from alexnet.data.prepare import CacheSplit
from alexnet.distributed import world
from alexnet.imagenet_train import model_config
from alexnet.model import AlexNet
from alexnet.train import TrainConfig, Trainer

BATCH = 128


def synthetic_split(images, size=76, classes=4, seed=0):
    """A CacheSplit in memory: random uint8 pictures, a mean image and an RGB PCA."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8)
    eigvecs = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    return CacheSplit(x, rng.integers(0, classes, images), mean=x.mean(0).astype(np.float32),
                      eigvals=np.array([0.2, 0.02, 0.005]), eigvecs=eigvecs)


class Float64:
    """The loader's batches as float64 (the gradient-check precision)."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def epoch(self, epoch, start=0):
        for x, y in self.batches.epoch(epoch, start):
            yield x.astype(np.float64), y


def equivalence(out, own_dropout=False, steps=3):
    comm = world()
    if own_dropout:
        comm.share_dropout = lambda model: None
    cfg = model_config(4, 2, 67, (8, 12, 16, 12, 8), 32, weight_std=0.1, lrn_alpha=1e-2)
    minidl.random.manual_seed(0)                                   # dropout masks
    model = AlexNet(cfg, devices=("cpu:0", "cpu:1"), dtype=np.float64, seed=0)
    opt = minidl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.0005)
    batches = loader.Loader(synthetic_split(BATCH * steps), BATCH, train=True, crop=67, seed=0,
                            workers=0, shard=comm.shard)          # this rank's 128 / R images
    trainer = Trainer(model, opt, Float64(batches), out,
                      TrainConfig(max_epochs=1, progress=False, checkpoint_minutes=1e9), comm=comm)
    trainer.fit()


def nccl():
    import cupy
    from cupy.cuda import nccl as stand_in
    from minidl.nn import Parameter
    assert cupy.__standin__
    comm = world()
    devices = comm.local_devices(["cuda:0", "cuda:1"])      # rank 1 on a machine: cuda:2, cuda:3
    shapes = [(300,), (20, 5), (7,)]
    params = [Parameter(np.zeros(s, np.float32), device=d) for d in devices for s in shapes]
    grads = [np.random.default_rng([r, i]).normal(size=p.shape).astype(np.float32)
             for r in range(comm.size) for i, p in enumerate(params)]
    mine = grads[comm.rank * len(params):(comm.rank + 1) * len(params)]
    for p, g in zip(params, mine):
        with p.device:
            p.grad = cupy.asarray(g)
    cupy.standin.reset()
    comm.allreduce_gradients(params)
    counts = cupy.standin.counters()
    assert counts["d2h"] == 0 and counts["h2d"] == 0, counts          # never through the host
    assert comm._nccl is not None and len(comm._nccl.comms) == 2       # one per column device
    for i, p in enumerate(params):
        want = sum(grads[r * len(params) + i] for r in range(comm.size)) / comm.size
        np.testing.assert_allclose(p.grad.get(), want, rtol=1e-6)
        assert str(p.grad.device.id) == str(p.device.index)
    print(f"ok allreduce rank {comm.rank} on {devices} with CuPy {cupy.__version__}", flush=True)

    group = comm._nccl.comms[params[0].device]
    host = np.ones(4, np.float32)
    with params[0].device:
        stream = cupy.cuda.get_current_stream().ptr
        for bad, error in ((host.ctypes.data, TypeError),                       # a host array
                           (params[-1].grad.data.ptr, ValueError)):             # another device
            try:
                group.allReduce(bad, bad, 4, stand_in.NCCL_FLOAT32, stand_in.NCCL_SUM, stream)
            except error as e:
                print(f"ok refused {type(e).__name__}: {e}", flush=True)
        x = cupy.full(3, float(comm.rank + 1), np.float64)
        group.bcast(x.data.ptr, x.size, stand_in.NCCL_FLOAT64, 0, stream)
        assert (x.get() == 1.0).all()
    print("ok bcast", flush=True)


def fault_at(epoch_batch, rank, kill):
    run = loader.Loader.epoch

    def epoch(self, epoch, start=0):
        for i, batch in enumerate(run(self, epoch, start), start):
            if self.recipe.train and (epoch, i) == epoch_batch and world().rank == rank:
                if kill:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError(f"a failure planted at epoch {epoch}, batch {i}")
            yield batch
    loader.Loader.epoch = epoch


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "nccl":
        nccl()
        sys.exit(0)
    if mode == "threads":
        from threadpoolctl import threadpool_info
        comm = world()
        blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        print(f"threads {comm.rank} {minidl.get_num_threads()} {blas}", flush=True)
        sys.exit(0)
    if mode == "equivalence":
        equivalence(args[0], own_dropout="--own-dropout" in args)
        sys.exit(0)
    if mode != "train":
        sys.exit(cli.main([mode, *args]))
    split = args.index("--")
    own = args[:split]
    rank = int(own[own.index("--rank") + 1]) if "--rank" in own else 0
    for flag, kill in (("--kill-at", True), ("--fail-at", False)):
        if flag in own:
            i = own.index(flag)
            fault_at((int(own[i + 1]), int(own[i + 2])), rank, kill)
    sys.exit(cli.main(["train", *args[split + 1:]]))

"""Data parallelism (alexnet.distributed): R processes under `mpiexec` train the
model one process would, resume after SIGKILL on any rank (on another R too),
and a bad setup is an error on every rank, never a hang.

The multi-process tests start `mpiexec -n 2` (MPICH from the `mpi` extra, on
loopback); they need mpi4py and an mpiexec, and fail, not skip, without them.
Every subprocess has a timeout.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import Tensor, functions as F, nn
from alexnet import distributed
from alexnet.data.loader import Loader
from alexnet.data.prepare import CacheSplit
from alexnet.train import read_metrics
from test_imagenet_train import SMALL, cache  # noqa: F401 (cache: the prepared-cache fixture)
from test_train import hold_lock

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).with_name("_mpi_script.py")
TIMEOUT = 120            # seconds for any one launch; a hang fails the test instead
RUN = ["--batch", "8", "--epochs", "2", "--workers", "1", "--checkpoint-steps", "1", *SMALL,
       "--fc-features", "16"]


def mpiexec():
    """The mpiexec of the `mpi` extra (beside this Python), else the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    assert found, ("no mpiexec: install the MPI extra (pip install -e \".[test,mpi]\": "
                   "mpi4py and the mpich wheel, which puts mpiexec beside python)")
    return found


def user_environment():
    """The environment a user has: no launcher's variables, no MINIDL_* (tests that set
    MINIDL_NUM_THREADS once hid a crash of the documented command), no BLAS counts."""
    drop = (*distributed.LAUNCHER_ENV, *distributed.BLAS_VARIABLES)
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MINIDL_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
    return env


def documented(ranks, *args):
    """docs/howto_distributed.md's command: mpiexec -n R python -m alexnet ARGS."""
    return [mpiexec(), "-n", str(ranks), sys.executable, "-m", "alexnet", *args]


def launch(ranks, *args, extra_ranks=(), standin_devices=None, standin_cupy=14):
    """Run tests/_mpi_script.py ARGS on `ranks` processes (0: no mpiexec at all).
    extra_ranks: more (n, args) program blocks of an MPMD launch (`: -n 1 ...`).
    standin_devices: import the CuPy stand-in (tests/standin) as cupy, with that
    many devices per process (real NCCL would need a GPU per rank and column),
    acting as CuPy `standin_cupy` (13 or 14) where the two differ."""
    env = user_environment()
    if standin_devices:
        env.update(PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "standin"), str(ROOT)]),
                   MINIDL_STANDIN_DEVICES=str(standin_devices),
                   MINIDL_STANDIN_CUPY=str(standin_cupy))
    program = [sys.executable, str(SCRIPT), *args]
    cmd = program if ranks == 0 else [mpiexec(), "-n", str(ranks), *program]
    for n, more in extra_ranks:
        cmd += [":", "-n", str(n), sys.executable, str(SCRIPT), *more]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=ROOT)


def weights(run):
    return minidl.serialize.load(Path(run) / "checkpoint.npz")


def max_difference(a, b):
    return max(float(np.abs(a["model"][k] - b["model"][k]).max()) for k in a["model"])


def untimed(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in records]


# ------------------------------------------------------------------- in one process
def test_mpi4py_and_mpiexec_are_installed():
    """The `mpi` extra (CI installs it); checked in a child, so that this process
    never initialises MPI."""
    code = "from mpi4py import MPI; print(MPI.Get_library_version())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0 and "MPI" in out.stdout, (
        f"mpi4py does not import ({out.stderr.strip()[-300:]}); install the MPI extra: "
        "pip install -e \".[test,mpi]\"")
    assert Path(mpiexec()).exists()


def test_the_shares_of_a_batch_put_together_are_the_batch_of_one_process():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 48, 48, 3), dtype=np.uint8)
    split = CacheSplit(images, np.arange(40) % 3, images.mean(0).astype(np.float32),
                       np.array([0.2, 0.02, 0.005]), np.linalg.qr(rng.normal(size=(3, 3)))[0])
    for kind in ({"train": True, "crop": 40}, {"train": False, "crop": 40}):
        whole = [(x.copy(), y.copy()) for x, y in Loader(split, 12, seed=3, workers=0, **kind)]
        for ranks in (2, 4, 5):
            shares = [[(x.copy(), y.copy()) for x, y in
                       Loader(split, 12, seed=3, workers=0, shard=(r, ranks), **kind).epoch(0)]
                      for r in range(ranks)]
            for b, (x, y) in enumerate(whole):    # eval's last batch of 4 leaves a share empty
                parts = [s[b] for s in shares if b < len(s) and len(s[b][1])]
                np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
                np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    with Loader(split, 12, seed=3, crop=40, workers=1, shard=(1, 2), copy=True) as loader:
        from_worker = [x for x, _ in loader.epoch(0)]                 # a worker process's
    in_process = Loader(split, 12, seed=3, crop=40, workers=0, shard=(1, 2)).epoch(0)
    assert len(from_worker) == 3 and all(np.array_equal(a, b) for a, (b, _) in
                                         zip(from_worker, in_process))
    with pytest.raises(ValueError, match="0 <= index < count"):
        Loader(split, 12, crop=40, shard=(2, 2))


def test_dropout_shares_are_the_rows_of_the_whole_batch_mask():
    x = np.ones((8, 5), np.float32)
    minidl.random.manual_seed(7)
    whole = F.dropout(Tensor(x), 0.5).data
    shares = []
    for r in range(4):
        minidl.random.manual_seed(7)
        shares.append(F.dropout(Tensor(x[2 * r:2 * r + 2]), 0.5, share=(r, 4)).data)
    np.testing.assert_array_equal(np.concatenate(shares), whole)
    minidl.random.manual_seed(7)
    own = F.dropout(Tensor(x[2:4]), 0.5).data          # without its share: rank 0's rows
    assert not np.array_equal(own, whole[2:4])
    with pytest.raises(ValueError, match="0 <= index < count"):
        F.dropout(Tensor(x), 0.5, share=(4, 4))


def test_gradient_buckets_are_few_flat_and_leave_the_mean_in_each_grad():
    params = [nn.Parameter(np.full(shape, 1.0, np.float32)) for shape in
              ((100,), (50, 4), (3,), (1000,))]
    for i, p in enumerate(params):
        p.grad = np.full(p.shape, i + 1.0, np.float32)
    big = params[3].grad
    buckets = distributed.GradientBuckets(params, bucket_bytes=1000)   # 250 float32
    # 4000 bytes of the last gradient make a bucket of their own, summed where they lie
    assert [[i for i, *_ in spans] for *_, spans, _ in buckets.buckets] == [[0], [3], [1, 2]]
    calls = []

    def fake_allreduce(flat, device):          # 3 ranks that all hold the same gradients
        calls.append(flat.size)
        flat *= 3
    buckets.reduce(params, fake_allreduce, 1 / 3)
    assert calls == [100, 1000, 203] and buckets.nbytes == 4 * 303
    for i, p in enumerate(params):
        np.testing.assert_allclose(p.grad, i + 1.0, rtol=1e-7)
        assert p.grad.shape == p.shape
    assert params[3].grad is big                                       # no copy
    assert buckets.fits(params) and not buckets.fits(params[:2])


def test_one_process_without_a_launcher_imports_no_mpi():
    env = {k: v for k, v in os.environ.items() if k not in distributed.LAUNCHER_ENV}
    code = ("import sys; from alexnet.distributed import world; c = world(); "
            "print(c.size, c.is_root, c.shard, 'mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.stdout.split() == ["1", "True", "(0,", "1)", "False"], out.stderr


def test_a_launcher_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)      # import mpi4py fails
    with pytest.raises(RuntimeError, match=r"mpi4py is not importable.*pip install"):
        distributed._connect()


def test_the_nccl_id_travels_as_bytes_and_reaches_each_cupy_in_the_form_it_takes():
    """CuPy 14: get_unique_id() gives bytes and NcclCommunicator takes bytes; CuPy 13: a
    tuple of ints, the id's C chars, signed on x86-64 and unsigned on aarch64 (a char
    out of range: OverflowError in CuPy's compiled code, before any NCCL call)."""
    raw = bytes(range(0, 256, 2))                              # 128 bytes, half above 127
    signed = tuple(b - 256 if b > 127 else b for b in raw)
    for given in (raw, signed, tuple(raw)):                    # CuPy 14; 13 on x86-64, aarch64
        assert distributed.nccl_id_bytes(given) == raw

    class Nccl:
        """NcclCommunicator's commId as one CuPy release on one platform takes it."""

        def __init__(self, form, lowest=-128):
            self.form, self.lowest = form, lowest

        def NcclCommunicator(self, ndev, commId, rank):
            if type(commId) is not self.form:
                raise TypeError(f"Argument 'commId' has incorrect type (expected "
                                f"{self.form.__name__}, got {type(commId).__name__})")
            if self.form is tuple and not all(self.lowest <= v < self.lowest + 256
                                              for v in commId):
                raise OverflowError("value too large to convert to char")
            return ndev, commId, rank

    for nccl, major, want in ((Nccl(bytes), 14, raw), (Nccl(tuple, -128), 13, signed),
                              (Nccl(tuple, 0), 13, tuple(raw))):
        assert distributed.nccl_communicator(nccl, major, 2, raw, 1) == (2, want, 1)


# ------------------------------------------------------------------- under mpiexec
def test_two_ranks_of_64_images_give_the_weights_of_one_process_of_128(tmp_path):
    """float64, 3 SGD steps of batch 128, augmentation and dropout on: to 1e-12."""
    one = launch(0, "equivalence", str(tmp_path / "one"))
    two = launch(2, "equivalence", str(tmp_path / "two"))
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a["train"]["step"] == b["train"]["step"] == 3
    assert max_difference(a, b) < 1e-12
    assert a["rng"] == b["rng"]                     # the same dropout draws, all of them
    assert untimed(a["train"]["history"])[0] == pytest.approx(untimed(b["train"]["history"])[0])
    # the check can fail: ranks that draw dropout masks for their own images only
    # train another model
    alone = launch(2, "equivalence", str(tmp_path / "alone"), "--own-dropout")
    assert alone.returncode == 0, alone.stderr
    assert max_difference(a, weights(tmp_path / "alone")) > 1e-6


@pytest.fixture(scope="module")
def straight(cache, tmp_path_factory):
    """`alexnet train` on 2 ranks, uninterrupted: 2 epochs of 6 batches of 8, started
    with the documented command in the environment a user has."""
    out = tmp_path_factory.mktemp("straight")
    run = subprocess.run(documented(2, "train", "--data-dir", str(cache), "--output-dir",
                                    str(out), *RUN),
                         env=user_environment(), capture_output=True, text=True,
                         timeout=TIMEOUT, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("epoch 2:") == 2    # rank 0 alone logs: the epoch line + summary
    return out


def test_the_ranks_of_a_machine_share_its_cores_minidl_and_blas_alike():
    """Each of R ranks on a machine runs cores // R threads in minidl's ops and in the
    BLAS: with one minidl thread the BLAS would take every core back, and R ranks of
    spinning BLAS threads made 2 ranks on 2 cores 4.5x slower than one process."""
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    run = launch(2, "threads")
    assert run.returncode == 0, run.stderr
    # the ranks print at once: their lines may run together in mpiexec's output
    lines = sorted(re.findall(r"threads \d+ \d+ \[\d+\]", run.stdout))
    assert lines == [f"threads {r} {share} [{share}]" for r in range(2)], run.stdout


def test_sigkill_on_one_rank_then_resume_continues_the_identical_run(straight, cache, tmp_path):
    killed = tmp_path / "killed"
    run = launch(2, "train", "--kill-at", "1", "2", "--rank", "1", "--",
                 "--data", str(cache), "--out", str(killed), *RUN)
    assert run.returncode != 0                  # mpiexec stopped rank 0 too, in time
    state = weights(killed)                     # rank 0's last checkpoint, whole
    # rank 0 saves after each step; stopped while writing the one after batch 1, it
    # leaves the one before (writes are atomic)
    assert (state["train"]["epoch"], state["train"]["batch"]) in ((1, 1), (1, 2))
    other_r = tmp_path / "other_r"
    shutil.copytree(killed, other_r)

    resumed = launch(2, "train", "--", "--data", str(cache), "--out", str(killed), *RUN,
                     "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(straight), weights(killed)
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k], b["model"][k], err_msg=k)   # bit for bit
    for va, vb in zip(a["optimizer"]["velocity"], b["optimizer"]["velocity"]):
        np.testing.assert_array_equal(va, vb)
    assert a["rng"] == b["rng"] and a["train"]["step"] == b["train"]["step"] == 12
    assert untimed(read_metrics(straight)) == untimed(read_metrics(killed))

    # the same checkpoint resumed by ONE process: the same run up to float32 rounding
    alone = launch(0, "train", "--", "--data", str(cache), "--out", str(other_r), *RUN,
                   "--resume")
    assert alone.returncode == 0, alone.stderr
    c = weights(other_r)
    assert 0 < max_difference(a, c) < 1e-5 and a["rng"] == c["rng"]
    for ra, rc in zip(untimed(read_metrics(straight)), untimed(read_metrics(other_r))):
        assert ra == pytest.approx(rc, rel=1e-5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_rank_after_the_same_step_and_resume_goes_on(
        cache, tmp_path, signum):
    """Ctrl-C (SIGINT to mpiexec's process group, as a terminal sends it) or SIGTERM to
    mpiexec (a scheduler's stop): mpiexec forwards it to every rank, the ranks stop
    after the same step, rank 0 saves there, the job exits with the signal's status,
    rank 0 alone says so, and the resume command it gives works."""
    out = tmp_path / "run"
    args = ["train", "--data-dir", str(cache), "--output-dir", str(out), "--batch", "8",
            "--epochs", "100", "--workers", "1", *SMALL, "--fc-features", "16"]
    proc = subprocess.Popen(documented(2, *args), env=user_environment(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline:
            time.sleep(0.05)                          # epoch 1 done: the ranks train
        time.sleep(0.5)
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err
    assert err.count(f"interrupted by {name}; a checkpoint was saved") == 1, err   # rank 0's
    for bad in ("KeyboardInterrupt", "Traceback", "MPI_Abort", "error:"):
        assert bad not in err, err
    train = weights(out)["train"]
    said = err.split("checkpoint.npz (")[1].split(")")[0]
    assert said == (f"after epoch {train['epoch']}" if train["batch"] == 0 else
                    f"epoch {train['epoch'] + 1}, after batch {train['batch']} of 6")
    assert err.strip().splitlines()[-1].endswith(" ".join(args) + " --resume")
    more = [*args[:args.index("--epochs")], "--epochs", str(train["epoch"] + 1),
            *args[args.index("--epochs") + 2:], "--resume"]
    resumed = subprocess.run(documented(2, *more), env=user_environment(), cwd=ROOT,
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    assert weights(out)["train"]["step"] == 6 * (train["epoch"] + 1)


def test_an_error_on_one_rank_stops_every_rank_and_keeps_the_checkpoint(cache, tmp_path):
    run = launch(2, "train", "--fail-at", "0", "3", "--rank", "1", "--",
                 "--data", str(cache), "--out", str(tmp_path), *RUN)
    assert run.returncode != 0
    assert "rank 1 of 2" in run.stderr and "a failure planted" in run.stderr
    assert "--resume" in run.stderr
    state = weights(tmp_path)                   # whole: the last one written, or the one before
    assert (state["train"]["epoch"], state["train"]["batch"]) in ((0, 2), (0, 3))


def test_ranks_given_other_arguments_or_another_cache_fail_together(cache, tmp_path):
    args = ["train", "--", "--data", str(cache), "--out", str(tmp_path / "a"), *RUN]
    run = launch(1, *args, extra_ranks=[(1, args + ["--lr", "0.02"])])
    assert run.returncode != 0
    said = "rank 1 of 2 was given another model, recipe or cache than rank 0: recipe.lr"
    assert run.stderr.count(said) == 2, run.stderr               # on both ranks

    other = tmp_path / "other_cache"                            # another cache's rows
    shutil.copytree(cache, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["splits"]["train"]["fingerprint"] = "0" * 40
    (other / "manifest.json").write_text(json.dumps(manifest))
    other_args = ["train", "--", "--data", str(other), "--out", str(tmp_path / "a"), *RUN]
    run = launch(1, *args, extra_ranks=[(1, other_args)])
    assert run.returncode != 0 and run.stderr.count("data.train:") == 2, run.stderr
    assert not (tmp_path / "a" / "checkpoint.npz").exists()


def test_a_batch_the_ranks_cannot_share_and_a_run_in_use_are_refused_on_every_rank(
        straight, cache, tmp_path):
    run = launch(3, "train", "--", "--data", str(cache), "--out", str(tmp_path), *RUN)
    assert run.returncode != 0
    assert run.stderr.count("the global batch of 8 images cannot be shared by 3 processes") == 3
    assert "1, 2, 4, 8" in run.stderr
    run = launch(2, "train", "--", "--data", str(cache), "--out", str(straight), *RUN)
    assert run.returncode != 0 and run.stderr.count("already holds a run") == 2, run.stderr
    holder = hold_lock(tmp_path / "busy")                  # another job trains there
    try:
        run = launch(2, "train", "--", "--data", str(cache), "--out", str(tmp_path / "busy"),
                     *RUN)
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode != 0, run.stderr
    assert run.stderr.count(f"is in use: another process trains there (pid {holder.pid}") == 2
    run = launch(2, "evaluate", str(straight), "--data", str(cache), "--no-progress")
    assert run.returncode != 0 and run.stderr.count("only `alexnet train` runs over") == 2


# ------------------------------------------------------------------- NCCL, on the CuPy stand-in
# CuPy 14 hands NCCL's unique id over as bytes, CuPy 13 as a tuple of ints: both run
CUPY_MAJORS = pytest.mark.parametrize("cupy_major", [13, 14], ids=["cupy13", "cupy14"])


@CUPY_MAJORS
def test_nccl_sums_each_column_on_its_device_and_never_through_the_host(cupy_major):
    """2 ranks x 2 column devices (rank 1 on a machine takes cuda:2, cuda:3); the
    stand-in's NCCL refuses a host pointer and another device's array."""
    run = launch(2, "nccl", standin_devices=4, standin_cupy=cupy_major)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert f"ok allreduce rank 0 on ['cuda:0', 'cuda:1'] with CuPy {cupy_major}." in out
    assert f"ok allreduce rank 1 on ['cuda:2', 'cuda:3'] with CuPy {cupy_major}." in out
    assert out.count("ok refused TypeError: allReduce") == 2 and "not a device pointer" in out
    assert out.count("ok refused ValueError: The device where the array resides") == 2
    assert out.count("ok bcast") == 2


@CUPY_MAJORS
def test_training_over_nccl_gives_the_run_of_the_cpu(straight, cache, tmp_path, cupy_major):
    """`alexnet train --devices cuda:0,cuda:1` on 2 ranks of a 4-device machine (rank 1
    on cuda:2, cuda:3), the two columns' gradients summed by the stand-in's NCCL: the
    weights of the same run on the CPU (MPI), up to float32 rounding."""
    run = launch(2, "train", "--", "--data", str(cache), "--out", str(tmp_path), *RUN,
                 "--devices", "cuda:0,cuda:1", standin_devices=4, standin_cupy=cupy_major)
    assert run.returncode == 0, run.stderr
    a, b = weights(straight), weights(tmp_path)
    assert b["meta"]["devices"] == ["cuda:0", "cuda:1"]                # rank 0's
    assert max_difference(a, b) < 1e-5 and a["rng"] == b["rng"]

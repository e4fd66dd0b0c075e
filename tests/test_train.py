"""Training: the loop learns, checkpoints resume the identical run after a
SIGKILL, and a diverging loss stops cleanly keeping the last good state."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import Tensor, nn, optim
from alexnet.data.arrays import ArrayBatches
from alexnet.evaluate import evaluate, topk_errors
from alexnet.train import TrainConfig, Trainer, TrainingDiverged, read_metrics

SCRIPT = Path(__file__).with_name("_train_script.py")


def run_script(out, *extra):
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, str(SCRIPT), str(out), *extra], env=env,
                          capture_output=True, text=True, timeout=300)


def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path):
    straight = run_script(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    killed = run_script(tmp_path / "killed", "--kill-at", "1", "3")
    assert killed.returncode == -signal.SIGKILL
    state = minidl.serialize.load(tmp_path / "killed" / "checkpoint.npz")
    assert (state["train"]["epoch"], state["train"]["batch"]) == (1, 3)   # mid-epoch
    resumed = run_script(tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = minidl.serialize.load(tmp_path / "straight" / "final.npz")
    b = minidl.serialize.load(tmp_path / "killed" / "final.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)     # bit for bit
    # and the metrics of the interrupted epoch are those of the straight run
    def untimed(records):
        return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
                for r in records]
    assert untimed(read_metrics(tmp_path / "straight")) == untimed(read_metrics(tmp_path / "killed"))


def small_problem(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 4, n)
    x[np.arange(n), 0, 0, y] = 255              # the label is written into the image
    return x, y


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 4, weight_std=0.001)

    def forward(self, x):
        return self.fc(minidl.functions.flatten(x))


def test_training_drives_the_training_error_of_a_small_set_down(tmp_path):
    x, y = small_problem()
    model = Tiny()
    opt = optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=0)
    batches = ArrayBatches(x, y, x.mean(axis=0), batch_size=16)
    history = Trainer(model, opt, batches, tmp_path, TrainConfig(max_epochs=15, topk=(1,),
                                                                 progress=False)).fit()
    assert history[0]["train_top1"] > 0.4
    assert history[-1]["train_top1"] < 0.05
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 15 and json.loads(lines[-1])["epoch"] == 15


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = small_problem()
    model = Tiny()
    opt = optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=0)
    trainer = Trainer(model, opt, ArrayBatches(x, y, x.mean(axis=0), batch_size=16), tmp_path,
                      TrainConfig(max_epochs=1, topk=(1,), progress=False))
    trainer.fit()
    good = minidl.serialize.load(trainer.checkpoint_path)
    opt.lr = 1e6                                       # blow it up
    trainer.cfg.max_epochs = 5
    with pytest.raises(TrainingDiverged, match=r"(exploded|nan|inf).*last good checkpoint"):
        trainer.fit()
    after = minidl.serialize.load(trainer.checkpoint_path)
    np.testing.assert_array_equal(after["model"]["fc.weight"], good["model"]["fc.weight"])


def test_topk_errors_on_known_predictions():
    scores = np.array([[0.1, 0.5, 0.2, 0.15, 0.05, 0.0],     # label 1: top-1 right
                       [0.3, 0.25, 0.2, 0.1, 0.1, 0.05],     # label 4: 4th/5th (tie) -> top-5 right
                       [0.6, 0.1, 0.1, 0.1, 0.05, 0.01]])    # label 5: last -> both wrong
    labels = np.array([1, 4, 5])
    assert topk_errors(scores, labels, (1, 5)) == {1: 2, 5: 1}
    with pytest.raises(ValueError, match="expected scores"):
        topk_errors(scores, labels[:2])


def test_topk_ties_count_against_the_label():
    """A label is in the top k only if fewer than k other classes score at least as
    high: a net whose scores are all equal (zero or integer weights) is wrong on every
    image, never 0% error."""
    flat = np.zeros((4, 10))
    assert topk_errors(flat, np.array([0, 3, 7, 9]), (1, 5)) == {1: 4, 5: 4}
    scores = np.array([[2.0, 2.0, 1.0, 0.0, 0.0, 0.0],     # label 0 tied for the top with 1
                       [5.0, 1.0, 1.0, 1.0, 1.0, 1.0],     # label 5 tied with 4 others at 1
                       [5.0, 4.0, 1.0, 1.0, 1.0, 0.0]])    # label 3 tied 3rd-5th
    assert topk_errors(scores, np.array([0, 5, 3]), (1, 2, 5)) == {1: 3, 2: 2, 5: 1}
    # k at least the number of classes: every class is in the top k, ties or not;
    # a NaN label score never is
    assert topk_errors(np.zeros((2, 3)), np.array([0, 2]), (3, 5)) == {3: 0, 5: 0}
    assert topk_errors(np.array([[np.nan, 0.0, 0.0]]), np.array([0]), (3,)) == {3: 1}


def test_evaluate_averages_patches_before_deciding():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.zeros(1))
        def forward(self, x):   # logits straight from the "image"
            return Tensor(x.data.reshape(len(x.data), -1)[:, :3], device=x.device)
    # two patches of one image: patch 1 says class 0 weakly, patch 2 says class 2 strongly
    x = np.zeros((1, 2, 3, 1, 1), np.float32)
    x[0, 0, :, 0, 0] = [1.0, 0.0, 0.9]
    x[0, 1, :, 0, 0] = [0.0, 0.0, 5.0]
    r = evaluate(Fixed(), [(x, np.array([2]))], device="cpu", ks=(1,))
    assert r["top1"] == 0.0 and r["n"] == 1
    r = evaluate(Fixed(), [(x[:, 0], np.array([2]))], device="cpu", ks=(1,))
    assert r["top1"] == 1.0          # the first patch alone gets it wrong


def test_labels_out_of_range_stop_the_trainer_before_the_step(tmp_path):
    from alexnet.model import CifarNet
    x = np.zeros((4, 3, 32, 32), np.uint8)
    net = CifarNet(seed=0)
    batches = ArrayBatches(x, np.array([0, 1, 2, 10]), x.mean(axis=0), batch_size=4)
    trainer = Trainer(net, optim.SGD(net.parameters(), lr=0.01), batches, tmp_path,
                      TrainConfig(max_epochs=1, topk=(1,), progress=False))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\).*0 to 10"):
        trainer.fit()


# ----------------------------------------------------------------------------
# one stop path: Ctrl-C and SIGTERM (alexnet.stopping), one owner per run folder
# ----------------------------------------------------------------------------
class Signalling(ArrayBatches):
    """Batches that send this process `signum` at a chosen place: while batch `at`
    (epoch, index) is fetched, or inside the step that trains it ("step": from the
    forward pass), or while the epoch's evaluation runs ("eval")."""

    def __init__(self, *args, signum=signal.SIGTERM, at=None, where="fetch", times=1, **kw):
        super().__init__(*args, **kw)
        self.signum, self.at, self.where, self.times = signum, at, where, times
        self.current = None

    def send(self):
        for _ in range(self.times):
            os.kill(os.getpid(), self.signum)

    def epoch(self, epoch=0, start=0):
        for i, batch in enumerate(super().epoch(epoch, start), start):
            self.current = (epoch, i)
            if self.where == "fetch" and (epoch, i) == self.at:
                self.send()
            yield batch


def stoppable_run(out, max_epochs=2, **signalling):
    """A run with dropout (so the generator's state matters) whose data may signal."""
    from alexnet.model import CifarNet, CifarNetConfig
    from minidl import functions as F
    minidl.random.manual_seed(5)
    x, y = small_problem(48)
    x = np.repeat(np.repeat(x, 4, axis=2), 4, axis=3)               # (48, 3, 32, 32)
    model = CifarNet(CifarNetConfig(channels=(4, 4, 8), weight_stds=(0.01,) * 4), seed=1)
    batches = Signalling(x, y, x.mean(axis=0), batch_size=8, seed=3, **signalling)
    forward = model.forward

    def signalling_forward(t, probe=None):
        if batches.where == "step" and batches.current == batches.at and model.training:
            batches.send()                                           # inside the step
        return F.dropout(forward(t), 0.3, model.training)
    model.forward = signalling_forward
    opt = optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=0.0005)

    def on_eval(m):
        if batches.where == "eval" and batches.at == ("eval", len(trainer.state.history)):
            batches.send()
        return {"val_top1": evaluate(m, [(x[:16].astype(np.float32), y[:16])], ks=(1,))["top1"]}
    trainer = Trainer(model, opt, batches, out, TrainConfig(max_epochs=max_epochs, topk=(1,),
                                                            progress=False), evaluate=on_eval)
    return trainer


@pytest.mark.parametrize("signum,where,at,position", [
    (signal.SIGTERM, "fetch", (1, 3), (1, 3)),     # waiting for data: at once, 3 batches done
    (signal.SIGINT, "step", (1, 3), (1, 4)),       # inside a step: after it, 4 batches done
    (signal.SIGTERM, "eval", ("eval", 0), (0, 6)), # evaluating: epoch 1's 6 batches done
])
def test_a_signal_stops_with_a_checkpoint_and_the_run_resumes_identically(
        tmp_path, signum, where, at, position):
    from alexnet import stopping
    straight = stoppable_run(tmp_path / "straight")
    straight.fit()
    stopped = stoppable_run(tmp_path / "stopped", signum=signum, where=where, at=at)
    with stopping.signals(announce=False), pytest.raises(stopping.Interrupted) as e:
        stopped.fit()
    assert e.value.signum == signum and e.value.status == 128 + signum
    state = minidl.serialize.load(tmp_path / "stopped" / "checkpoint.npz")
    assert (state["train"]["epoch"], state["train"]["batch"]) == position
    assert str(tmp_path / "stopped" / "checkpoint.npz") in e.value.saved
    assert not (tmp_path / "stopped" / "train.lock").exists()          # released
    resumed = stoppable_run(tmp_path / "stopped")
    assert resumed.resume()
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)           # bit for bit
    assert minidl.random.get_state() == minidl.serialize.load(
        tmp_path / "straight" / "checkpoint.npz")["rng"]

    def untimed(records):
        return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
                for r in records]
    assert untimed(read_metrics(tmp_path / "straight")) == \
        untimed(read_metrics(tmp_path / "stopped"))


def test_a_second_signal_inside_a_step_stops_at_once_and_saves_nothing(tmp_path):
    from alexnet import stopping
    first = stoppable_run(tmp_path, max_epochs=1)
    first.fit()
    before = (tmp_path / "checkpoint.npz").read_bytes()
    again = stoppable_run(tmp_path, max_epochs=2, signum=signal.SIGINT, where="step", at=(1, 2),
                          times=2)
    assert again.resume()
    with stopping.signals(announce=False), pytest.raises(stopping.Interrupted) as e:
        again.fit()
    assert e.value.saved is None and e.value.status == 130
    assert (tmp_path / "checkpoint.npz").read_bytes() == before      # the half step not saved


HOLD = ("import sys, time; from alexnet.train import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(120)")


def hold_lock(folder):
    """Another process holding `folder`'s RunLock (as a training process does)."""
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=root))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_folder_has_one_owner_and_a_killed_owner_leaves_no_lock(tmp_path):
    from alexnet.train import LOCK, RunInUse, RunLock
    holder = hold_lock(tmp_path)
    try:
        trainer = stoppable_run(tmp_path, max_epochs=1)
        with pytest.raises(RunInUse) as e:
            trainer.fit()
        msg = str(e.value)
        assert f"pid {holder.pid}" in msg and "RunLock(sys.argv[1])" in msg       # the holder
        assert f"kill -INT {holder.pid}" in msg and "another --output-dir" in msg
        assert not (tmp_path / "checkpoint.npz").exists()
    finally:
        holder.kill()                                      # SIGKILL: no cleanup at all
        holder.wait()
    assert (tmp_path / LOCK).exists()                      # the file stays, the lock does not
    trainer.fit()
    assert (tmp_path / "checkpoint.npz").exists() and not (tmp_path / LOCK).exists()
    with RunLock(tmp_path), RunLock(tmp_path):             # re-entrant in one process
        assert (tmp_path / LOCK).exists()
    assert not (tmp_path / LOCK).exists()

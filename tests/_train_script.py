"""A tiny training run for tests/test_train.py, run in a subprocess.

    python _train_script.py OUT_DIR [--kill-at EPOCH BATCH] [--resume]

With --kill-at, the process SIGKILLs itself when it is about to read that
batch (mid-epoch, checkpoints written after every step): the hardest stop
there is, no cleanup, no finally blocks.
"""
import os
import signal
import sys

import numpy as np

import minidl
from minidl import optim
from alexnet.data.arrays import ArrayBatches
from alexnet.model import CifarNet, CifarNetConfig
from alexnet.train import TrainConfig, Trainer


def data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 96)
    x[np.arange(96), y % 3, :8, :8] = 255          # something learnable
    return x, y


class KillingBatches(ArrayBatches):
    kill_at = None

    def epoch(self, epoch=0, start=0):
        for i, batch in enumerate(super().epoch(epoch, start), start):
            if self.kill_at == (epoch, i):
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


def main(out, kill_at=None, resume=False):
    minidl.random.manual_seed(5)
    x, y = data()
    model = CifarNet(CifarNetConfig(channels=(4, 4, 8), weight_stds=(0.01,) * 4), seed=1)
    # dropout so that the global RNG state matters for an exact resume
    from minidl import functions as F
    forward = model.forward
    model.forward = lambda t, probe=None: F.dropout(forward(t), 0.3, model.training)
    opt = optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=0.0005)
    batches = KillingBatches(x, y, x.mean(axis=0), batch_size=16, seed=3)
    batches.kill_at = kill_at
    trainer = Trainer(model, opt, batches, out,
                      TrainConfig(max_epochs=3, checkpoint_steps=1, topk=(1,), progress=False))
    if resume:
        assert trainer.resume(), "expected a checkpoint to resume from"
    trainer.fit()
    minidl.serialize.save(os.path.join(out, "final.npz"), dict(model.state_dict()))


if __name__ == "__main__":
    args = sys.argv[1:]
    kill = None
    if "--kill-at" in args:
        i = args.index("--kill-at")
        kill = (int(args[i + 1]), int(args[i + 2]))
    main(args[0], kill, "--resume" in args)

"""`alexnet train` run in a subprocess for tests/test_imagenet_train.py.

    python _imagenet_train_script.py [--kill-at EPOCH BATCH] -- ARGS OF `alexnet train`

With --kill-at, the process SIGKILLs itself when the training loader is about to
hand out that batch (checkpoints are written after every step): the hardest stop
there is, no cleanup, no finally blocks, loader workers orphaned.
"""
import os
import signal
import sys

from alexnet import cli
from alexnet.data import loader


def kill_at(epoch_batch):
    run = loader.Loader.epoch

    def epoch(self, epoch, start=0):
        for i, batch in enumerate(run(self, epoch, start), start):
            if self.recipe.train and (epoch, i) == epoch_batch:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch
    loader.Loader.epoch = epoch


if __name__ == "__main__":
    args = sys.argv[1:]
    split = args.index("--")
    if "--kill-at" in args[:split]:
        i = args.index("--kill-at")
        kill_at((int(args[i + 1]), int(args[i + 2])))
    sys.exit(cli.main(["train", *args[split + 1:]]))

"""Mini-batches from images held in memory (CIFAR-10), in the order the trainer expects.

The order of an epoch is a permutation drawn from (seed, epoch) alone, so
batch i of epoch e is the same in a fresh run and in a resumed one.
"""
from __future__ import annotations

import numpy as np


class ArrayBatches:
    """Batches of (x - mean as float32 NCHW, labels) from uint8 arrays.

    Args:
        x: (N, C, H, W) uint8 images.
        y: (N,) integer labels.
        mean: (C, H, W) mean image subtracted from every image (Section 2).
        batch_size: 128 in the paper; the last batch of an epoch may be smaller.
        seed: the epoch order is ``default_rng([seed, epoch]).permutation(N)``.
        shuffle: False keeps file order (evaluation).
    """

    def __init__(self, x, y, mean, batch_size=128, seed=0, shuffle=True):
        if len(x) != len(y):
            raise ValueError(f"ArrayBatches: expected as many labels as images, found "
                             f"{len(x)} images and {len(y)} labels")
        if batch_size < 1:
            raise ValueError(f"ArrayBatches: batch_size must be >= 1, found {batch_size}")
        self.x, self.y = x, np.asarray(y, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def order(self, epoch):
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def epoch(self, epoch=0, start=0):
        order = self.order(epoch)
        for i in range(start, len(self)):
            idx = np.sort(order[i * self.batch_size:(i + 1) * self.batch_size])
            x = self.x[idx].astype(np.float32)
            x -= self.mean                                    # (B, C, H, W) float32
            yield x, self.y[idx]

    def __iter__(self):
        return self.epoch(0)

"""Datasets of the paper: CIFAR-10 (Figure 1) and ILSVRC (Sections 2 and 4.1)."""

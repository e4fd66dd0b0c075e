"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) on minidl: the network, its
CIFAR-10 Figure 1 experiment, and the ImageNet pipeline."""
__version__ = "0.1.0"

"""Task functions for the executors' tests; no imports, so a spawned worker starts fast."""


def add_shared(shared, x):
    return shared["base"] + x


def pid(x):
    import os

    return os.getpid(), x


def threads():
    import torch

    return torch.get_num_threads()

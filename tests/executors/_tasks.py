"""Task functions for the executors' tests; no imports, so a spawned worker starts fast."""


def add_shared(shared, x):
    return shared["base"] + x


def pid(x):
    import os

    return os.getpid(), x


def threads():
    import torch

    return torch.get_num_threads()


def sleep_reporting(path, seconds):
    """Write this worker's process id to ``path``, then sleep (a long task to cancel)."""
    import os
    import time

    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)

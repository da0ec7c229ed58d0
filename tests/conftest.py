"""Shared test set-up: one torch thread (2 shared cores: threads only contend on tiny ops)."""

import torch

torch.set_num_threads(1)

"""Theory tests evaluate many small tensors: one torch thread is much faster for them than
several threads competing for a busy machine's cores. Restored after each test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and the test machine is shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def torch_ops(monkeypatch):
    """The probe without the compiled one-pass reduction (reducers.FUSED): torch's ops, as
    where gradprobe was installed without a C compiler."""
    from gradprobe.probe import reducers

    monkeypatch.setattr(reducers, "FUSED", None)

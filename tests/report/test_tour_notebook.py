"""examples/tour.ipynb runs top to bottom in a fresh kernel (nbclient); any cell error fails."""

from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' (nbclient)")
nbformat = pytest.importorskip("nbformat")

TOUR = Path(__file__).parents[2] / "examples" / "tour.ipynb"


def test_tour_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: one thread, as in conftest
    nb = nbformat.read(TOUR, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(images) >= 3 and html  # the figures, and the check result's rich display
    assert not [o for o in outputs if o.get("output_type") == "error"]

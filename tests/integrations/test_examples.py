"""Every integration example in examples/ runs as a user would run it."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NEEDS = {
    "tensorboard_example.py": ["tensorboard"],
    "wandb_example.py": ["wandb"],
    "lightning_example.py": ["lightning"],
    "huggingface_example.py": ["transformers", "accelerate"],
    "ddp_example.py": [],
}


def test_every_example_script_is_listed_here():
    assert {p.name for p in EXAMPLES.glob("*_example.py")} == set(NEEDS)


@pytest.mark.parametrize("script", sorted(NEEDS))
def test_example_runs(script, tmp_path):
    missing = [m for m in NEEDS[script] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (pip install 'gradprobe[...]')")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.strip(), "the example prints what it did"

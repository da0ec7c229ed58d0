"""gradprobe imports, and its adapters load, without any optional package installed."""

import subprocess
import sys
import textwrap

BLOCKED = ["tensorboard", "wandb", "lightning", "pytorch_lightning", "transformers"]


def test_import_without_extras_then_a_clear_error():
    code = textwrap.dedent(
        f"""
        import sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None  # as if not installed
        import gradprobe
        from gradprobe.integrations import tensorboard, wandb, lightning, huggingface
        from gradprobe.errors import GradprobeError
        run = "runs/never-read.sqlite"  # the package check comes first
        calls = [
            lambda: tensorboard.to_tensorboard(run, "tb"),
            lambda: wandb.to_wandb(run),
            lambda: lightning.GradprobeCallback,
            lambda: huggingface.GradprobeTrainerCallback,
        ]
        for call, extra in zip(calls, ["tensorboard", "wandb", "lightning", "hf"]):
            try:
                call()
            except GradprobeError as err:
                assert f"pip install 'gradprobe[{{extra}}]'" in str(err), err
            else:
                raise AssertionError(extra)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"

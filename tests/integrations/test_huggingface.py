"""GradprobeTrainerCallback in a Hugging Face Trainer: a few CPU steps of a tiny model."""

import sys

import pytest
import torch

from gradprobe.errors import GradprobeError

transformers = pytest.importorskip("transformers", reason="needs the hf extra")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
        )

    def forward(self, x, labels=None):
        out = self.net(x)
        return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}


class Data(torch.utils.data.Dataset):
    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.x[i].sum(0, keepdim=True)}


def test_trainer_callback_watches_steps_and_logs_findings(tmp_path):
    from gradprobe.integrations.huggingface import GradprobeTrainerCallback

    torch.manual_seed(0)
    cb = GradprobeTrainerCallback()
    report_to = ["tensorboard"] if _has("tensorboard") else []
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=8,
        gradient_accumulation_steps=2, report_to=report_to, use_cpu=True, save_strategy="no",
        eval_strategy="steps", eval_steps=2, logging_steps=1, disable_tqdm=True,
        dataloader_num_workers=0,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=Tiny(), args=args, train_dataset=Data(), eval_dataset=Data(8), callbacks=[cb]
    )
    trainer.train()
    run = cb.run
    assert run.steps == [0, 1, 2, 3]  # one probe step per optimizer step
    # the loss: the mean of the step's micro-batch losses, as the Trainer logs it
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e and "step" in e]
    assert list(run.matrix("loss", "value")[2][0]) == pytest.approx(logged, rel=1e-5)
    lrs = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    assert list(run.matrix("lr", "value")[2][0]) == pytest.approx(lrs, rel=1e-9)
    assert run.matrix("grad_norm", "global")[1] == [0, 1, 2, 3]
    # the Trainer's optimizer and its hyper-parameters, as watch(optimizer=) records them
    assert run.meta["optimizer"]["type"] == type(trainer.optimizer.optimizer).__name__
    assert run.meta["optimizer"]["type"] == "AdamW"  # not accelerate's wrapper
    assert run.meta["optimizer"]["weight_decay"] == args.weight_decay
    _, _, calls = run.matrix("activation", "calls")
    assert (calls == 2).all()  # two micro-batches per step, no evaluation forwards
    assert len(cb.probe.hooks) == 0
    last = trainer.state.log_history[-1]
    assert "gradprobe/findings_error" in last and "gradprobe/findings" in last
    assert last["gradprobe/findings_error"] == sum(f.severity == "error" for f in cb.findings)
    if report_to:  # the run's numbers also went to TensorBoard, next to the Trainer's own
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        folders = {p.parent for p in tmp_path.rglob("events.out.tfevents.*")}
        ours = [f for f in folders if f.name == "gradprobe"]
        assert len(ours) == 1, folders
        ea = EventAccumulator(str(ours[0]), size_guidance={"scalars": 0})
        ea.Reload()
        norms = [e.value for e in ea.Scalars("gradprobe/param_grad/norm/net.0.weight")]
        _, _, ref = run.matrix("param_grad", "norm", role="param")
        assert norms == pytest.approx(list(ref[0]), rel=1e-6)


class Normalised(Tiny):
    """As Hugging Face's causal LMs: given ``num_items_in_batch`` (the labels of the whole
    accumulated step), the micro-batch's loss sum is divided by it."""

    def forward(self, x, labels=None, **kwargs):
        out = self.net(x)
        total = kwargs.get("num_items_in_batch")
        se = torch.nn.functional.mse_loss(out, labels, reduction="sum")
        return {"loss": se / total if total is not None else se / labels.numel(), "logits": out}


@pytest.mark.parametrize("accumulate", [1, 3])
def test_the_loss_of_a_model_given_num_items_in_batch_is_the_trainers(tmp_path, accumulate):
    """Regression: a model that divides by ``num_items_in_batch`` returns a share of the
    step's loss per micro-batch; their mean was recorded, 1/accumulate of the loss."""
    from gradprobe.integrations.huggingface import GradprobeTrainerCallback

    torch.manual_seed(0)
    cb = GradprobeTrainerCallback()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
        gradient_accumulation_steps=accumulate, report_to=[], use_cpu=True, save_strategy="no",
        logging_steps=1, disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=Normalised(), args=args, train_dataset=Data(), callbacks=[cb]
    )
    assert trainer.model_accepts_loss_kwargs  # the Trainer passes num_items_in_batch
    trainer.train()
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e and "step" in e]
    assert list(cb.run.matrix("loss", "value")[2][0]) == pytest.approx(logged, rel=1e-5)


def test_accelerates_grad_scaler_and_wrapped_optimizer_are_taken(tmp_path):
    """Under ``fp16=True`` the Trainer's optimizer is accelerate's wrapper, holding the
    GradScaler that scales the loss (``.scaler``) and the torch optimizer (``.optimizer``)."""
    from gradprobe.integrations.huggingface import GradprobeTrainerCallback

    class Wrapped:  # the two attributes of accelerate's AcceleratedOptimizer read here
        def __init__(self, optimizer, scaler):
            self.optimizer, self.scaler = optimizer, scaler
            self.param_groups = optimizer.param_groups

    model = Tiny()
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    opt = Wrapped(torch.optim.AdamW(model.parameters(), lr=1e-3), scaler)
    cb = GradprobeTrainerCallback()
    cb.on_train_begin(None, None, None, model=model, optimizer=opt)
    try:
        assert cb.probe._scaler is scaler and cb.run.meta["grad_scaler"] == "GradScaler"
        assert cb.run.meta["optimizer"]["type"] == "AdamW"
    finally:
        cb.probe._close(warn_empty=False)  # no step was trained


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_missing_package_names_the_pip_command(monkeypatch):
    import gradprobe.integrations.huggingface as mod

    monkeypatch.delitem(mod.__dict__, "GradprobeTrainerCallback", raising=False)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(GradprobeError, match=r"pip install 'gradprobe\[hf\]'"):
        from gradprobe.integrations.huggingface import GradprobeTrainerCallback  # noqa: F401

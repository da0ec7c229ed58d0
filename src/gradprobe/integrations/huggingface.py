"""``GradprobeTrainerCallback``: watch a Hugging Face ``Trainer``'s model, diagnose at the end.

>>> from gradprobe.integrations.huggingface import GradprobeTrainerCallback   # doctest: +SKIP
>>> Trainer(model, args, train_dataset=ds, callbacks=[GradprobeTrainerCallback()])  # doctest: +SKIP

One probe step per optimizer step (every micro-batch of a gradient-accumulation step lands
in the same probe step), with its loss (the mean of the ``loss`` the model returned for the
step's micro-batches, or their sum when the Trainer passed the model ``num_items_in_batch``:
then each is already divided by the whole step's count of labels — the loss the Trainer
logs either way) and the optimizer's learning rates at the step's start; evaluation
forwards are not recorded (the hooks only listen between
``on_step_begin`` and ``on_step_end``). At the end the findings go to ``state.log_history``
(the count per severity, and the findings' text), to the ``transformers`` logger, and, when
``report_to`` names them, to TensorBoard (``<logging_dir>/gradprobe``) and to the active
W&B run, with every recorded number (``log_run=True``). Under DDP/FSDP (``torchrun``) every
rank watches and the numbers are combined across ranks; rank 0 writes (``distributed``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..probe.schedules import DEFAULT
from ._common import ProbeOwner, finding_counts, learning_rates, require


def _build():
    transformers = require("transformers", "hf")

    class GradprobeTrainerCallback(ProbeOwner, transformers.TrainerCallback):
        """``every``, ``histograms``, ``path`` and ``**watch_options`` are those of
        :func:`gradprobe.watch`. After training: ``callback.run`` and ``callback.findings``."""

        def __init__(
            self, every=DEFAULT, histograms: bool = False, path=None, *, log_run: bool = True,
            distributed="auto", **watch_options,
        ) -> None:  # fmt: skip
            self._init_probe(every, histograms, path, log_run, distributed, watch_options)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._start_probe(model)
            self.probe.hooks.active = False  # listen from on_step_begin only
            self._optimizer, self._lrs, self._losses = kwargs.get("optimizer"), None, []
            self._note_optimizer(self._optimizer)
            # fp16: accelerate's optimizer wrapper holds the GradScaler that scales the loss
            self._use_scaler(getattr(self._optimizer, "scaler", None))
            # the loss the model returns (ModelOutput.loss); removed with the probe's hooks
            self.probe.hooks.forward(model, self._take_loss, "(model) loss", with_kwargs=True)
            self._summed = False

        def _take_loss(self, module, args, kwargs, output) -> None:
            if self.probe is None or not self.probe.hooks.active:
                return
            loss = getattr(output, "loss", None)
            if loss is None and isinstance(output, dict):
                loss = output.get("loss")
            if isinstance(loss, torch.Tensor) and loss.numel() == 1:
                self._losses.append(loss.detach().reshape(()))
                # given num_items_in_batch (the labels of the whole accumulated step), a model
                # divides its micro-batch's loss sum by it: the step's loss is their sum
                self._summed = kwargs.get("num_items_in_batch") is not None

        def on_step_begin(self, args, state, control, **kwargs):
            if self.probe is not None and not self.probe._closed:
                self.probe.hooks.active = True
                optimizer = kwargs.get("optimizer") or self._optimizer
                self._lrs = learning_rates(optimizer)
                self._note_optimizer(optimizer)
                self._losses = []

        def on_step_end(self, args, state, control, **kwargs):
            if self.probe is not None and not self.probe._closed:
                ls = self._losses
                if len(ls) > 1:
                    loss = torch.stack(ls).sum() if self._summed else torch.stack(ls).mean()
                else:
                    loss = ls[0] if ls else None
                self.probe.step(loss=loss, lr=self._lrs)
                self.probe.hooks.active = False
                self._losses = []

        def on_train_end(self, args, state, control, **kwargs):
            if not self._finish_probe() or not state.is_world_process_zero:
                return
            log = transformers.utils.logging.get_logger("gradprobe")
            for f in self.findings:
                log.warning("gradprobe: %s", f)
            entry = {**finding_counts(self.findings), "step": state.global_step}
            entry["gradprobe/findings"] = [str(f) for f in self.findings]
            state.log_history.append(entry)
            report_to = args.report_to or []
            report_to = [report_to] if isinstance(report_to, str) else report_to
            if "tensorboard" in report_to:
                from torch.utils.tensorboard import SummaryWriter

                from .tensorboard import to_tensorboard, write_findings

                folder = Path(getattr(args, "logging_dir", None) or args.output_dir) / "gradprobe"
                if self.log_run:
                    to_tensorboard(self.run, folder, findings=self.findings)
                else:
                    with SummaryWriter(str(folder)) as writer:
                        write_findings(writer, self.findings, state.global_step)
            if "wandb" in report_to:
                import wandb

                from .wandb import log_findings, to_wandb

                if wandb.run is not None and self.log_run:
                    to_wandb(self.run, wandb_run=wandb.run, findings=self.findings)
                elif wandb.run is not None:
                    log_findings(wandb.run, self.findings, state.global_step)

    # picklable: found again as this module's attribute
    GradprobeTrainerCallback.__qualname__ = "GradprobeTrainerCallback"
    return GradprobeTrainerCallback


def __getattr__(name: str):
    if name == "GradprobeTrainerCallback":
        cls = _build()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

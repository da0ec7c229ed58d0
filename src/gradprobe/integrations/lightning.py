"""``GradprobeCallback``: watch a LightningModule during ``fit``, diagnose at the end.

>>> from gradprobe.integrations.lightning import GradprobeCallback    # doctest: +SKIP
>>> trainer = L.Trainer(callbacks=[GradprobeCallback()])               # doctest: +SKIP

One probe step per optimizer step: per training batch (forward, backward and optimizer step
of that batch), or under ``accumulate_grad_batches=k`` per window of batches that ends in an
optimizer step (their forwards and backwards land in the same probe step, as in the
Hugging Face callback), with the step's loss (what ``training_step`` returned; under
accumulation the mean over the window's batches, from the ``loss/k`` Lightning hands
``on_train_batch_end``) and the first optimizer's learning rates as they were when the step's
first batch began; validation and sanity-check forwards are not recorded.
At the end of training the findings (and, with ``log_run=True``, every recorded number) go
through the trainer's loggers: a TensorBoardLogger gets event files, a WandbLogger gets W&B
history, any other logger gets ``log_metrics`` (the count of findings per severity, and the
scalars). Findings are also printed on rank 0. Under DDP/FSDP every rank watches and rank 0
writes (``distributed``).
"""

from __future__ import annotations

import importlib

import torch

from ..probe.schedules import DEFAULT
from ._common import ProbeOwner, finding_counts, learning_rates, records, require


def _lightning():
    """``lightning.pytorch`` (Lightning 2), else the older ``pytorch_lightning`` package."""
    try:
        return importlib.import_module("lightning.pytorch")
    except ImportError:
        pass
    try:
        return importlib.import_module("pytorch_lightning")
    except ImportError:
        return require("lightning.pytorch", "lightning", "lightning")  # raises, naming pip


def _build():
    pl = _lightning()

    class GradprobeCallback(ProbeOwner, pl.Callback):
        """Watch the LightningModule while it trains; findings through the trainer's loggers.

        ``every``, ``histograms``, ``path`` and ``**watch_options`` are those of
        :func:`gradprobe.watch`. ``log_run``: also log every recorded number at the end.
        After ``fit``: ``callback.run`` (the Run) and ``callback.findings``.
        """

        def __init__(
            self, every=DEFAULT, histograms: bool = False, path=None, *, log_run: bool = True,
            distributed="auto", **watch_options,
        ) -> None:  # fmt: skip
            super().__init__()
            self._init_probe(every, histograms, path, log_run, distributed, watch_options)

        # -- recording ----------------------------------------------------------------
        def on_train_start(self, trainer, pl_module) -> None:
            self._start_probe(pl_module)
            # "16-mixed" on a GPU: the loss is scaled before the backward
            plugin = getattr(getattr(trainer, "strategy", None), "precision_plugin", None)
            self._use_scaler(getattr(plugin, "scaler", None))
            self._lrs: list | None = None
            self._window: list = []  # the losses of the batches since the last optimizer step
            self._stepped = False

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if self._window:  # inside an accumulation window: the step's lr is its first's
                return
            optimizers = getattr(trainer, "optimizers", None) or []
            self._lrs = learning_rates(optimizers[0]) if optimizers else None
            if optimizers:
                self._note_optimizer(optimizers[0])

        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            self._stepped = True

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.probe is None:
                return
            loss = _loss_of(outputs)
            k = _accumulated(trainer, pl_module)
            if k == 1:  # (k may change between epochs: GradientAccumulationScheduler)
                self.probe.step(loss=loss, lr=self._lrs)
                self._window, self._stepped = [], False
                return
            self._window.append(loss)
            if self._stepped:  # this batch ended the window: one probe step for all of it
                got = [v for v in self._window if v is not None]
                # Lightning hands on_train_batch_end the loss divided by k (what it back-
                # propagates): k times their mean is the mean of the batches' losses
                mean = torch.stack(got).mean() * k if got else None
                self.probe.step(loss=mean, lr=self._lrs)
                self._window, self._stepped = [], False

        def on_validation_start(self, trainer, pl_module) -> None:
            if self.probe is not None:
                self.probe.hooks.active = False

        def on_validation_end(self, trainer, pl_module) -> None:
            if self.probe is not None and not self.probe._closed:
                self.probe.hooks.active = True

        def on_exception(self, trainer, pl_module, exception) -> None:
            if self.probe is not None:
                self.probe.close()  # the run stays readable; no diagnosis of a broken fit

        # -- the end: diagnose and log ----------------------------------------------------
        def on_train_end(self, trainer, pl_module) -> None:
            if not self._finish_probe() or not trainer.is_global_zero:
                return
            lines = [str(f) for f in self.findings] or ["no findings, gradients look healthy"]
            print("\n".join(f"gradprobe: {line}" for line in lines))
            for logger in trainer.loggers:
                _log(logger, self.run, self.findings, self.log_run)

    # picklable (ddp_spawn pickles callbacks): found again as this module's attribute
    GradprobeCallback.__qualname__ = "GradprobeCallback"
    return GradprobeCallback


def _accumulated(trainer, pl_module) -> int:
    """Batches per optimizer step: ``accumulate_grad_batches`` under automatic optimisation,
    1 otherwise (manual optimisation steps where the module says, every batch here)."""
    if not getattr(pl_module, "automatic_optimization", True):
        return 1
    k = getattr(trainer, "accumulate_grad_batches", 1)
    return k if isinstance(k, int) and k > 1 else 1


def _loss_of(outputs):
    """The loss ``training_step`` returned: a tensor, or the ``"loss"`` of a dict."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return loss.detach()
    return None


def _log(logger, run, findings, log_run: bool) -> None:
    kind = type(logger).__name__
    if kind == "TensorBoardLogger":
        from .tensorboard import to_tensorboard, write_findings

        if log_run:
            to_tensorboard(run, writer=logger.experiment, findings=findings)
        else:
            write_findings(logger.experiment, findings, run.steps[-1] if run.steps else 0)
            logger.experiment.flush()
        return
    if kind == "WandbLogger":
        from .wandb import log_findings, to_wandb

        if log_run:
            to_wandb(run, wandb_run=logger.experiment, findings=findings)
        else:
            log_findings(logger.experiment, findings, 0)
        return
    last = 0
    if log_run:
        for rec in records(run, histograms=False, prefix="gradprobe/"):
            logger.log_metrics(rec.scalars, step=rec.step)
            last = rec.step
    logger.log_metrics(finding_counts(findings), step=last)
    logger.save()


def __getattr__(name: str):
    if name == "GradprobeCallback":
        cls = _build()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

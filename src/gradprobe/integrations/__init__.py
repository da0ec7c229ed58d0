"""Where users train: thin adapters over a :class:`~gradprobe.Run`.

Each adapter lives in its own module and needs its own optional package, imported only when
the adapter is used (a missing one is a GradprobeError that names the pip command):

=================  =========================================  ==========================
module             what                                       extra
=================  =========================================  ==========================
``tensorboard``    ``to_tensorboard(run, logdir)``            ``gradprobe[tensorboard]``
``wandb``          ``to_wandb(run, wandb_run=None)``          ``gradprobe[wandb]``
``lightning``      ``GradprobeCallback`` for ``Trainer``      ``gradprobe[lightning]``
``huggingface``    ``GradprobeTrainerCallback``               ``gradprobe[hf]``
=================  =========================================  ==========================

Distributed training (DDP, FSDP2) is handled by the probe itself:
``gp.watch(model, distributed="auto")``. See docs/INTEGRATIONS.md.
"""

from ._common import MissingExtraError

__all__ = ["MissingExtraError"]

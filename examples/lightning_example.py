"""Lightning: one callback watches the fit, diagnoses at the end and logs the findings.

python examples/lightning_example.py OUT_DIR
"""

import sys
from pathlib import Path

import lightning.pytorch as L
import torch
from torch import nn

from gradprobe.integrations.lightning import GradprobeCallback

out = Path(sys.argv[1] if len(sys.argv) > 1 else "example-out")


class Regressor(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


torch.manual_seed(0)
x = torch.randn(256, 4)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), 32)
callback = GradprobeCallback(path=out / "run.sqlite")
trainer = L.Trainer(
    max_epochs=1, accelerator="cpu", devices=1, callbacks=[callback],
    logger=L.loggers.CSVLogger(out), enable_checkpointing=False, enable_progress_bar=False,
)  # fmt: skip
trainer.fit(Regressor(), loader)
print(f"{len(callback.run.steps)} steps watched, {len(callback.findings)} findings")

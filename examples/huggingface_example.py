"""Hugging Face Trainer: one TrainerCallback watches every optimizer step.

python examples/huggingface_example.py OUT_DIR
"""

import sys
from pathlib import Path

import torch
import transformers
from torch import nn

from gradprobe.integrations.huggingface import GradprobeTrainerCallback

out = Path(sys.argv[1] if len(sys.argv) > 1 else "example-out")


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 1))

    def forward(self, x, labels=None):
        y = self.net(x)
        return {"loss": nn.functional.mse_loss(y, labels), "logits": y}


class Data(torch.utils.data.Dataset):
    def __init__(self, n=64):
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.x[i].sum(0, keepdim=True)}


torch.manual_seed(0)
callback = GradprobeTrainerCallback()
args = transformers.TrainingArguments(
    output_dir=str(out), max_steps=6, per_device_train_batch_size=16, report_to=[],
    use_cpu=True, save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
)  # fmt: skip
trainer = transformers.Trainer(
    model=Regressor(), args=args, train_dataset=Data(), callbacks=[callback]
)
trainer.train()
print(f"{len(callback.run.steps)} steps watched; last log: {trainer.state.log_history[-1]}")

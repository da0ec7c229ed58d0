"""Log a watched run to Weights & Biases (offline here: WANDB_MODE=offline, no account needed).

WANDB_MODE=offline python examples/wandb_example.py OUT_DIR
"""

import os
import sys
from pathlib import Path

import torch
from torch import nn

import gradprobe as gp
from gradprobe.integrations.wandb import to_wandb

out = Path(sys.argv[1] if len(sys.argv) > 1 else "example-out")
out.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("WANDB_MODE", "offline")
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
x = torch.randn(64, 8)
with gp.watch(model, histograms=True) as probe:
    for _ in range(10):
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        probe.step()
wandb_run = to_wandb(probe.run, project="gradprobe-example", dir=str(out))
print(f"W&B run written under {out} ({getattr(wandb_run, 'id', 'offline')})")

"""Watch a tanh MLP on digits and write what the probe saw as TensorBoard event files.

python examples/tensorboard_example.py OUT_DIR && tensorboard --logdir OUT_DIR/tb
"""

import sys
from pathlib import Path

import torch
from torch import nn

import gradprobe as gp
from gradprobe.experiments.data import load
from gradprobe.integrations.tensorboard import to_tensorboard

out = Path(sys.argv[1] if len(sys.argv) > 1 else "example-out")
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
data = load("digits", flatten=True)
model = gp.init.apply(
    nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)), "xavier_normal"
)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with gp.watch(model, histograms=True, path=out / "run.sqlite", overwrite=True) as probe:
    for step in range(20):
        x, y = data.x_train[step * 32 : step * 32 + 32], data.y_train[step * 32 : step * 32 + 32]
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        probe.step()
to_tensorboard(probe.run, out / "tb")  # the two lines that matter
print(f"event files in {out / 'tb'}")

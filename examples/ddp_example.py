"""DDP on 2 CPU processes (gloo): every rank watches, rank 0 writes the combined run.

python examples/ddp_example.py OUT_DIR
"""

import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradprobe as gp


def train(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(
        nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(rank))
    with gp.watch(model.module, distributed=True, path=Path(out) / "ddp.sqlite") as probe:
        for _ in range(5):
            model(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    dist.barrier()  # every rank done (rank 0 has written the run) before the group goes away
    del model, opt
    dist.destroy_process_group()


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "example-out")
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(train, args=(2, port, str(out)), nprocs=2, join=True)
    run = gp.Run.load(out / "ddp.sqlite")
    print(f"combined run: {len(run.steps)} steps, world size {run.meta['world_size']}")

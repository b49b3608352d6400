"""Run by tests/test_distributed.py: one DDP step and one epoch, as one rank of a gloo group or alone."""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist

from distill_core import load_config
from distill_core.training.loop import train_epoch, validate_epoch

CONFIG = {"recipe": "none", "terms": {"mag_recon": {"weight": 1.0}, "kl": {"weight": 0.5, "free_bits": 0.0}}}


class TinyVAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(2 * 8 * 8, 8)
        self.dec = torch.nn.Linear(4, 2 * 8 * 8)

    def forward(self, x):
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=-1)
        return torch.nn.functional.softplus(self.dec(mu)).view_as(x), mu, logvar


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--store", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    distributed = args.world > 1
    if distributed:
        dist.init_process_group("gloo", init_method=f"file://{args.store}", rank=args.rank, world_size=args.world)
    torch.manual_seed(0)
    data = torch.rand(3, 8, 2, 8, 8)  # 3 steps of a global batch of 8
    model = TinyVAE()
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    shard = slice(args.rank * 8 // args.world, (args.rank + 1) * 8 // args.world)
    batches = [step[shard] for step in data]
    config = load_config(CONFIG)

    from distill_core import CombinedLoss

    loss = CombinedLoss(config)
    recon, mu, logvar = model(batches[0])
    loss({"recon": recon, "target": batches[0], "mu": mu, "logvar": logvar})["total_loss"].backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    train = train_epoch(model, batches, opt, loss_config=loss, epoch=0, total_epochs=1)
    val = validate_epoch(model, batches, loss_config=loss)
    torch.save({"grads": {k.removeprefix("module."): v for k, v in grads.items()}, "train": train, "val": val},
               args.out)
    if distributed:
        dist.barrier()  # both ranks done before teardown: a rank leaving mid-teardown can abort the other
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

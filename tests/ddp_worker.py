"""Run by tests/engine/test_distributed.py: one DDP step and one epoch, as one rank of a gloo group or alone."""

from __future__ import annotations

import gloo_worker
import torch

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
    args = gloo_worker.join()
    torch.manual_seed(0)
    data = torch.rand(3, 8, 2, 8, 8)  # 3 steps of a global batch of 8
    model = TinyVAE()
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    shard = gloo_worker.shard(args, 8)
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
    torch.save(
        {"grads": {k.removeprefix("module."): v for k, v in grads.items()}, "train": train, "val": val}, args.out
    )
    gloo_worker.leave(args)


if __name__ == "__main__":
    main()

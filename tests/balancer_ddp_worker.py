"""Run by tests/loss/test_balancer_ddp.py: balanced steps as one rank of a gloo group, or alone on the full batch."""

from __future__ import annotations

import argparse

import gloo_worker
import torch

from distill_core.loss.balancer import BalancerConfig, GradientBalancer

GLOBAL_BATCH = 8
WEIGHTS = {"l1": 1.0, "mse": 2.0, "loud": 1.0, "off": 0.0}


class TinyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(5, 8)
        self.head = torch.nn.Linear(8, 6)
        self.stats = torch.nn.Linear(8, 4)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return self.head(h).view(-1, 2, 3), self.stats(h)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-item", choices=["true", "false"], required=True)
    args = gloo_worker.join(parser)
    torch.manual_seed(0)
    steps = [
        (torch.randn(GLOBAL_BATCH, 5), torch.randn(GLOBAL_BATCH, 2, 3), torch.randn(GLOBAL_BATCH, 2, 3))
        for _ in range(3)
    ]
    model = TinyModel()
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    shard = gloo_worker.shard(args, GLOBAL_BATCH)
    config = BalancerConfig(enabled=True, ema_decay=0.8, per_batch_item=args.per_item == "true")
    balancer = GradientBalancer(config, list(WEIGHTS))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    grads, logs = [], []
    poison = torch.zeros(len(steps), GLOBAL_BATCH)
    poison[-1, GLOBAL_BATCH - 2] = torch.nan  # last step: mse is NaN on the second rank's shard only
    for (x, target, other), bad in zip(steps, poison):  # every term is a mean over the (local) examples
        x, target, other, bad = x[shard], target[shard], other[shard], bad[shard]
        opt.zero_grad()
        y, mu = model(x)
        values = {
            "l1": (y - target).abs().mean(),
            "mse": (y - target).pow(2).mean() + bad.mean(),
            "loud": 100 * (y - other).abs().mean(),
            "off": y.sum(),
        }
        kl = 0.5 * mu.pow(2).sum(1).mean()
        logs.append(balancer.backward(values, WEIGHTS, y, 0.3 * kl))
        grads.append({name.removeprefix("module."): p.grad.clone() for name, p in model.named_parameters()})
        opt.step()
    torch.save({"grads": grads, "logs": logs, "balancer": balancer.state_dict()}, args.out)
    gloo_worker.leave(args)


if __name__ == "__main__":
    main()

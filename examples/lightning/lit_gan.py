"""distill inside PyTorch Lightning with a stateful term (a discriminator): manual optimization, because the
loss trains its discriminator itself (``loss.update``) and the generator's optimizer is the only one Lightning
steps. Validation puts the whole module, the loss included, in eval mode: no discriminator step there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from distill_core import CombinedLoss, LossConfig, load_config
from distill_core.engine.passes import check_optimizer
from distill_core.training.ddp import prepare_loss


class LitGAN(L.LightningModule):
    """Any waveform generator ``model(x) -> recon`` ([B, C, N] in and out), trained with a distill loss config
    holding a stateful term (``[terms.adversarial]``); every component and update figure is logged."""

    def __init__(self, model: nn.Module, loss: LossConfig | Mapping[str, Any] | str, lr: float = 1e-3) -> None:
        super().__init__()
        self.automatic_optimization = False  # the discriminator steps inside loss.update, the generator here
        self.model = model
        self.loss = CombinedLoss(loss if isinstance(loss, LossConfig) else load_config(loss))  # built once
        self.lr = lr

    def on_fit_start(self) -> None:
        # under DDP: rank 0's discriminator everywhere, its gradients averaged, declared statistics reduced after
        # each update; without it the loss's first update under several ranks stops with DistributedSetupError
        prepare_loss(self.loss)

    def _batch(self, batch: Any) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return {"recon": self.model(x), "target": x}

    def _log(self, values: Mapping[str, torch.Tensor], stage: str, size: int) -> None:
        # 0-dim tensors, no .item(): Lightning accumulates them and syncs only when it logs
        self.log_dict(
            {f"{stage}/{k}": v.detach() for k, v in values.items()},
            on_step=stage == "train",
            on_epoch=True,
            sync_dist=True,
            batch_size=size,
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs = self._batch(batch)
        figures = self.loss.update(inputs)  # the discriminator's step on recon.detach(), with its own optimizer
        out = self.loss(inputs, epoch=self.current_epoch, total_epochs=max(self.trainer.max_epochs or 1, 1))
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(out["total_loss"])  # the discriminator is read-only here: no gradient reaches it
        optimizer.step()
        self._log({**out, **figures}, "train", inputs["target"].shape[0])
        return out["total_loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs = self._batch(batch)
        out = self.loss(inputs, epoch=self.current_epoch, total_epochs=max(self.trainer.max_epochs or 1, 1))
        self._log(out, "val", inputs["target"].shape[0])
        return out["total_loss"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # never the loss's parameters (refused below; were they there, D's freed gradients would leave D still)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        check_optimizer(optimizer, self.loss)
        return optimizer

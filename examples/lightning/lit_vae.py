"""distill inside PyTorch Lightning: a LightningModule that builds the CombinedLoss once and logs every
component with ``self.log_dict`` as ``train/...`` and ``val/...`` (reduced across processes under DDP)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from distill_core import CombinedLoss, LossConfig, load_config


class LitVAE(L.LightningModule):
    """Any VAE whose forward returns (recon, mu, logvar), trained with a distill loss config."""

    def __init__(
        self, model: nn.Module, loss: LossConfig | Mapping[str, Any] | str | None = None, lr: float = 1e-3
    ) -> None:
        super().__init__()
        self.model = model
        config = loss if isinstance(loss, LossConfig) else load_config(loss) if loss is not None else LossConfig()
        self.loss = CombinedLoss(config)  # terms (STFT windows, filterbanks) built once, moved with the module
        self.lr = lr

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        recon, mu, logvar = self.model(x)
        out = self.loss(
            {"recon": recon, "target": x, "mu": mu, "logvar": logvar},
            epoch=self.current_epoch,
            total_epochs=max(self.trainer.max_epochs or 1, 1),
        )
        # 0-dim tensors, no .item(): Lightning accumulates them and syncs only when it logs
        self.log_dict(
            {f"{stage}/{k}": v.detach() for k, v in out.items()},
            on_step=stage == "train",
            on_epoch=True,
            sync_dist=True,
            batch_size=x.shape[0],
        )
        return out["total_loss"]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)

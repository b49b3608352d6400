"""CombinedLoss: the terms of a LossConfig built once, weighted and summed per step without a host sync."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch
from torch import nn

from .config import ConfigError, check_weight
from .loss_config import LossConfig, check
from .pins import unmet_pins
from .schedules import weight_at
from .terms import Batch, check_batch_agrees, check_missing_keys

if TYPE_CHECKING:
    from .plugins import Provenance, Registry


def _sum(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Add tensors with dtype promotion (terms may return different float dtypes)."""
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total


class TermBuildError(RuntimeError):
    """A term's constructor raised: names the term and the distribution it came from."""


class CombinedLoss(nn.Module):
    """The weighted sum of a config's terms, returning every component for logging.

    Terms (and their windows, filterbanks) are built here, once; every hook call happened before this,
    at discovery. ``forward`` returns 0-dim tensors: ``total_loss``, ``<term>_loss`` (unweighted) for each
    term and each group's weighted sum under its key (``recon_loss`` in the recipe).
    """

    def __init__(self, config: LossConfig | None = None, registry: "Registry | None" = None,
                 *, prebuilt: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        from .plugins import get_registry

        registry = registry or get_registry()
        config = config if config is not None else LossConfig()
        problems = check(config, registry) + unmet_pins(config.required_plugins)
        group_keys = {name: group.key or f"{name}_loss" for name, group in config.groups.items()}
        if problems:  # check() refuses reserved and repeated output keys
            raise ConfigError(problems)
        self.config = config
        self.provenance: dict[str, Provenance] = {}
        built: dict[str, nn.Module] = {}
        for name, cfg in config.terms.items():
            info = registry.get(name)
            self.provenance[name] = info.provenance
            if prebuilt and name in prebuilt:
                built[name] = prebuilt[name]
                continue
            try:
                built[name] = info.cls(cfg)
            except Exception as exc:  # the plugin's constructor; fail only the configs that use it
                raise TermBuildError(f"term {name!r} from {info.provenance} failed to build: "
                                     f"{type(exc).__name__}: {exc}") from exc
        self.terms = nn.ModuleDict(built)
        self._requires = {name: tuple(getattr(type(m), "requires", ())) for name, m in built.items()}
        self._read_keys = tuple(dict.fromkeys(k for keys in self._requires.values() for k in keys))
        self._group_keys = group_keys
        self._grouped = {m for g in config.groups.values() for m in g.member_weights()}

    @classmethod
    def build(cls, config: LossConfig | None = None, registry: "Registry | None" = None) -> "CombinedLoss":
        """Build from a config (the VAE recipe by default) and the registry (discovered by default)."""
        return cls(config, registry)

    def weights(self, epoch: int | None = None, total_epochs: int | None = None,
                overrides: Mapping[str, float] | None = None) -> dict[str, float]:
        """Host-side weights at this point of training: each term's own and each group's."""
        out = {name: weight_at(cfg.weight, epoch, total_epochs) for name, cfg in self.config.terms.items()}
        out.update({g: weight_at(group.weight, epoch, total_epochs) for g, group in self.config.groups.items()})
        if overrides:
            unknown = [k for k in overrides if k not in out]
            if unknown:
                raise KeyError(f"weight override for {unknown[0]!r}: no such term or group; have {', '.join(out)}")
            for name, value in overrides.items():
                reason = check_weight(value)
                if reason or isinstance(value, bool):
                    raise ValueError(f"weight override for {name!r}: {reason or 'expected a number, got a bool'}")
                out[name] = float(value)
        return out

    def forward(self, batch: Batch, *, epoch: int | None = None, total_epochs: int | None = None,
                kl_weight: float | None = None, weights: Mapping[str, float] | None = None
                ) -> dict[str, torch.Tensor]:
        """All components and the total for one batch; ``kl_weight`` overrides the ``kl`` term's weight."""
        for name, requires in self._requires.items():
            check_missing_keys(name, requires, batch)
        check_batch_agrees(self._read_keys, batch)
        overrides = dict(weights or {})
        if kl_weight is not None:
            overrides["kl"] = float(kl_weight)
        w = self.weights(epoch, total_epochs, overrides)
        values = {name: term(batch) for name, term in self.terms.items()}
        out: dict[str, torch.Tensor] = {f"{name}_loss": v for name, v in values.items()}
        anchor = next(iter(values.values())) if values else torch.zeros(())
        parts: list[torch.Tensor] = []
        for name, v in values.items():
            if name not in self._grouped and w[name] != 0.0:  # a zero weight adds exactly 0, even to an inf
                parts.append(v * w[name])
        for gname, group in self.config.groups.items():
            members = [values[m] * (mw * w[m]) for m, mw in group.member_weights().items() if mw * w[m] != 0.0]
            gsum = _sum(members) * w[gname] if members and w[gname] != 0.0 else anchor.new_zeros(())
            out[self._group_keys[gname]] = gsum
            parts.append(gsum)
        total = _sum(parts) if parts else anchor.new_zeros(())
        fallback = self.config.fallback
        finite = torch.isfinite(total)
        if fallback is not None:  # the seed's guard, as a select on the device: no host sync
            total = torch.where(finite, total, out[self._group_keys[fallback]])
        out["total_loss"] = total
        out["nonfinite"] = (~finite).to(total.dtype)
        return out

"""CombinedLoss: the terms of a LossConfig built once, weighted and summed per step without a host sync."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch
from torch import nn

from .config import ConfigError
from .gate import FlagSlot, gate
from .loss_config import LossConfig, check
from .pins import unmet_pins
from .schedules import weight_at
from .layouts import Reader
from .layouts import mismatches as layout_mismatches
from .terms import Batch, BatchError, check_missing_keys

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
        keys = [f"{t}_loss" for t in config.terms] + list(group_keys.values()) + ["total_loss"]
        for key in {k for k in keys if keys.count(k) > 1}:
            problems.append(("groups", f"output key {key!r} is produced twice; rename the group or set its key"))
        if problems:
            raise ConfigError(problems)
        self.config = config
        self.provenance: dict[str, Provenance] = {}
        built: dict[str, nn.Module] = {}
        readers: dict[str, list[Reader]] = {}
        for name, cfg in config.terms.items():
            info = registry.get(config.term_of(name))
            self.provenance[name] = info.provenance
            inputs = config.inputs_of(name)
            layouts = info.cls.input_layouts(cfg)
            for logical in info.cls.requires:
                if logical in layouts:
                    readers.setdefault(inputs.get(logical, logical), []).append((name, logical, layouts[logical]))
            if prebuilt and name in prebuilt:
                built[name] = prebuilt[name]
                continue
            try:
                built[name] = info.cls(cfg)
            except Exception as exc:  # the plugin's constructor; fail only the configs that use it
                raise TermBuildError(f"term {name!r} from {info.provenance} failed to build: "
                                     f"{type(exc).__name__}: {exc}") from exc
            if name != info.name:
                built[name].name = name  # a named instance speaks of itself in its errors
        self.terms = nn.ModuleDict(built)
        self._requires = {name: tuple(getattr(type(m), "requires", ())) for name, m in built.items()}
        self._inputs = {name: config.inputs_of(name) for name in built if config.inputs_of(name)}
        self._readers = readers
        self._layouts_checked = False
        self._group_keys = group_keys
        self._grouped = {m for g in config.groups.values() for m in g.member_weights()}
        fallback = config.groups[config.fallback].member_weights() if config.fallback is not None else None
        self._gated = [name for name in built if fallback is not None and name not in fallback]

    @property
    def reads(self) -> frozenset[str]:
        """Every batch key some term reads, after the input mappings."""
        return frozenset(self._inputs.get(name, {}).get(r, r) for name, req in self._requires.items() for r in req)

    @property
    def term_keys(self) -> tuple[str, ...]:
        """Each term's output key, ``<name>_loss``, in config order."""
        return tuple(f"{name}_loss" for name in self.terms)

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
            out.update({k: float(v) for k, v in overrides.items()})
        return out

    def _term_batch(self, batch: Batch, name: str, slot: FlagSlot) -> Batch:
        """What one term sees: its mapped inputs under their logical names, behind the fallback gate."""
        inputs = self._inputs.get(name)
        gated = name in self._gated
        if not inputs and not gated:
            return batch
        out = dict(batch)
        for logical in self._requires[name]:
            key = inputs.get(logical, logical) if inputs else logical
            out[logical] = gate(batch[key], slot) if gated else batch[key]
        return out

    def _check_batch(self, batch: Batch) -> None:
        """Every term's keys are there (naming mapped inputs), and on the first batch every layout fits."""
        for name, requires in self._requires.items():
            inputs = self._inputs.get(name)
            if inputs:
                for logical in requires:
                    key = inputs.get(logical, logical)
                    if key not in batch:
                        have = ", ".join(sorted(map(str, batch))) or "none"
                        raise BatchError(f"term {name!r} input {logical!r} reads batch key {key!r}, which the "
                                         f"batch lacks; the batch has: {have}")
            else:
                check_missing_keys(name, requires, batch)
        if not self._layouts_checked:
            shapes = {k: tuple(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            wrong = layout_mismatches(self._readers, shapes)
            if wrong:
                raise BatchError("batch layouts do not fit the terms: " + "; ".join(wrong))
            self._layouts_checked = True

    def forward(self, batch: Batch, *, epoch: int | None = None, total_epochs: int | None = None,
                kl_weight: float | None = None, weights: Mapping[str, float] | None = None
                ) -> dict[str, torch.Tensor]:
        """All components and the total for one batch; ``kl_weight`` overrides the ``kl`` term's weight."""
        self._check_batch(batch)
        overrides = dict(weights or {})
        if kl_weight is not None:
            overrides["kl"] = float(kl_weight)
        w = self.weights(epoch, total_epochs, overrides)
        slot = FlagSlot()
        values = {name: term(self._term_batch(batch, name, slot)) for name, term in self.terms.items()}
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
            slot.open = finite  # and only the fallback group's gradient reaches the model
        out["total_loss"] = total
        out["nonfinite"] = (~finite).to(total.dtype)
        return out

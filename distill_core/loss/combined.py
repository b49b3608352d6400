"""CombinedLoss: the terms of a LossConfig built once, weighted and summed per step without a host sync."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

if sys.version_info < (3, 11):  # pragma: no cover - cattrs brings the backport there
    from exceptiongroup import ExceptionGroup

from distill_core.config.converter import check_weight, problems_from
from distill_core.config.schedules import weight_at
from distill_core.loss.balancer import GradientBalancer
from distill_core.loss.config import LossConfig, as_loss_config, plan_inputs, validate
from distill_core.loss.gate import FlagSlot, gate
from distill_core.loss.update_clock import UpdateClock
from distill_core.registry.discovery import Provenance, Registry, get_registry
from distill_core.terms import pit
from distill_core.terms.base import Batch, BatchError, check_batch_agrees, check_missing_keys
from distill_core.terms.layouts import mismatches as layout_mismatches
from distill_core.terms.stateful import StatefulTerm, end_epoch_step, is_stateful


def _sum(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Add tensors with dtype promotion (terms may return different float dtypes)."""
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total


def _finite_or_zero(value: torch.Tensor) -> torch.Tensor:
    """A non-finite term adds nothing (its gradient is stopped at its inputs' gates)."""
    return torch.where(torch.isfinite(value), value, value.new_zeros(()))


class TermBuildError(RuntimeError):
    """A term's constructor raised: names the term and the distribution it came from."""


class TermOutputError(BatchError):
    """A term returned something other than a 0-dim tensor (the weighted sum and backward need scalars)."""


def _check_outputs(values: Mapping[str, Any]) -> None:
    """Each term's value is a 0-dim tensor (metadata only: no host sync)."""
    for name, value in values.items():
        if not isinstance(value, torch.Tensor):
            raise TermOutputError(f"term {name!r} returned {type(value).__name__}; a term returns a 0-dim tensor")
        if value.dim() != 0:
            raise TermOutputError(
                f"term {name!r} returned a tensor of shape {list(value.shape)}; a term returns a "
                "0-dim tensor (reduce it, e.g. with .mean())"
            )


def _split_outputs(name: str, outputs: tuple[str, ...], result: Any) -> dict[str, Any]:
    """A multi-output term's mapping as its components ``<name>_<output>``, exactly the declared outputs."""
    if not isinstance(result, Mapping) or set(result) != set(outputs):
        got = f"keys {', '.join(map(str, result))}" if isinstance(result, Mapping) else type(result).__name__
        raise TermOutputError(
            f"term {name!r} declares outputs {', '.join(outputs)} and returned {got}; a "
            "multi-output term returns a mapping of each declared output to a 0-dim tensor"
        )
    return {f"{name}_{output}": result[output] for output in outputs}


def _build_message(exc: Exception) -> str:
    """A constructor's error in one line; a cattrs exception group flattened into every reason it holds."""
    problems = problems_from(exc, "")
    if isinstance(exc, ExceptionGroup) and problems:
        return "; ".join(f"{p}: {r}" if p else r for p, r in problems)
    return f"{type(exc).__name__}: {exc}"


class CombinedLoss(nn.Module):
    """The weighted sum of a config's terms, returning every component for logging.

    Terms (and their windows, filterbanks) are built here, once; every hook call happened before this,
    at discovery. ``forward`` returns 0-dim tensors: ``total_loss``, ``<term>_loss`` (unweighted) for each
    term and each group's weighted sum under its key (e.g. ``recon_loss``).

    ``config`` is a LossConfig (the default recipe when None), a mapping, or a config object with
    ``to_loss_config()``. ``prebuilt`` supplies ready modules for some terms, by name.
    """

    def __init__(
        self, config: Any = None, registry: Registry | None = None, *, prebuilt: Mapping[str, nn.Module] | None = None
    ) -> None:
        super().__init__()
        registry = registry or get_registry()
        config = as_loss_config(config) if config is not None else LossConfig()
        validate(config, registry)  # check() refuses reserved and repeated output keys
        group_keys = {name: group.key or f"{name}_loss" for name, group in config.groups.items()}
        plan = plan_inputs(config, registry)
        self.config = config
        self.provenance: dict[str, Provenance] = {}
        built: dict[str, nn.Module] = {}
        for name, cfg in config.terms.items():
            info = registry.get(config.term_of(name))
            self.provenance[name] = info.provenance
            if prebuilt and name in prebuilt:
                built[name] = prebuilt[name]
                continue
            try:
                built[name] = info.cls(cfg)
            except Exception as exc:  # the plugin's constructor; fail only the configs that use it
                raise TermBuildError(
                    f"term {name!r} from {info.provenance} failed to build: {_build_message(exc)}"
                ) from exc
            if name != info.name:
                built[name].name = name  # a named instance speaks of itself in its errors
        self.terms = nn.ModuleDict(built)
        # Each term's logical inputs and the batch keys that feed them (a prebuilt module may read fewer).
        self._sources = {
            name: config.sources(name, tuple(getattr(type(m), "requires", ()))) for name, m in built.items()
        }
        self._mapped = {name for name, src in self._sources.items() if any(r != k for r, k in src.items())}
        self._read_keys = tuple(dict.fromkeys(k for src in self._sources.values() for k in src.values()))
        self._readers = plan.readers
        self._layouts_checked = False
        # Components: one per single-output term (its name), one per output of a multi-output term
        # (``<name>_<output>``); each is weighted, summed, logged and balanced on its own.
        self._outputs = {name: tuple(getattr(type(m), "outputs", ()) or ()) for name, m in built.items()}
        self._output_weights = {
            name: config.output_weights(name, type(m)) for name, m in built.items() if self._outputs[name]
        }
        self._components = {
            name: tuple(f"{name}_{o}" for o in outs) if outs else (name,) for name, outs in self._outputs.items()
        }
        self._term_of = {c: name for name, cs in self._components.items() for c in cs}
        self.balancer: GradientBalancer | None = None
        self._pending: tuple[dict[str, float], torch.Tensor] | None = None
        self._balanced: frozenset[str] = frozenset()  # the terms whose components the balancer weighs
        if config.balancer.enabled:
            key = config.balancer.input
            self._balanced = frozenset(name for name, src in self._sources.items() if key in src.values())
            self.balancer = GradientBalancer(
                config.balancer, [c for name in built if name in self._balanced for c in self._components[name]]
            )
        # Gradient gates. Plain mode: the non-fallback terms, closed when the total is not finite (only the
        # fallback group's gradient then reaches the model, as in the seed). Balanced mode: the balancer
        # masks its own terms; every other term is gated on its own value being finite.
        fallback = config.groups[config.fallback].members if config.fallback is not None else None
        if self.balancer is not None:
            self._gated = {name: name for name in built if name not in self._balanced}
        else:
            self._gated = {name: "" for name in built if fallback is not None and name not in fallback}
        self._group_keys = group_keys
        self._pit = {name: p for name in built if (p := config.pit_of(name)) is not None}
        # Each PIT term's chosen permutation of the last forward, [B, S] (perm[b, j]: the estimate scored
        # against reference j); the output dict carries only its 0-dim share of identities, for logging.
        self.permutations: dict[str, torch.Tensor] = {}
        self._grouped = {m for g in config.groups.values() for m in g.members}
        # Stateful terms: each one's update step, on detached inputs, on the schedule of its config entry.
        self._stateful = tuple(name for name, term in built.items() if is_stateful(term))
        self._update_plan: dict[str, tuple[StatefulTerm, tuple[tuple[str, str], ...]]] = {
            name: (cast(StatefulTerm, built[name]), tuple(self._sources[name].items())) for name in self._stateful
        }
        self.update_clock = (
            UpdateClock({name: config.update_of(name) for name in self._stateful}) if self._stateful else None
        )
        self._tick = self.update_clock.tick if self.update_clock is not None else None  # a plain attribute: fast
        self._figures_checked: set[str] = set()  # the stateful terms whose first figures were checked

    @property
    def reads(self) -> frozenset[str]:
        """Every batch key some term reads, after the input mappings."""
        return frozenset(self._read_keys)

    @property
    def term_keys(self) -> tuple[str, ...]:
        """Each term's output key, ``<name>_loss``, in config order, a multi-output term's followed by each of
        its components' ``<name>_<output>_loss``."""
        return tuple(
            key
            for name in self.terms
            for key in (f"{name}_loss", *(f"{c}_loss" for c in self._components[name] if self._outputs[name]))
        )

    @property
    def components(self) -> tuple[str, ...]:
        """What the total sums, each weighted on its own: a single-output term by its name, and each output
        of a multi-output term as ``<name>_<output>`` (its key is ``<component>_loss``)."""
        return tuple(c for cs in self._components.values() for c in cs)

    def weights(
        self, epoch: int | None = None, total_epochs: int | None = None, overrides: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Host-side weights at this point of training: each term's own, each group's, and each output's
        of a multi-output term (under ``<name>_<output>``; its weight in the total is that times the term's)."""
        out = {name: weight_at(cfg.weight, epoch, total_epochs) for name, cfg in self.config.terms.items()}
        out.update({g: weight_at(group.weight, epoch, total_epochs) for g, group in self.config.groups.items()})
        for name, by_output in self._output_weights.items():
            out.update({f"{name}_{o}": weight_at(w, epoch, total_epochs) for o, w in by_output.items()})
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

    def _term_batch(self, batch: Batch, name: str, slots: dict[str, FlagSlot]) -> Batch:
        """What one term sees: its mapped inputs under their logical names, behind its gradient gate."""
        slot = slots.setdefault(self._gated[name], FlagSlot()) if name in self._gated else None
        if name not in self._mapped and slot is None:
            return batch
        out = dict(batch)
        for logical, key in self._sources[name].items():
            out[logical] = gate(batch[key], slot) if slot is not None else batch[key]
        return out

    @property
    def stateful(self) -> tuple[str, ...]:
        """The terms with an update step of their own (e.g. one training a module it owns), in config order."""
        return self._stateful

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each stateful term's own step on this batch, detached: once per training batch, before the loss.

        Nothing happens in eval mode. Each call in training mode counts one step of the update schedules
        (``update = {every, probability, start, seed}`` per term, decided on the host); a term whose step
        does not run at this call returns nothing. Returns the figures of the terms that ran as 0-dim tensors
        under ``<term>_<figure>`` (metrics for logging: they are not part of ``total_loss``)."""
        out: dict[str, torch.Tensor] = {}
        if not self.training or self._tick is None:
            return out
        for name in self._tick():
            term, sources = self._update_plan[name]
            try:
                view = {
                    logical: (v.detach() if isinstance(v := batch[key], torch.Tensor) else v)
                    for logical, key in sources
                }
            except KeyError:
                self._check_batch(batch)  # names the term, the input and the key
                raise
            figures = term.update(view)
            if figures:
                for figure, value in figures.items():
                    out[f"{name}_{figure}"] = value
                if name not in self._figures_checked:
                    self._check_figures(name, figures)
        return out

    def end_epoch(self) -> None:
        """Each stateful term's per-epoch step (e.g. a schedule it owns that steps once an epoch), after a
        completed training epoch; nothing in eval mode."""
        if not self.training:
            return
        for name in self.stateful:
            step = end_epoch_step(self.terms[name])
            if step is not None:
                step()

    def _check_figures(self, name: str, figures: Mapping[str, Any]) -> None:
        """On the first figures: 0-dim tensors whose keys no forward output takes (metadata only)."""
        taken = (
            {f"{n}_loss" for n in self.terms}
            | {f"{c}_loss" for c in self.components}
            | set(self._group_keys.values())
            | {"total_loss", "nonfinite"}
            | {f"{n}_pit_identity" for n in self._pit}
        )
        for figure, value in figures.items():
            key = f"{name}_{figure}"
            if key in taken:
                raise TermOutputError(
                    f"term {name!r}: its update step's figure {figure!r} would be logged as "
                    f"{key!r}, which the loss's forward already writes; rename the figure"
                )
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                raise TermOutputError(
                    f"term {name!r}: its update step's figure {figure!r} is "
                    f"{type(value).__name__}; expected a 0-dim tensor"
                )
        self._figures_checked.add(name)

    def _check_batch(self, batch: Batch) -> None:
        """Every term's keys are there (naming mapped inputs), and on the first batch every layout fits."""
        for name, sources in self._sources.items():
            if name in self._mapped:
                for logical, key in self._sources[name].items():
                    if key not in batch:
                        have = ", ".join(sorted(map(str, batch))) or "none"
                        raise BatchError(
                            f"term {name!r} input {logical!r} reads batch key {key!r}, which the "
                            f"batch lacks; the batch has: {have}"
                        )
            else:
                check_missing_keys(name, tuple(sources), batch)
        if not self._layouts_checked:
            shapes = {k: tuple(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            wrong = layout_mismatches(self._readers, shapes)
            if wrong:
                raise BatchError("batch layouts do not fit the terms: " + "; ".join(wrong))
            self._layouts_checked = True

    def forward(
        self,
        batch: Batch,
        *,
        epoch: int | None = None,
        total_epochs: int | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """All components and the total for one batch; ``weights`` overrides some terms' or groups' weights
        for this call, by name (``{"adv": 0.0}``)."""
        self._check_batch(batch)
        check_batch_agrees(self._read_keys, batch)
        w = self.weights(epoch, total_epochs, weights)
        slots: dict[str, FlagSlot] = {}
        if self.balancer is not None and torch.is_grad_enabled():
            self._check_balanced_inputs(batch)
        values: dict[str, torch.Tensor] = {}  # by component
        chosen: dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            view = self._term_batch(batch, name, slots)
            if name in self._pit:
                values[name], self.permutations[name] = pit.evaluate(term, view, self._pit[name])
                chosen[f"{name}_pit_identity"] = pit.identity_share(self.permutations[name])
            elif self._outputs[name]:
                values.update(_split_outputs(name, self._outputs[name], term(view)))
            else:
                values[name] = term(view)
        _check_outputs(values)
        out: dict[str, torch.Tensor] = {}
        scale = {c: w[c] for name in self._output_weights for c in self._components[name]}  # output weights
        for name, components in self._components.items():
            if name in self._output_weights:  # <name>_loss: the outputs summed with their weights
                weighted = [values[c] * scale[c] for c in components if scale[c] != 0.0]
                out[f"{name}_loss"] = _sum(weighted) if weighted else values[components[0]].new_zeros(())
                out.update({f"{c}_loss": values[c] for c in components})
            else:
                out[f"{name}_loss"] = values[name]
        out.update(chosen)
        anchor = next(iter(values.values())) if values else torch.zeros(())
        parts: list[torch.Tensor] = []
        for c, v in values.items():
            weight = w[self._term_of[c]] * scale.get(c, 1.0)
            if self._term_of[c] not in self._grouped and weight != 0.0:  # a zero weight adds exactly 0, even to inf
                parts.append(v * weight)
        for gname, group in self.config.groups.items():
            members = [
                values[c] * (mw * w[m] * scale.get(c, 1.0))
                for m, mw in group.members.items()
                for c in self._components[m]
                if mw * w[m] * scale.get(c, 1.0) != 0.0
            ]
            gsum = _sum(members) * w[gname] if members and w[gname] != 0.0 else anchor.new_zeros(())
            out[self._group_keys[gname]] = gsum
            parts.append(gsum)
        total = _sum(parts) if parts else anchor.new_zeros(())
        fallback = self.config.fallback
        finite = torch.isfinite(total)
        if fallback is not None:  # the seed's guard, as a select on the device: no host sync
            total = torch.where(finite, total, out[self._group_keys[fallback]])
            if "" in slots:
                slots[""].open = finite  # and only the fallback group's gradient reaches the model
        out["total_loss"] = total
        out["nonfinite"] = (~finite).to(total.dtype)
        if self.balancer is not None:
            for name, slot in slots.items():
                slot.open = torch.isfinite(out[f"{name}_loss"])
            self._pending = (self.effective_weights(w), batch[self.config.balancer.input])
        return out

    def _check_balanced_inputs(self, batch: Batch) -> None:
        """The balancer's input carries the model's gradient, and no balanced term reads another input that
        does: the balancer scales the gradient at its input only, so a gradient at any other input would be
        dropped (refused rather than passed on unscaled, which would undo the shares the weights promise)."""
        assert self.balancer is not None
        key = self.config.balancer.input
        y = batch[key]
        if isinstance(y, torch.Tensor) and not y.requires_grad:
            raise BatchError(
                f"balancer input {key!r} carries no gradient from the model (requires_grad is False); "
                "set [balancer] input to a model output the balanced terms read"
            )
        for name in self._balanced:
            others = sorted(
                {
                    k
                    for k in self._sources[name].values()
                    if k != key and isinstance(batch.get(k), torch.Tensor) and batch[k].requires_grad
                }
            )
            if others:
                raise BatchError(
                    f"balanced term {name!r} also reads {', '.join(map(repr, others))}, which carries "
                    f"the model's gradient, but the balancer scales the gradient at {key!r} only (the "
                    f"rest would be dropped); set [balancer] input to a key {name!r} does not read, or "
                    "one that is its only input with a gradient"
                )

    def effective_weights(self, weights: Mapping[str, float]) -> dict[str, float]:
        """Each component's weight in the total: its term's own (times the output's, for a multi-output term's
        ``<name>_<output>``), times its member weight and group weight if grouped."""
        out: dict[str, float] = {}
        group_of = {m: (g, mw) for g, group in self.config.groups.items() for m, mw in group.members.items()}
        for name, components in self._components.items():
            gname, mw = group_of.get(name, (None, 1.0))
            own = mw * weights[name] * weights[gname] if gname is not None else weights[name]
            for c in components:
                out[c] = own * weights[c] if self._outputs[name] else own
        return out

    def backward(self, out: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Backpropagate the last forward's loss into the model: one call for both modes.

        Without a balancer, ``total_loss.backward()``. With one, the terms that read the balancer's input
        ``y`` get weights that are shares of the gradient at ``y`` (EnCodec's balancer), the others their
        plain weights, and the model sees one backward pass. Returns the balancer's figures as 0-dim tensors
        (``ratio_<term>``, ``ema_norm_<term>``, ``nonfinite``); empty without a balancer.
        """
        if self.balancer is None:
            out["total_loss"].backward()
            return {}
        if self._pending is None:
            raise RuntimeError("CombinedLoss.backward: call forward first; each forward is backpropagated once")
        weights, y = self._pending
        self._pending = None
        balanced = self.balancer.terms
        rest = [
            _finite_or_zero(out[f"{c}_loss"]) * weights[c]
            for c in self.components
            if c not in balanced and weights[c] != 0.0
        ]
        return self.balancer.backward(
            {name: out[f"{name}_loss"] for name in balanced},
            {name: weights[name] for name in balanced},
            y,
            _sum(rest) if rest else None,
        )

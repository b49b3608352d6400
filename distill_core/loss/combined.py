"""CombinedLoss: the terms of a LossConfig built once, weighted and summed per step without a host sync."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from distill_core.loss.balancer import GradientBalancer
from distill_core.loss.checks import validate
from distill_core.loss.gate import FlagSlot, gate
from distill_core.loss.model import LossConfig
from distill_core.loss.outputs import (
    TermBuildError,
    TermOutputError,
    build_message,
    check_outputs,
    finite_or_zero,
    split_outputs,
    sum_promoted,
)
from distill_core.loss.plan import LossPlan, figure_key, output_key, pit_key
from distill_core.loss.structure import as_loss_config
from distill_core.loss.update_clock import UpdateClock
from distill_core.registry.discovery import Provenance, Registry, get_registry
from distill_core.terms import pit
from distill_core.terms.base import Batch, BatchError, LossTerm, check_batch_agrees, check_missing_keys
from distill_core.terms.layouts import mismatches as layout_mismatches
from distill_core.terms.stateful import StatefulTerm, end_epoch_step, state_sync


class DistributedSetupError(RuntimeError):
    """A loss with stateful terms updated under several ranks before ``prepare_loss`` made the ranks agree."""


class CombinedLoss(nn.Module):
    """The weighted sum of a config's terms, returning every component for logging.

    Terms (and their windows, filterbanks) are built here, once; every hook call happened before this,
    at discovery. ``forward`` returns 0-dim tensors: ``total_loss``, ``<term>_loss`` (unweighted) for each
    term and each group's weighted sum under its key (e.g. ``recon_loss``).

    ``config`` is a LossConfig (the default recipe when None), a mapping, or a config object with
    ``to_loss_config()``. ``prebuilt`` supplies ready modules for some terms, by name.
    """

    # Under torch.distributed: what prepare_loss attached (distill_core.training.ddp.RankSync), and whether the
    # first training update checked the stateful terms' state_sync and, under several ranks, that it is attached.
    _rank_sync: Any = None
    _ranks_prepared: bool = False
    _ranks_checked: bool = False

    def __init__(
        self, config: Any = None, registry: Registry | None = None, *, prebuilt: Mapping[str, nn.Module] | None = None
    ) -> None:
        super().__init__()
        registry = registry or get_registry()
        config = as_loss_config(config) if config is not None else LossConfig()
        plan = validate(config, registry)  # check() refuses reserved and repeated output keys
        self.config = config
        self.provenance: dict[str, Provenance] = {name: t.provenance for name, t in plan.terms.items()}
        built: dict[str, nn.Module] = {}
        for name, t in plan.terms.items():
            if prebuilt and name in prebuilt:
                built[name] = prebuilt[name]
                continue
            try:
                term: LossTerm = t.cls(config.terms[name])
            except Exception as exc:  # the plugin's constructor; fail only the configs that use it
                raise TermBuildError(
                    f"term {name!r} from {t.provenance} failed to build: {build_message(exc)}"
                ) from exc
            if name != t.term:
                # a named instance speaks of itself in its errors: the instance's name over the class's
                setattr(term, "name", name)  # noqa: B010 - ``name`` is a ClassVar of LossTerm
            built[name] = term
        self.terms = nn.ModuleDict(built)
        # A prebuilt module may read fewer inputs (and declare other outputs) than the registered term.
        self.plan: LossPlan = plan.with_modules({name: type(built[name]) for name in prebuilt or () if name in built})
        plan = self.plan
        self._sources = {name: t.sources for name, t in plan.terms.items()}
        self._mapped = {name for name, t in plan.terms.items() if t.mapped}
        self._read_keys = plan.read_keys
        self._layouts_checked = False
        # Components: one per single-output term (its name), one per output of a multi-output term
        # (``<name>_<output>``); each is weighted, summed, logged and balanced on its own.
        self._outputs = {name: t.outputs for name, t in plan.terms.items()}
        self._components = {name: t.components for name, t in plan.terms.items()}
        self._multi = tuple(name for name, t in plan.terms.items() if t.outputs)
        self.balancer: GradientBalancer | None = None
        self._pending: tuple[dict[str, float], torch.Tensor] | None = None
        self._balanced = plan.balanced  # the terms whose components the balancer weighs
        if config.balancer.enabled:
            self.balancer = GradientBalancer(
                config.balancer, [c for name in built if name in self._balanced for c in self._components[name]]
            )
        # Gradient gates. Plain mode: the non-fallback terms, closed when the total is not finite (only the
        # fallback group's gradient then reaches the model, as in the seed). Balanced mode: the balancer
        # masks its own terms; every other term is gated on its own value being finite.
        self._gated = plan.gated
        self._group_keys = plan.group_keys
        self._pit = {name: t.pit for name, t in plan.terms.items() if t.pit is not None}
        # Each PIT term's chosen permutation of the last forward, [B, S] (perm[b, j]: the estimate scored
        # against reference j); the output dict carries only its 0-dim share of identities, for logging.
        self.permutations: dict[str, torch.Tensor] = {}
        # Each component's group (None: straight into the total), for the weighted sums of forward.
        self._group_of = {c: t.group for t in plan.terms.values() for c in t.components}
        self._group_components = {
            g: tuple(c for m in group.members for c in self._components[m]) for g, group in config.groups.items()
        }
        # Stateful terms: each one's update step, on detached inputs, on the schedule of its config entry.
        self._stateful = plan.stateful
        self._update_plan: dict[str, tuple[StatefulTerm, tuple[tuple[str, str], ...]]] = {
            name: (cast(StatefulTerm, built[name]), tuple(self._sources[name].items())) for name in self._stateful
        }
        self.update_clock = (
            UpdateClock({name: plan.terms[name].update for name in self._stateful}) if self._stateful else None
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
        return self.plan.term_keys

    @property
    def components(self) -> tuple[str, ...]:
        """What the total sums, each weighted on its own: a single-output term by its name, and each output
        of a multi-output term as ``<name>_<output>`` (its key is ``<component>_loss``)."""
        return self.plan.components

    def weights(
        self, epoch: int | None = None, total_epochs: int | None = None, overrides: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Host-side weights at this point of training: each term's own, each group's, and each output's
        of a multi-output term (under ``<name>_<output>``; its weight in the total is that times the term's)."""
        return self.plan.weights(epoch, total_epochs, overrides)

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
        under ``<term>_<figure>`` (metrics for logging: they are not part of ``total_loss``).

        Under several torch.distributed ranks it needs ``prepare_loss`` first (DistributedSetupError otherwise,
        checked on the first call); then the terms' ``mean`` and ``sum`` state (``state_sync``) is reduced over
        the ranks after their steps, in one all_reduce."""
        out: dict[str, torch.Tensor] = {}
        if not self.training or self._tick is None:
            return out
        if not self._ranks_checked:
            self._check_ranks()
        ran = self._tick()
        sync = self._rank_sync
        kept = sync.before(ran) if sync is not None else None
        for name in ran:
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
                    out[figure_key(name, figure)] = value
                if name not in self._figures_checked:
                    self._check_figures(name, figures)
        if kept is not None:
            sync.after(ran, kept)
        return out

    def attach_rank_sync(self, sync: Any) -> None:
        """What ``prepare_loss`` hands over under torch.distributed (a RankSync: the stateful terms' ``mean`` and
        ``sum`` state reduced after each update step); marks the loss as prepared."""
        self.__dict__["_rank_sync"] = sync
        self.__dict__["_ranks_prepared"] = True

    def _check_ranks(self) -> None:
        """Once, at the first training update: every stateful term's ``state_sync`` fits its state, and under
        several ranks ``prepare_loss`` was called (host-side calls only, no device sync)."""
        for name in self._stateful:
            state_sync(name, self.terms[name])  # raises StateSyncError naming the term and the declaration
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and not self._ranks_prepared:
            names = ", ".join(map(repr, self._stateful))
            raise DistributedSetupError(
                f"stateful term{'s' if len(self._stateful) > 1 else ''} {names} updated under "
                f"{dist.get_world_size()} torch.distributed ranks, but prepare_loss was not called on this loss: "
                "each rank would train its own copy; call distill_core.training.ddp.prepare_loss(loss) on every "
                "rank once after building (and restoring) the loss, before the first step"
            )
        self.__dict__["_ranks_checked"] = True

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
        taken = self.plan.forward_keys()
        for figure, value in figures.items():
            key = figure_key(name, figure)
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
            wrong = layout_mismatches(self.plan.readers, shapes)
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
                chosen[pit_key(name)] = pit.identity_share(self.permutations[name])
            elif self._outputs[name]:
                values.update(split_outputs(name, self._outputs[name], term(view)))
            else:
                values[name] = term(view)
        check_outputs(values)
        out: dict[str, torch.Tensor] = {}
        for name, components in self._components.items():
            if name in self._multi:  # <name>_loss: the outputs summed with their weights
                weighted = [values[c] * w[c] for c in components if w[c] != 0.0]
                out[output_key(name)] = sum_promoted(weighted) if weighted else values[components[0]].new_zeros(())
                out.update({output_key(c): values[c] for c in components})
            else:
                out[output_key(name)] = values[name]
        out.update(chosen)
        anchor = next(iter(values.values())) if values else torch.zeros(())
        in_group = self.plan.in_group(w)  # a zero weight adds exactly 0, even to inf: such parts are left out
        parts = [v * in_group[c] for c, v in values.items() if self._group_of[c] is None and in_group[c] != 0.0]
        for gname, group_components in self._group_components.items():
            members = [values[c] * in_group[c] for c in group_components if in_group[c] != 0.0]
            gsum = sum_promoted(members) * w[gname] if members and w[gname] != 0.0 else anchor.new_zeros(())
            out[self._group_keys[gname]] = gsum
            parts.append(gsum)
        total = sum_promoted(parts) if parts else anchor.new_zeros(())
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
                slot.open = torch.isfinite(out[output_key(name)])
            self._pending = (self.plan.effective_weights(w), batch[self.config.balancer.input])
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
        return self.plan.effective_weights(weights)

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
            finite_or_zero(out[output_key(c)]) * weights[c]
            for c in self.components
            if c not in balanced and weights[c] != 0.0
        ]
        return self.balancer.backward(
            {name: out[output_key(name)] for name in balanced},
            {name: weights[name] for name in balanced},
            y,
            sum_promoted(rest) if rest else None,
        )

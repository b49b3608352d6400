"""Gradient balancing (Défossez et al. 2022, §3.4): term weights become shares of the gradient at ``y``.

EnCodec's loss balancer, without host syncs and correct under DDP. Each balanced term ``i`` reads the model
output ``y`` (the batch key ``config.input``); its gradient ``g_i = d value_i / d y`` is divided by an
exponential moving average of its norm and scaled to ``total_norm * w_i / sum(w)``::

    G = sum_i  total_norm * (w_i / sum_j w_j) * g_i / (epsilon + avg(||g_i||))

``avg`` is the published averager: ``s <- decay * s + ||g||``, ``n <- decay * n + 1``, ``avg = s / n`` (an
EMA normalised by the sum of its decays, so early steps are not biased towards 0). ``||g||`` is, with
``per_batch_item``, the mean over batch items of each item's gradient norm, else the norm of the whole
gradient. ``G`` and the gradient of ``rest`` (the weighted sum of the terms that do not read ``y``, e.g. a prior)
reach the model's parameters in one ``torch.autograd.backward`` call.

API::

    balancer = GradientBalancer(BalancerConfig(enabled=True), ["spectral", "waveform_l1"])
    logs = balancer.backward(values, weights, y, rest)

- ``values``: each balanced term's unweighted 0-dim loss, a function of ``y``.
- ``weights``: host floats, schedules already evaluated; a weight of 0 excludes a term (no gradient
  computed, its average left as it was).
- ``rest``: a 0-dim tensor backpropagated with ``G`` (its own weights already applied), or None.
- returns 0-dim tensors: ``ema_norm_<term>`` (the averaged norm), ``ratio_<term>`` (this step's share of
  the balanced gradient's norm at ``y``: ``c_i / sum_j c_j`` with ``c_i = scale_i * ||g_i||``; near
  ``w_i / sum(w)`` when a term's norm is near its average; EnCodec's ``monitor`` ratio, each term's share of
  the unbalanced norms, is ``ema_norm_i / sum_j ema_norm_j``) and ``nonfinite`` (1.0 when a balanced term's
  value or gradient was not finite: that term then adds no gradient and its average does not move).

The averages are buffers (``ema_sum``, ``ema_count``; one entry per term, in the order given), so
``state_dict()`` carries them into checkpoints. ``config.enabled`` and ``config.input`` are for the caller,
which decides whether to balance and which batch key is ``y``.

Under torch.distributed the loss is, as DDP computes it, the mean of the ranks' losses; a rank's gradient at
its own ``y`` is then ``world_size`` times its slice of that loss's gradient. The per-step norms are those of
the global gradient, put together from one all-reduce of a packed tensor: per batch item, the item-weighted
mean of the ranks' means divided by ``world_size``; whole, the root of the ranks' summed squared norms
divided by ``world_size``. Every rank then scales identically, keeps an identical average, and (for terms
that average over examples, with equal shards) a DDP step equals a single process over the global batch.
A term that is not finite on any rank is dropped on every rank for that step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs
import torch
import torch.distributed as dist
from torch import nn

from distill_core.config.converter import InvalidConfig

MAX_TOTAL_NORM = 1e6  # EnCodec trains with 1; float32 overflows near 3.4e38 once the model's Jacobians multiply it


@attrs.define
class BalancerConfig:
    """The ``[balancer]`` section: whether to balance, the batch key of ``y`` and the averaging settings."""

    enabled: bool = False
    input: str = "recon"
    total_norm: float = 1.0
    ema_decay: float = 0.999
    per_batch_item: bool = True
    epsilon: float = 1e-12

    def __attrs_post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        if not self.input:
            problems.append(("input", "expected the batch key of the tensor the balanced terms read, got ''"))
        if not (math.isfinite(self.total_norm) and self.total_norm > 0):
            problems.append(("total_norm", f"expected a finite number > 0, got {self.total_norm!r}"))
        elif self.total_norm > MAX_TOTAL_NORM:
            problems.append(
                (
                    "total_norm",
                    f"expected at most {MAX_TOTAL_NORM:g} (the norm of the balanced gradient "
                    f"at the input: larger ones overflow float32 in the model's backward "
                    f"pass), got {self.total_norm!r}",
                )
            )
        if not (0.0 <= self.ema_decay <= 1.0):
            problems.append(
                (
                    "ema_decay",
                    f"expected 0 <= ema_decay <= 1 (0: this step's norm only, "
                    f"1: the mean of all steps), got {self.ema_decay!r}",
                )
            )
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            problems.append(("epsilon", f"expected a finite number > 0, got {self.epsilon!r}"))
        if problems:
            raise InvalidConfig(problems)


def _distributed_world() -> int:
    """The number of ranks when a process group is initialised, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class GradientBalancer(nn.Module):
    """EnCodec's balancer for a fixed list of terms; see the module docstring for the API and semantics."""

    ema_sum: torch.Tensor
    ema_count: torch.Tensor

    def __init__(self, config: BalancerConfig, terms: Sequence[str]) -> None:
        super().__init__()
        names = list(terms)
        if len(set(names)) != len(names):
            raise ValueError(f"balanced terms must be distinct, got {', '.join(names)}")
        self.config = config
        self.terms = names
        self.register_buffer("ema_sum", torch.zeros(len(names)))
        self.register_buffer("ema_count", torch.zeros(len(names)))
        self._cached: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def extra_repr(self) -> str:
        return f"terms={self.terms}, {self.config}"

    def _check(self, values: Mapping[str, torch.Tensor], weights: Mapping[str, float], y: torch.Tensor) -> None:
        """Host-side checks only (names, shapes, flags): each error names the term or argument."""
        names = set(self.terms)
        for label, given in (("values", values), ("weights", weights)):
            missing = [n for n in self.terms if n not in given]
            extra = [n for n in given if n not in names]
            if missing or extra:
                raise KeyError(
                    f"balancer {label}: expected exactly the balanced terms {', '.join(self.terms)}"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; not balanced: {', '.join(extra)}" if extra else "")
                )
        for name in self.terms:
            w = weights[name]
            if isinstance(w, torch.Tensor) or not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
                raise ValueError(f"balancer weight of term {name!r}: expected a finite host float >= 0, got {w!r}")
            if values[name].dim() != 0:
                raise ValueError(
                    f"balanced term {name!r} returned shape {tuple(values[name].shape)}; expected a 0-dim loss"
                )
        if not y.requires_grad:
            raise ValueError(f"balancer input {self.config.input!r} does not require grad; expected the model's output")
        if self.config.per_batch_item and y.dim() == 0:
            raise ValueError(
                f"balancer input {self.config.input!r} is 0-dim; per_batch_item needs a batch "
                "dimension (set per_batch_item = false)"
            )

    def _norm(self, grad: torch.Tensor) -> torch.Tensor:
        """This step's norm statistic of one term's gradient at y, in float32."""
        if self.config.per_batch_item:
            per_item = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=1, dtype=torch.float32)
            return per_item.mean()
        return torch.linalg.vector_norm(grad, dtype=torch.float32)

    def _global(
        self, norms: torch.Tensor, ok: torch.Tensor, items: int, world: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The norms of the global batch's gradient and the all-ranks-finite mask: one all-reduce, no host read."""
        n = len(self.terms)
        if self.config.per_batch_item:
            contribution = torch.where(ok, norms * items, 0.0)
        else:
            contribution = torch.where(ok, norms.square(), 0.0)
        packed = torch.cat([contribution, ok.to(torch.float32), torch.full((1,), float(items), device=norms.device)])
        dist.all_reduce(packed)
        summed, finite_ranks, total_items = packed[:n], packed[n : 2 * n], packed[2 * n]
        if self.config.per_batch_item:
            global_norms = summed / (total_items * world)
        else:
            global_norms = summed.sqrt() / world
        return global_norms, finite_ranks == world

    def _shares(self, weights: Mapping[str, float], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``w_i / sum(w)`` and the non-zero mask on the device, copied there only when the weights change."""
        key = (tuple(float(weights[n]) for n in self.terms), device)
        if self._cached is None or self._cached[0] != key:
            total = sum(key[0])
            shares = [w / total if total > 0 else 0.0 for w in key[0]]
            self._cached = (
                key,
                torch.tensor(shares, dtype=torch.float32).to(device),
                torch.tensor([w != 0.0 for w in key[0]]).to(device),
            )
        return self._cached[1], self._cached[2]

    def backward(
        self,
        values: Mapping[str, torch.Tensor],
        weights: Mapping[str, float],
        y: torch.Tensor,
        rest: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Backpropagate the balanced gradient at ``y`` and ``rest`` in one call; return the logging tensors."""
        self._check(values, weights, y)
        cfg = self.config
        device = self.ema_sum.device
        active = [weights[name] != 0.0 for name in self.terms]
        zero = torch.zeros((), device=device)
        no = torch.zeros((), dtype=torch.bool, device=device)
        grads: list[torch.Tensor | None] = []
        norm_list, ok_list = [], []
        for name, on in zip(self.terms, active):
            if not on:
                grads.append(None)
                norm_list.append(zero)
                ok_list.append(no)
                continue
            value = values[name]
            if not value.requires_grad:
                raise ValueError(
                    f"balanced term {name!r} does not depend on the balancer input "
                    f"{cfg.input!r}; balance only terms that read it"
                )
            (grad,) = torch.autograd.grad(value, y, retain_graph=True, allow_unused=True)
            if grad is None:
                raise ValueError(
                    f"balanced term {name!r} does not depend on the balancer input "
                    f"{cfg.input!r}; balance only terms that read it"
                )
            norm = self._norm(grad).to(device)
            grads.append(grad)
            norm_list.append(norm)
            ok_list.append(torch.isfinite(value.detach()).to(device) & torch.isfinite(norm))
        with torch.no_grad():
            norms, ok = torch.stack(norm_list), torch.stack(ok_list)
            world = _distributed_world()
            if world > 1:
                norms, ok = self._global(norms, ok, y.shape[0] if y.dim() else 1, world)
            decay = cfg.ema_decay
            self.ema_sum.copy_(torch.where(ok, self.ema_sum * decay + norms, self.ema_sum))
            self.ema_count.copy_(torch.where(ok, self.ema_count * decay + 1.0, self.ema_count))
            ema = self.ema_sum / self.ema_count.clamp(min=torch.finfo(torch.float32).tiny)
            shares, enabled = self._shares(weights, device)
            scales = torch.where(ok, shares * cfg.total_norm / (cfg.epsilon + ema), 0.0)
            contributions = torch.where(ok, scales * norms, 0.0)
            ratios = contributions / contributions.sum().clamp(min=torch.finfo(torch.float32).tiny)
            nonfinite = (enabled & ~ok).any().to(torch.float32)
            balanced: torch.Tensor | None = None
            for i, part in enumerate(grads):
                if part is None:
                    continue
                masked = torch.where(ok[i].to(part.device), part, 0.0)
                scale = scales[i].to(part.device)
                balanced = masked * scale if balanced is None else balanced.addcmul_(masked, scale)
            if balanced is None:
                balanced = torch.zeros_like(y)
        if rest is not None and rest.requires_grad:
            torch.autograd.backward([y, rest], [balanced, None])
        else:
            torch.autograd.backward([y], [balanced])
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(self.terms):
            out[f"ema_norm_{name}"] = ema[i]
            out[f"ratio_{name}"] = ratios[i]
        out["nonfinite"] = nonfinite
        return out

"""Permutation-invariant training: a term's loss as the best assignment of estimated to true sources.

A term opts in by defining ``per_example(batch) -> [B]`` (its loss for each example, whose mean is what
``forward`` returns). ``pairwise = True`` further declares that on inputs with a source axis the term is the
mean over sources of its value on each source alone, which allows the Hungarian assignment.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import attrs
import torch

from distill_core.terms.base import Batch, BatchError, LossTerm

# S! permutations are evaluated at once, each a full term call on the batch: 5 sources are 120 calls' worth of
# memory and compute; past that the Hungarian assignment (S*S pairs) is the way.
MAX_BRUTE_SOURCES = 5
METHODS = ("brute", "hungarian")


@attrs.define
class PITConfig:
    """``pit = {axis = 1}``: the term's first input is permuted along ``axis`` (the source axis) against the
    others; ``method`` is ``"brute"`` (every permutation, on the device) or ``"hungarian"`` (scipy's
    linear_sum_assignment on the pairwise matrix: one host sync per step; pairwise terms only)."""

    axis: int = 1
    method: Literal["brute", "hungarian"] = "brute"


def refusal(cls: type[LossTerm], pit: PITConfig) -> str | None:
    """Why a term class cannot run under this PIT config, or None when it can."""
    if not callable(getattr(cls, "per_example", None)):
        return (
            f"term {cls.name!r} cannot run under pit: it defines no per_example(batch) returning its loss "
            "per example [B]"
        )
    if pit.method == "hungarian" and not getattr(cls, "pairwise", False):
        return (
            f"term {cls.name!r} is not declared pairwise (pairwise = True: the mean over sources of a "
            'per-source loss), which the Hungarian assignment needs; use method = "brute"'
        )
    return None


def identity_share(perm: torch.Tensor) -> torch.Tensor:
    """The share of examples whose chosen assignment is the identity (0-dim, loggable as a mean)."""
    ident = torch.arange(perm.shape[-1], device=perm.device)
    return (perm == ident).all(dim=-1).float().mean()


_PERMS: dict[tuple[int, str], torch.Tensor] = {}


def _permutations(sources: int, device: torch.device) -> torch.Tensor:
    """Every permutation of ``range(sources)`` as a [S!, S] index tensor, cached per device."""
    key = (sources, str(device))
    if key not in _PERMS:
        _PERMS[key] = torch.tensor(list(itertools.permutations(range(sources))), dtype=torch.long, device=device)
    return _PERMS[key]


def _sources(term: Any, batch: Batch, axis: int) -> tuple[str, int]:
    """The permuted input's key and its number of sources, its references checked to pair up with it as the
    caller passed them (before any reshaping here, so a message quotes the caller's shapes)."""
    first = type(term).requires[0]
    value = batch[first]
    if not isinstance(value, torch.Tensor) or not 0 < axis < value.dim():
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise BatchError(
            f"term {term.name!r}: pit axis {axis} does not fit batch[{first!r}] of shape {shape}; "
            "expected an axis after the batch axis 0"
        )
    for key in type(term).requires[1:]:
        other = batch.get(key)
        if not isinstance(other, torch.Tensor):
            continue
        if other.shape != value.shape:  # each reference is scored against each estimate: one shape
            raise BatchError(
                f"term {term.name!r} under pit (axis {axis}): batch[{first!r}] has shape {list(value.shape)} and "
                f"batch[{key!r}] {list(other.shape)}; expected the same shape: as many estimates as references "
                f"along axis {axis}, each as long"
            )
    return first, value.shape[axis]


def _repeat(batch: Batch, keys: tuple[str, ...], times: int) -> dict[str, Any]:
    """The batch with each tensor under ``keys`` tiled ``times`` along the batch axis."""
    return {**batch, **{k: batch[k].repeat(times, *([1] * (batch[k].dim() - 1))) for k in keys}}


def brute_force(term: Any, batch: Batch, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss per example [B], chosen permutation [B, S]) over every permutation, batched: no host sync.

    Permutation p puts estimate p[j] against reference j."""
    first, sources = _sources(term, batch, axis)
    if sources > MAX_BRUTE_SOURCES:
        raise BatchError(
            f"term {term.name!r}: {sources} sources along pit axis {axis} is more than brute force "
            f'takes ({MAX_BRUTE_SOURCES}: {sources}! permutations); set pit.method = "hungarian"'
        )
    est = batch[first]
    perms = _permutations(sources, est.device)
    n, b = perms.shape[0], est.shape[0]
    # [P, B, S, ...]: estimate permuted along the source axis, one copy per permutation, then folded into B.
    permuted = torch.stack([est.index_select(axis, p) for p in perms.unbind(0)]).flatten(0, 1)
    others = tuple(k for k in type(term).requires[1:] if isinstance(batch.get(k), torch.Tensor))
    values = term.per_example({**_repeat(batch, others, n), first: permuted}).view(n, b)
    best, index = values.min(dim=0)
    return best, perms.index_select(0, index)


def pairwise_matrix(term: Any, batch: Batch, axis: int) -> torch.Tensor:
    """[B, S, S]: the term on estimate i against reference j of each example, one batched call."""
    first, sources = _sources(term, batch, axis)
    est = batch[first]
    b = est.shape[0]
    others = tuple(k for k in type(term).requires[1:] if isinstance(batch.get(k), torch.Tensor))

    def pairs(t: torch.Tensor, est_side: bool) -> torch.Tensor:
        t = t.movedim(axis, 1).unsqueeze(2 if est_side else 1)  # [B, S, 1, ...] or [B, 1, S, ...]
        t = t.expand(b, sources, sources, *t.shape[3:]).flatten(0, 2)  # [B*S*S, ...]
        return t.unsqueeze(axis)  # one source along the axis again

    view = {**batch, first: pairs(est, True), **{k: pairs(batch[k], False) for k in others}}
    return term.per_example(view).view(b, sources, sources)


def hungarian(term: Any, batch: Batch, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss per example [B], chosen permutation [B, S]) by linear_sum_assignment: one host sync (the matrix)."""
    try:
        import numpy
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:  # pragma: no cover - scipy comes with the pit extra
        raise ImportError("pit.method = \"hungarian\" needs scipy: pip install 'distill-core[pit]'") from exc
    matrix = pairwise_matrix(term, batch, axis)
    host = matrix.detach().cpu().double().numpy()  # the one sync per step
    # Rows are references here, so the column found for row j is the estimate assigned to reference j.
    cols = numpy.stack([linear_sum_assignment(_assignable(m).T)[1] for m in host])
    perm = torch.from_numpy(cols).to(device=matrix.device, dtype=torch.long)
    chosen = matrix.gather(1, perm.unsqueeze(1)).squeeze(1)  # [B, S]: reference j against estimate perm[b, j]
    # As under brute force, whose minimum over permutations is NaN when any pair is: an example with a NaN pair
    # has a NaN loss (flagged non-finite by the loss), whichever assignment was taken.
    nan_pair = matrix.detach().isnan().flatten(1).any(dim=1)
    best = chosen.mean(dim=1)
    return torch.where(nan_pair, torch.full_like(best, torch.nan), best), perm


def _assignable(matrix: Any) -> Any:
    """A cost matrix scipy accepts (it refuses NaN and infinities): an infinite pair as a cost above any finite
    assignment, a NaN as 0 (its example's loss is NaN whatever is assigned)."""
    import numpy

    finite = numpy.isfinite(matrix)
    if finite.all():
        return matrix
    scale = float(numpy.abs(matrix[finite]).max()) if finite.any() else 1.0
    big = (scale + 1.0) * 4 * matrix.shape[-1]
    return numpy.nan_to_num(matrix, nan=0.0, posinf=big, neginf=-big)


def evaluate(term: Any, batch: Batch, pit: PITConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(the mean over the batch of each example's best loss, the chosen permutation [B, S]).

    ``perm[b, j] = i``: reference j is scored against estimate i (``permuted`` reorders estimates so)."""
    run = hungarian if pit.method == "hungarian" else brute_force
    best, perm = run(term, batch, pit.axis)
    return best.mean(), perm


def permuted(value: torch.Tensor, perm: torch.Tensor, axis: int) -> torch.Tensor:
    """Estimates reordered along ``axis`` so that source j is the one assigned to reference j."""
    shape = [1] * value.dim()
    shape[0], shape[axis] = perm.shape
    return value.gather(axis, perm.view(shape).expand(*value.shape[:axis], perm.shape[1], *value.shape[axis + 1 :]))

"""What terms return, checked and split before the weighted sum: 0-dim tensors, a multi-output term's
declared outputs, and a constructor's error in one line."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import torch

if sys.version_info < (3, 11):  # pragma: no cover - cattrs brings the backport there
    from exceptiongroup import ExceptionGroup

from distill_core.config.converter import problems_from
from distill_core.terms.base import BatchError


def sum_promoted(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Add tensors with dtype promotion (terms may return different float dtypes)."""
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total


def finite_or_zero(value: torch.Tensor) -> torch.Tensor:
    """A non-finite term adds nothing (its gradient is stopped at its inputs' gates)."""
    return torch.where(torch.isfinite(value), value, value.new_zeros(()))


class TermBuildError(RuntimeError):
    """A term's constructor raised: names the term and the distribution it came from."""


class TermOutputError(BatchError):
    """A term returned something other than a 0-dim tensor (the weighted sum and backward need scalars)."""


def check_outputs(values: Mapping[str, Any]) -> None:
    """Each term's value is a 0-dim tensor (metadata only: no host sync)."""
    for name, value in values.items():
        if not isinstance(value, torch.Tensor):
            raise TermOutputError(f"term {name!r} returned {type(value).__name__}; a term returns a 0-dim tensor")
        if value.dim() != 0:
            raise TermOutputError(
                f"term {name!r} returned a tensor of shape {list(value.shape)}; a term returns a "
                "0-dim tensor (reduce it, e.g. with .mean())"
            )


def split_outputs(name: str, outputs: tuple[str, ...], result: Any) -> dict[str, Any]:
    """A multi-output term's mapping as its components ``<name>_<output>``, exactly the declared outputs."""
    if not isinstance(result, Mapping) or set(result) != set(outputs):
        got = f"keys {', '.join(map(str, result))}" if isinstance(result, Mapping) else type(result).__name__
        raise TermOutputError(
            f"term {name!r} declares outputs {', '.join(outputs)} and returned {got}; a "
            "multi-output term returns a mapping of each declared output to a 0-dim tensor"
        )
    return {f"{name}_{output}": result[output] for output in outputs}


def build_message(exc: Exception) -> str:
    """A constructor's error in one line; a cattrs exception group flattened into every reason it holds."""
    problems = problems_from(exc, "")
    if isinstance(exc, ExceptionGroup) and problems:
        return "; ".join(f"{p}: {r}" if p else r for p, r in problems)
    return f"{type(exc).__name__}: {exc}"

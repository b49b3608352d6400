"""The loss's own state in a checkpoint (a stateful term's discriminator, optimizer and counters; the balancer's
averages): what a checkpoint stores under ``loss``, and how a resume restores it before the first step.

Checkpoints written before the loss's state was saved hold at most ``balancer``; they still resume, and any
stateful term starts from its built state (with a warning that names it).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from torch import nn

from distill_core.config.diff import summarize
from distill_core.training.checkpoint import CheckpointError

__all__ = ["loss_state", "restore_loss_state", "stateful_terms"]


def stateful_terms(loss: Any) -> tuple[str, ...]:
    """The names of the loss's terms with an update step of their own (none for a plain loss)."""
    return tuple(getattr(loss, "stateful", ()))


def loss_state(loss: Any) -> dict[str, Any]:
    """The checkpoint entries of a loss: ``loss`` (its whole state dict) and, for readers of older checkpoints,
    ``balancer``; nothing for a loss that is not a module."""
    if not isinstance(loss, nn.Module):
        return {}
    out: dict[str, Any] = {"loss": loss.state_dict()}
    balancer = getattr(loss, "balancer", None)
    if balancer is not None:
        out["balancer"] = balancer.state_dict()
    return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _why(exc: BaseException) -> str:
    """Why a part's saved state did not fit: the differences it lists (a ``changes`` list, as StateMismatch and
    LossChangedError give), else its first line."""
    listed = getattr(exc, "changes", None)
    if isinstance(listed, list) and listed and all(isinstance(c, str) for c in listed):
        return summarize(listed)
    return _first_line(exc)


def _caller_outside() -> int:
    """The ``stacklevel`` that names the first caller outside distill_core (a warning then points at the user's
    line, never at a line of ours, however deep the call came from)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("distill_core."):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def _restore_part(module: nn.Module, saved: Mapping[str, Any], prefix: str) -> str | None:
    """Load one part of the loss from the entries under ``prefix``; why not, if it does not fit."""
    own = {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)}
    if not module.state_dict() and not own:
        return None  # a part without state
    if not own:
        return "no saved state"
    try:
        module.load_state_dict(own)
    except Exception as exc:  # torch's RuntimeError, or a term's own refusal (a fingerprint mismatch)
        return _why(exc)
    return None


def _restore_parts(loss: nn.Module, saved: Mapping[str, Any], source: str) -> None:
    """After an accepted config change: each term that was there before, and each other part of the loss (an
    update schedule's clock), takes its saved state where it fits; what does not fit starts as built, named in
    a warning. The balancer's averages are not restored: they belong to the old set of terms."""
    fresh = []
    for child_name, child in loss.named_children():
        if child_name == "balancer":
            continue
        parts = child.items() if isinstance(child, nn.ModuleDict) else [(None, child)]
        for name, part in parts:
            prefix = f"{child_name}.{name}." if name is not None else f"{child_name}."
            why = _restore_part(part, saved, prefix)
            if why is not None:
                fresh.append(f"{name or child_name!r} ({why})")
    if fresh:
        warnings.warn(
            f"{source}: with the changed loss, these parts start from their built state: " + "; ".join(fresh),
            RuntimeWarning,
            stacklevel=_caller_outside(),
        )


def restore_loss_state(loss: Any, state: Mapping[str, Any], *, changed: bool, source: str | os.PathLike) -> None:
    """Restore a loss from a checkpoint before the first step: everything (``loss``) when the loss is the
    checkpoint's; after an accepted change, only each term's own state where it fits. A checkpoint without
    ``loss`` (older formats) restores the balancer's averages it has; a stateful term then starts as built."""
    if not isinstance(loss, nn.Module):
        return
    saved = state.get("loss")
    if saved is not None and not isinstance(saved, Mapping):
        raise CheckpointError(
            f"{source}: checkpoint entry 'loss' is {type(saved).__name__}, expected the loss's state dict"
        )
    if saved is None:
        balancer = getattr(loss, "balancer", None)
        if balancer is not None and "balancer" in state and not changed:
            balancer.load_state_dict(state["balancer"])  # the gradient norms' running averages
        stateful = stateful_terms(loss)
        if stateful:
            warnings.warn(
                f"{source}: the checkpoint holds no loss state (written before it was saved); "
                f"{', '.join(map(repr, stateful))} start(s) from the built state",
                RuntimeWarning,
                stacklevel=_caller_outside(),
            )
        return
    if changed:
        _restore_parts(loss, saved, str(source))
        return
    try:
        loss.load_state_dict(saved)
    except Exception as exc:  # torch's RuntimeError (keys, shapes) or a term's own refusal
        raise CheckpointError(f"{source}: cannot restore the loss's state: {_first_line(exc)}") from None

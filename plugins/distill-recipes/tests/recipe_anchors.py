"""What the recipe parity tests share: the anchors' imports (through distill-discriminators' and
distill-quantizer's test helpers, whose stand-ins these extend), recorders of the quantizers' per-stage tensors,
and comparisons of D's gradients and weights by the anchors' parameter names.

Stand-ins added here, each for an import or a line that is not the code compared (the tests name each one):
- ``flashy`` (audiocraft's solver library, not installed: it needs dora): ``distrib.average_metrics``, which
  returns its input outside torch.distributed, and ``averager``, flashy's EMA of the balancer's norms. With
  flashy in the anchors' folder (``flashy==0.0.2``), its own utils.py gives the averager; without it the stand-in
  serves one update only (the average of one value is that value) and refuses a second.
- ``transformers`` and ``encodec``, which vocos/experiment.py and vocos/feature_extractors.py import for the
  scheduler builder and the EnCodec feature extractor (neither is used by ``training_step``): empty modules.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from disc_anchors import ANCHORS, anchor, package_folder, use_anchors
from disc_weights import assert_close, load_anchor, renamed
from torch import nn

Stage = tuple[torch.Tensor, torch.Tensor]


# --- the quantizers' per-stage tensors -------------------------------------------------------------------------


def dac_stages(rvq: Any, z: torch.Tensor) -> tuple[Any, list[Stage]]:
    """DAC's ResidualVectorQuantize(z), recording what each stage's ``decode_latents`` reads and returns: the
    projected latents z_e and the codebook vectors z_q [B, D, T] its two losses compare."""
    seen: list[Stage] = []

    def recording(lookup: Callable[[torch.Tensor], Any]) -> Callable[[torch.Tensor], Any]:
        def decode_latents(latents: torch.Tensor) -> Any:
            z_q, indices = lookup(latents)
            seen.append((latents, z_q))
            return z_q, indices

        return decode_latents

    for q in rvq.quantizers:
        q.decode_latents = recording(q.decode_latents)
    try:
        out = rvq(z)
    finally:
        for q in rvq.quantizers:
            del q.decode_latents
    return out, seen


def audiocraft_stages(quantizer: Any, z: torch.Tensor, frame_rate: int) -> tuple[Any, list[Stage]]:
    """audiocraft's ResidualVectorQuantizer(z), recording each stage's codebook input and output [B, T, D]."""
    seen: list[Stage] = []
    hooks = [
        layer._codebook.register_forward_hook(lambda m, i, o: seen.append((i[0], o[0])))
        for layer in quantizer.vq.layers
    ]
    try:
        out = quantizer(z, frame_rate)
    finally:
        for h in hooks:
            h.remove()
    return out, seen


def stacked(stages: Iterable[Stage], channels_last: bool = False) -> dict[str, torch.Tensor]:
    """The stages as the recipes' ``z_e`` and ``z_q``, [B, Q, D, T]."""
    pairs = [(e.transpose(1, 2), q.transpose(1, 2)) if channels_last else (e, q) for e, q in stages]
    return {"z_e": torch.stack([e for e, _ in pairs], 1), "z_q": torch.stack([q for _, q in pairs], 1)}


# --- D, by the anchor's names ----------------------------------------------------------------------------------


def pairs(
    ours: nn.Module, theirs: nn.Module, unwrap: Callable[[str], str] = lambda n: n
) -> list[tuple[str, nn.Parameter, nn.Parameter]]:
    """Every parameter of ``theirs`` with the one of ``ours`` it was loaded into (disc_weights' renaming)."""
    state = ours.state_dict()
    mine = dict(ours.named_parameters())
    out = [(name, mine[renamed(name, state, unwrap)], p) for name, p in theirs.named_parameters()]
    assert len(out) == len(mine), f"{len(out)} anchor parameters for {len(mine)} of ours"
    return out


def assert_same_gradients(
    ours: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor], what: str, tol: float = 1e-5
) -> None:
    """D's gradients equal as one vector: every entry to ``tol`` of the largest entry of D's whole gradient.

    One scale for all of D: a parameter whose own gradient is ~1e-10 of D's largest (seen in DAC's MRD bands)
    differs by float32 rounding alone, which is large beside its own tiny values."""
    assert set(ours) == set(theirs), f"{what}: parameters differ: {sorted(set(ours) ^ set(theirs))[:5]}"
    for name in theirs:
        assert ours[name].shape == theirs[name].shape, f"{what} grad {name}: shapes differ"
    names = sorted(theirs)
    assert_close(
        torch.cat([ours[n].flatten() for n in names]),
        torch.cat([theirs[n].flatten() for n in names]),
        f"{what} grads",
        tol,
    )


def grads_at_step(optimizer: torch.optim.Optimizer, named: Mapping[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    """A dict that the optimiser's next step fills, just before it moves anything, with each parameter's gradient
    (after any clipping): the Adversarial frees D's gradients once D has stepped."""
    seen: dict[str, torch.Tensor] = {}

    def record(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        seen.update({name: p.grad.detach().clone() for name, p in named.items() if p.grad is not None})
        handle.remove()

    handle = optimizer.register_step_pre_hook(record)
    return seen


def snapshot(matched: list[tuple[str, nn.Parameter, nn.Parameter]]) -> dict[str, dict[str, torch.Tensor]]:
    """Both sides' D weights now, by the anchor's names: ``{"ours": ..., "theirs": ...}``."""
    return {
        "ours": {name: mine.detach().clone() for name, mine, _ in matched},
        "theirs": {name: theirs.detach().clone() for name, _, theirs in matched},
    }


def assert_same_weights(
    weights: Mapping[str, Mapping[str, torch.Tensor]],
    what: str,
    gradients: Mapping[str, Mapping[str, torch.Tensor]],
    tol: float = 1e-5,
) -> None:
    """D's weights (a ``snapshot``) equal after the optimiser's step, as one vector (to ``tol`` of D's largest).

    Adam's first step moves a weight by lr * g / (|g| + eps): about lr x sign(g), whatever |g|. Where the two
    sides' gradients differ by rounding in a way that matters to that step (a hinge loss's saturated units give
    exactly 0 on one side and 1e-9 on the other), the step is decided by rounding alone. So the weights compared
    are those whose two gradients (``gradients["ours"]``, ``["theirs"]``, by name) agree to 1%; at least 90% of
    D's weights must be among them (the gradients themselves are compared as a whole elsewhere)."""
    names = sorted(gradients["theirs"])
    g_theirs = torch.cat([gradients["theirs"][n].flatten() for n in names])
    g_ours = torch.cat([gradients["ours"][n].flatten() for n in names])
    kept = (g_ours - g_theirs).abs() <= 1e-2 * g_theirs.abs()
    assert kept.float().mean() > 0.9, f"{what}: only {kept.float().mean():.0%} of D's gradient entries agree to 1%"
    mine = torch.cat([weights["ours"][n].flatten() for n in names])[kept]
    theirs = torch.cat([weights["theirs"][n].flatten() for n in names])[kept]
    assert_close(mine, theirs, f"{what} weights", tol)


def resync(ours: nn.Module, theirs: nn.Module, unwrap: Callable[[str], str] = lambda n: n) -> None:
    """The anchor's stepped D weights into ours, for the generator's pass: given the same D, the same loss.

    The two D steps agree (loss, gradients, the weights that well-conditioned gradients moved), but Adam's
    sign-like first step moves the weights whose gradient is at rounding level by up to lr either way; the
    generator's comparison starts from one D, as the task states it ("the same discriminator weights")."""
    load_anchor(ours, theirs, unwrap)


def grads(total: torch.Tensor, wrt: list[torch.Tensor]) -> list[torch.Tensor]:
    """d total / d each of ``wrt`` (zeros where it does not depend on one), the graph kept."""
    found = torch.autograd.grad(total, wrt, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(found, wrt)]


# --- audiocraft's solver pieces --------------------------------------------------------------------------------


def _one_update_averager(beta: float = 1.0) -> Callable[[Mapping[str, Any]], dict[str, float]]:
    """flashy.averager for the first update alone; a second call is refused (see the module docstring)."""
    calls = 0

    def update(metrics: Mapping[str, Any], weight: float = 1.0) -> dict[str, float]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("the flashy stand-in averages one update only: install flashy in the anchors' folder")
        return {key: float(value) for key, value in metrics.items()}

    return update


def flashy_averager() -> Callable[..., Any] | None:
    """flashy 0.0.2's own ``averager`` (its utils.py, which imports torch only), when the anchors hold flashy."""
    path = ANCHORS / "flashy" / "utils.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_anchor_flashy_utils", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.averager  # type: ignore[no-any-return]


def audiocraft_solver_pieces() -> types.SimpleNamespace:
    """audiocraft 1.3.0's Balancer, AdversarialLoss and losses, MS-STFTD and ResidualVectorQuantizer, with the
    flashy stand-ins; ``real_averager`` tells whether flashy's own averager is in use."""
    use_anchors()
    base = ANCHORS / "audiocraft"
    for name in ("losses", "quantization"):  # their __init__s import every loss and the quantizer's base only
        if f"audiocraft.{name}" not in sys.modules:
            package_folder(f"audiocraft.{name}", base / name)
    flashy = sys.modules["flashy"]
    if getattr(flashy, "distrib", None) is None:
        flashy.distrib = types.ModuleType("flashy.distrib")  # type: ignore[attr-defined]
    for key, value in {
        "broadcast_model": lambda model: None,
        "eager_sync_model": lambda model: _nothing(),
        "average_metrics": lambda metrics, count=1.0: metrics,
        "broadcast_tensors": lambda tensors, src=0: None,
    }.items():
        if not hasattr(flashy.distrib, key):
            setattr(flashy.distrib, key, value)
    if getattr(flashy, "utils", None) is None:
        flashy.utils = types.SimpleNamespace()  # type: ignore[attr-defined]
    if not hasattr(flashy.utils, "readonly"):
        flashy.utils.readonly = lambda model: _nothing()
    real = flashy_averager()
    flashy.averager = real if real is not None else _one_update_averager  # type: ignore[attr-defined]
    return types.SimpleNamespace(
        balancer=importlib.import_module("audiocraft.losses.balancer"),
        specloss=importlib.import_module("audiocraft.losses.specloss"),
        adversarial=importlib.import_module("audiocraft.adversarial.losses"),
        msstftd=importlib.import_module("audiocraft.adversarial.discriminators.msstftd"),
        vq=importlib.import_module("audiocraft.quantization.vq"),
        real_averager=real is not None,
    )


class _nothing:
    """A context manager that does nothing (flashy's helpers, in one process, with D left trainable)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- Vocos's experiment ----------------------------------------------------------------------------------------


def vocos_experiment() -> types.ModuleType:
    """vocos 0.1.0's experiment.py (pytorch_lightning is the project's own; transformers and encodec empty)."""
    use_anchors()
    sys.modules.setdefault("transformers", types.ModuleType("transformers"))
    if "encodec" not in sys.modules:
        encodec = types.ModuleType("encodec")
        encodec.EncodecModel = None  # type: ignore[attr-defined]
        sys.modules["encodec"] = encodec
    return anchor("vocos.experiment")

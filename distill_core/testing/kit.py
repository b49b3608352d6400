"""The plugin test kit's checks: ``check_term``, ``check_stateful`` and ``check_discovery``.

``check_term`` is the conformance check every loss term should pass; a plugin's own test calls it with a
factory that makes a small batch for the term.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from distill_core.config.converter import converter
from distill_core.config.schedules import weight_at
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.config import LossConfig
from distill_core.registry.discovery import (
    PluginError,
    Registry,
    TermInfo,
    UnknownTermError,
    get_registry,
    validate_term_class,
)
from distill_core.registry.hookspecs import PROJECT
from distill_core.terms.base import LossTerm
from distill_core.terms.declared import declared_outputs, is_stateful

BatchFactory = Callable[[torch.dtype, torch.device], Mapping[str, Any]]


SYNC_METHODS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "cpu", "numpy")


def _grad_keys(term: Any, batch: Mapping[str, Any]) -> list[str]:
    keys = [
        k
        for k in type(term).requires
        if k != "target" and isinstance(batch.get(k), torch.Tensor) and batch[k].is_floating_point()
    ]
    return keys


FACTORY_SEED = 0


def _make(batch_factory: BatchFactory, dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """One batch from the factory, drawn from a fixed seed without disturbing the caller's random state."""
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(FACTORY_SEED)
        return dict(batch_factory(dtype, device))


def _detached(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The same tensors, without the autograd history of an earlier pass."""
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _prepared(base: Mapping[str, Any], term: Any) -> tuple[dict[str, Any], list[str]]:
    batch = dict(base)
    keys = _grad_keys(term, batch)
    for k in keys:
        batch[k] = batch[k].detach().clone().requires_grad_(True)
    return batch, keys


def _value(term: Any, batch: Mapping[str, Any], term_class: type[LossTerm] | None = None) -> torch.Tensor:
    """The term's value on a batch: a multi-output term's outputs summed with their default weights (each
    output checked to be a finite-shaped 0-dim tensor first), as a CombinedLoss logs it under ``<name>_loss``."""
    out = term(batch)
    cls = term_class or type(term)
    outputs = declared_outputs(cls)
    if not outputs:
        return out
    name = getattr(cls, "name", cls.__name__)
    assert isinstance(out, Mapping) and set(out) == set(outputs), (
        f"{name}: declares outputs {', '.join(outputs)} but returned {out!r}"
    )
    for key, value in out.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, (
            f"{name}: output {key!r} is {value!r}, expected a 0-dim tensor"
        )
    weights = cls.output_weights(getattr(term, "config", None))
    return sum(
        (out[o] * weight_at(weights.get(o, 1.0)) for o in outputs[1:]),
        out[outputs[0]] * weight_at(weights.get(outputs[0], 1.0)),
    )


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def _grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.detach().clone() for p in module.parameters()]


def check_stateful(term_class: type[LossTerm], batch_factory: BatchFactory, config: Any = None) -> None:
    """Assert the contract of a term with an update step, run through a CombinedLoss as training runs it:
    the update changes the term's own state and nothing upstream (the producer of its inputs gets no gradient,
    the inputs are not written); the loss's backward adds no gradient to the term's parameters; the state
    round-trips through ``state_dict`` (a fresh loss loaded with it then updates bit-identically); eval mode
    runs no update."""
    name = getattr(term_class, "name", term_class.__name__)
    config = config if config is not None else term_class.config_class()
    registry = Registry()
    registry.register_term(term_class)

    def build() -> CombinedLoss:
        return CombinedLoss(LossConfig.of({name: config}), registry=registry)

    base = _make(batch_factory, torch.float32, torch.device("cpu"))
    producer = torch.nn.Parameter(torch.ones(()))  # stands for the model upstream of the term's inputs
    keys = [
        k
        for k in term_class.requires
        if k != "target" and isinstance(base.get(k), torch.Tensor) and base[k].is_floating_point()
    ]
    batch = {k: (v * producer if k in keys else v) for k, v in base.items()}
    inputs = {k: v.detach().clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
    loss = build().train()
    before = _snapshot(loss)
    figures = loss.update(batch)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in figures.values()), (
        f"{name}: update's figures must be 0-dim tensors, got {figures!r}"
    )
    after = _snapshot(loss)
    assert any(not torch.equal(before[k], after[k]) for k in before), f"{name}: update changed none of its state"
    assert producer.grad is None, f"{name}: update sent a gradient upstream (to the producer of its inputs)"
    assert all(torch.equal(v, inputs[k]) for k, v in batch.items() if k in inputs), (
        f"{name}: update wrote into its inputs"
    )
    grads = _grads(loss)
    out = loss(batch)
    out["total_loss"].backward()
    assert producer.grad is not None, f"{name}: the loss sends no gradient to the producer of its inputs"
    assert all(
        (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
        for a, b in zip(grads, _grads(loss))
    ), f"{name}: the loss's backward changed gradients of the term's own parameters (they are read-only there)"
    buffer = io.BytesIO()  # as a checkpoint holds it: no tensor shared with the live loss, loadable weights-only
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    with torch.random.fork_rng():
        torch.manual_seed(FACTORY_SEED + 1)  # a fresh loss's own start differs; the loaded state must not
        fresh = build().train()
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(_snapshot(loss).values(), _snapshot(fresh).values())), (
        f"{name}: state_dict does not round-trip"
    )
    loss.update(_detached(batch))
    fresh.update(_detached(batch))
    assert all(torch.equal(a, b) for a, b in zip(_snapshot(loss).values(), _snapshot(fresh).values())), (
        f"{name}: after loading its state_dict, an update differs from the original's (optimizer or counters "
        "not in the state?)"
    )
    loss.eval()
    held = _snapshot(loss)
    assert loss.update(_detached(batch)) == {}, f"{name}: update ran in eval mode"
    assert all(torch.equal(held[k], v) for k, v in _snapshot(loss).items()), f"{name}: eval mode changed state"


def check_term(
    term_class: type[LossTerm],
    batch_factory: BatchFactory,
    config: Any = None,
    *,
    compile_backend: str = "aot_eager",
    gradcheck: bool = True,
) -> None:
    """Assert the loss-term contract; raise AssertionError naming the failed property.

    Checks: the class passes discovery's checks (``validate_term_class``: what marks an installed term
    BROKEN); a finite 0-dim output; finite gradients reaching the inputs it reads (``recon`` first);
    exactly 0 when recon == target where the class declares ``zero_at_identity``; float64 gradcheck;
    CPU, and CUDA when present; bfloat16 autocast without error or NaN and within 1e-2 of float32;
    ``torch.compile`` giving the eager value; the config round-tripping through the converter. A
    multi-output term (``outputs``) returns each declared output as a 0-dim tensor, and the checks run on
    their sum under the default output weights; a stateful term (``update``) also passes ``check_stateful``.

    The factory is called once per device and dtype, under a fixed seed, and every comparison (autocast
    against float32, compiled against eager) runs on that one batch, so an unseeded factory is not flaky.
    """
    name = getattr(term_class, "name", getattr(term_class, "__name__", repr(term_class)))
    try:
        validate_term_class(term_class)  # what discovery checks: a class failing here is BROKEN when installed
    except PluginError as exc:
        raise AssertionError(f"{name}: discovery would mark this term BROKEN: {exc}") from None
    config = config if config is not None else term_class.config_class()
    back: object = converter.structure(converter.unstructure(config), term_class.config_class)
    assert back == config, f"{name}: config does not round-trip: {config!r} -> {back!r}"

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        term = term_class(config).to(device)
        base = _make(batch_factory, torch.float32, device)
        batch, keys = _prepared(base, term)
        out = _value(term, batch)
        assert isinstance(out, torch.Tensor) and out.dim() == 0, f"{name}: expected a 0-dim tensor, got {out!r}"
        assert bool(torch.isfinite(out)), f"{name} on {device}: non-finite output {out}"
        out.backward()
        assert keys, f"{name}: none of its required batch keys carries a gradient"
        for k in keys:
            grad = batch[k].grad
            assert grad is not None, f"{name} on {device}: no gradient reaches batch[{k!r}]"
            assert bool(torch.isfinite(grad).all()), f"{name} on {device}: non-finite gradient in batch[{k!r}]"
        if "recon" in type(term).requires:
            assert batch["recon"].grad.abs().sum() > 0, f"{name} on {device}: zero gradient for batch['recon']"

        if getattr(term_class, "zero_at_identity", False):
            same = _detached(base)
            same["recon"] = same["target"].clone()
            value = _value(term, same).detach()  # a term with parameters gives a tensor that requires grad
            assert float(value.abs()) <= 1e-6, f"{name} declares zero_at_identity but gives {float(value)}"

        with torch.autocast(device.type, dtype=torch.bfloat16):
            low = _value(term, _detached(base)).detach()
        assert bool(torch.isfinite(low)), f"{name} on {device}: non-finite value under bfloat16 autocast"
        ref = float(out.detach())
        assert abs(float(low) - ref) <= 1e-2 * max(abs(ref), 1e-6), (
            f"{name} on {device}: bfloat16 autocast value {float(low)} vs float32 {ref} on the same batch"
        )

    term = term_class(config)
    if gradcheck:
        batch, keys = _prepared(_make(batch_factory, torch.float64, torch.device("cpu")), term.double())

        def fn(*tensors: torch.Tensor) -> torch.Tensor:
            return _value(term, {**batch, **dict(zip(keys, tensors))})

        assert torch.autograd.gradcheck(fn, tuple(batch[k] for k in keys), fast_mode=True), (
            f"{name}: float64 gradcheck failed"
        )
        term = term.float()

    if compile_backend:
        torch._dynamo.reset()
        batch = _make(batch_factory, torch.float32, torch.device("cpu"))
        eager = _value(term, batch).detach()
        compiled = _value(torch.compile(term, backend=compile_backend), batch, term_class).detach()
        assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-7), (
            f"{name}: torch.compile({compile_backend}) gives {float(compiled)}, eager {float(eager)}"
        )

    if is_stateful(term_class):
        check_stateful(term_class, batch_factory, config)


def write_distribution(
    root: str | os.PathLike, name: str, version: str, modules: Mapping[str, str], entry_points: Mapping[str, str]
) -> Path:
    """Write an installed distribution under ``root`` (put it on sys.path): modules and a dist-info whose
    entry points (group ``distill``) map term names to modules. For testing real discovery without pip."""
    root = Path(root)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[distill]\n{lines}")
    return info


def check_discovery(term_class: type[LossTerm], distribution: str) -> TermInfo:
    """Assert that entry-point discovery finds ``term_class`` from the installed ``distribution`` with its
    installed version; return the registry's TermInfo."""
    from importlib import metadata

    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        raise AssertionError(
            f"distribution {distribution!r} is not installed; install it first (pip install -e .)"
        ) from None
    try:
        info = get_registry().get(term_class.name)
    except UnknownTermError as exc:
        raise AssertionError(
            f"{term_class.name!r} is not discovered from the installed {distribution}: its "
            f"entry point must be in the {PROJECT!r} group ([project.entry-points.{PROJECT}] in "
            f"pyproject.toml); discovery says: {exc}"
        ) from None
    assert info.cls is term_class, f"{term_class.name!r} resolves to {info.cls!r}, not {term_class!r}"
    assert (info.provenance.distribution, info.provenance.version) == (distribution, version), (
        f"{term_class.name!r} comes from {info.provenance}, expected {distribution}=={version}"
    )
    return info

"""The plugin test kit's checks: ``check_term``, ``check_stateful`` and ``check_discovery``.

``check_term`` is the conformance check every loss term should pass; a plugin's own test calls it with a
factory that makes a small batch for the term.
"""

from __future__ import annotations

import functools
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


_MODULE_INTERNALS = frozenset(vars(torch.nn.Module()))  # nn.Module's own bookkeeping: not a term's state
_PLAIN = (bool, int, float, str, torch.Tensor)


def _copied(value: Any) -> Any:
    """A copy of a state value that later steps cannot change in place (tensors cloned, containers rebuilt)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copied(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal state: tensors bit for bit (NaN equal to NaN, same shape and dtype), containers item by item."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        return torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _differing(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ between two snapshots (or that only one has), sorted."""
    return sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not _same(a[k], b[k]))


def _unsaved(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The buffers ``state_dict`` leaves out (registered with ``persistent=False``), by name."""
    saved = module.state_dict().keys()
    return {k: v.detach().clone() for k, v in module.named_buffers() if k not in saved and v is not None}


def _attributes(module: torch.nn.Module) -> dict[str, Any]:
    """The plain attributes (numbers, strings, tensors) of the module and its submodules, by dotted name."""
    return {
        f"{prefix + '.' if prefix else ''}{k}": _copied(v)
        for prefix, sub in module.named_modules()
        for k, v in vars(sub).items()
        if k not in _MODULE_INTERNALS and isinstance(v, _PLAIN)
    }


def _state(module: torch.nn.Module) -> dict[str, Any]:
    """A term's state: its ``state_dict`` (extra state included) and the buffers that it leaves out."""
    return {**{k: _copied(v) for k, v in module.state_dict().items()}, **_unsaved(module)}


def _named(keys: list[str], limit: int = 4) -> str:
    """A few keys for a message, with how many more there are."""
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _forward_keeps_state(name: str, module: torch.nn.Module, run: Callable[[], Any]) -> Any:
    """Run the term's forward (``run``); assert it left every piece of the term's state as it was."""
    before = _state(module)
    out = run()
    changed = _differing(before, _state(module))
    assert not changed, (
        f"{name}: forward changed the term's own state ({_named(changed)}); the loss's pass must leave the "
        "state as it found it (a term's state changes only in its update step)"
    )
    return out


def _outputs(out: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


ROUND_TRIP = "after state_dict() -> a fresh term -> load_state_dict()"


def _grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.detach().clone() for p in module.parameters()]


def check_stateful(term_class: type[LossTerm], batch_factory: BatchFactory, config: Any = None) -> None:
    """Assert the contract of a term with an update step, run through a CombinedLoss as training runs it:
    the update changes the term's own state and nothing upstream (the producer of its inputs gets no gradient,
    the inputs are not written), and keeps no state outside ``state_dict`` (a ``persistent=False`` buffer, a
    plain attribute); the forward changes no state; the loss's backward adds no gradient to the term's
    parameters; the state survives ``state_dict()`` -> a fresh term -> ``load_state_dict()`` (the loaded loss
    then gives the original's forward, and updates bit-identically); eval mode runs no update."""
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
    before, unsaved, attributes = _snapshot(loss), _unsaved(loss), _attributes(loss)
    figures = loss.update(batch)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in figures.values()), (
        f"{name}: update's figures must be 0-dim tensors, got {figures!r}"
    )
    lost = _differing(unsaved, _unsaved(loss))
    assert not lost, (
        f"{name}: update changes the buffer {_named(lost)}, which state_dict() leaves out (registered with "
        "persistent=False): a checkpoint loses it and a resumed run starts it afresh; register it persistent "
        "(the default)"
    )
    moved = _differing(attributes, _attributes(loss))  # plain attributes the update changes: state as well
    after = _snapshot(loss)
    assert any(not torch.equal(before[k], after[k]) for k in before), f"{name}: update changed none of its state"
    assert producer.grad is None, f"{name}: update sent a gradient upstream (to the producer of its inputs)"
    assert all(torch.equal(v, inputs[k]) for k, v in batch.items() if k in inputs), (
        f"{name}: update wrote into its inputs"
    )
    grads = _grads(loss)
    out = _forward_keeps_state(name, loss, lambda: loss(batch))
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
    _same_forward(name, loss, fresh, "", _detached(batch))
    figures = loss.update(_detached(batch))
    again = fresh.update(_detached(batch))
    assert all(torch.equal(a, b) for a, b in zip(_snapshot(loss).values(), _snapshot(fresh).values())), (
        f"{name}: after loading its state_dict, an update differs from the original's (optimizer or counters "
        "not in the state?)"
    )
    differ = _differing(_outputs(figures), _outputs(again))
    assert not differ, (
        f"{name}: {ROUND_TRIP}, update's figures {_named(differ)} differ from the original's: the update reads "
        "state that state_dict() does not hold (a persistent=False buffer, a plain attribute), so a resumed run "
        "would not be the same run"
    )
    held, loaded = _attributes(loss), _attributes(fresh)
    lost = [k for k in moved if not (k in held and k in loaded and _same(held[k], loaded[k]))]
    assert not lost, (
        f"{name}: {ROUND_TRIP} and one more update each, the attribute {_named(lost)} differs from the "
        "original's: update keeps state outside state_dict(), which a checkpoint loses; keep it in a buffer or in "
        "get_extra_state()"
    )
    _same_forward(name, loss, fresh, " and one more update each", _detached(batch))
    loss.eval()
    held = _snapshot(loss)
    assert loss.update(_detached(batch)) == {}, f"{name}: update ran in eval mode"
    assert all(torch.equal(held[k], v) for k, v in _snapshot(loss).items()), f"{name}: eval mode changed state"


def _same_forward(name: str, loss: CombinedLoss, fresh: CombinedLoss, when: str, batch: Mapping[str, Any]) -> None:
    """Assert that a loss loaded from ``loss``'s state_dict gives the same forward: what a checkpoint does not
    carry is lost on resume."""
    with torch.no_grad():
        differ = _differing(_outputs(loss(batch)), _outputs(fresh(batch)))
    assert not differ, (
        f"{name}: {ROUND_TRIP}{when}, forward gives other {_named(differ)} than "
        "the original: it reads state that state_dict() does not hold (a persistent=False buffer, a plain "
        "attribute), so a resumed run would not be the same run"
    )


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
    BROKEN); a forward that leaves the term's state (``state_dict``, buffers, plain attributes) as it was; a
    finite 0-dim output; finite gradients reaching the inputs it reads (``recon`` first);
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
        out = _forward_keeps_state(name, term, functools.partial(_value, term, batch))
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

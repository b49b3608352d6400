"""What a plugin author trips over: silent plugins, lost terms, allow-lists, raw errors (flaky checks:
tests/testing/test_check_term.py)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import attrs
import pytest
import torch

import distill_core
from distill_core import (
    BatchError,
    CombinedLoss,
    ConfigError,
    InvalidConfig,
    LossConfig,
    LossTerm,
    PluginError,
    Registry,
    hookimpl,
    load_config,
)
from distill_core.registry.discovery import reset_registry, term_origins
from distill_core.terms.base import check_pair
from distill_core.testing import check_term, write_distribution

_counter = itertools.count()

TERM = """
import attrs
from distill_core import LossTerm, hookimpl

@attrs.define
class Cfg:
    weight: float = 1.0

class T(LossTerm):
    name = "{term}"
    config_class = Cfg
    requires = ("recon",)
    def forward(self, batch):
        return batch["recon"].mean()
"""

NO_HOOK = TERM
UNMARKED = (
    TERM
    + """
def distill_loss_terms(register):
    register(T)
"""
)
NEVER_REGISTERS = (
    TERM
    + """
@hookimpl
def distill_loss_terms(register):
    pass
"""
)
MISSPELT = (
    TERM
    + """
@hookimpl
def distill_loss_term(register):
    register(T)
"""
)
WRONG_ARGUMENT = (
    TERM
    + """
@hookimpl
def distill_loss_terms(registrar):
    registrar(T)
"""
)
GOOD = (
    TERM
    + """
@hookimpl
def distill_loss_terms(register):
    register(T)
"""
)


def make_dist(root: Path, dist: str, version: str, term: str, source: str) -> str:
    """A real installed distribution (dist-info + module) with one entry point in group 'distill'."""
    module = f"papercut_{dist.replace('-', '_')}_{next(_counter)}"
    write_distribution(root, dist, version, {module: source.format(term=term)}, {term: module})
    return module


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for env in ("DISTILL_STRICT_PLUGINS", "DISTILL_DISABLE_PLUGIN_AUTOLOAD", "DISTILL_PLUGINS"):
        monkeypatch.delenv(env, raising=False)
    return tmp_path


@pytest.fixture
def cli(monkeypatch):
    """Run distill-loss in this process (a fresh registry from the current sys.path and environment)."""
    from click.testing import CliRunner

    from distill_core.cli.main import main

    def run(*args: str, **env: str):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        old = reset_registry(None)
        try:
            return CliRunner().invoke(main, list(args))
        finally:
            reset_registry(old)

    return run


# --- 1. a plugin that registers no term is BROKEN, with the cause -----------------------------------------


@pytest.mark.parametrize(
    "source,hint",
    [
        (
            NO_HOOK,
            "{module} has no distill_loss_terms hook; check that the entry point names the module that "
            "defines '@hookimpl def distill_loss_terms(register)' (a package must import it in __init__.py)",
        ),
        (
            UNMARKED,
            "{module}.distill_loss_terms is not marked as a hook; put @hookimpl (from distill_core import "
            "hookimpl) on the line above 'def distill_loss_terms(register)'",
        ),
        (
            NEVER_REGISTERS,
            "{module}.distill_loss_terms ran but never called register(); call register(YourTerm) "
            "once for each LossTerm class",
        ),
    ],
    ids=["hook-missing", "hookimpl-forgotten", "register-never-called"],
)
def test_a_plugin_registering_no_term_is_broken_with_a_hint(site, monkeypatch, source, hint):
    module = make_dist(site, "distill-silent", "0.4", "silent", source)
    make_dist(site, "distill-loud", "0.1", "loud", GOOD)
    reg = Registry()
    reg.load_entrypoints()
    assert "loud" in reg.terms and "silent" not in reg.terms
    expected = f"silent (distill-silent==0.4): registered no terms: {hint.format(module=module)}"
    assert [str(b) for b in reg.broken if b.name == "silent"] == [expected]
    # a config naming it repeats the cause
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config({"recipe": "none", "terms": {"silent": {}}}, registry=reg)
    # strict mode makes it fatal at discovery
    monkeypatch.setenv("DISTILL_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=re.escape(f"plugin {expected}")):
        Registry().load_entrypoints()


def test_plugins_command_lists_a_silent_plugin_as_broken(site, cli):
    module = make_dist(site, "distill-silent", "0.4", "silent", UNMARKED)
    r = cli("plugins")
    assert r.exit_code == 0, r.output
    assert (
        f"BROKEN silent (distill-silent==0.4): registered no terms: {module}.distill_loss_terms is not marked as a hook"
    ) in r.stdout


def test_in_process_plugin_registering_nothing_is_an_error(distill_registry):
    class Empty:
        @hookimpl
        def distill_loss_terms(self, register):
            return None

    with pytest.raises(
        PluginError,
        match=r"registered no terms: Empty.distill_loss_terms ran but never called "
        r"register\(\)",
    ):
        distill_core.register(Empty())
    assert not distill_registry.pm.get_plugins()


# --- 2. pluggy's validation, said with the expected hook ---------------------------------------------------


def test_wrong_hook_argument_names_the_expected_one(site):
    make_dist(site, "distill-wrongarg", "1.0", "wrongarg", WRONG_ARGUMENT)
    reg = Registry()
    reg.load_entrypoints()
    (broken,) = [b for b in reg.broken if b.name == "wrongarg"]
    assert broken.error == (
        "PluginError: plugin 'distill-wrongarg:wrongarg': hook distill_loss_terms(registrar) "
        "takes 'registrar', which the hook does not pass; expected distill_loss_terms(register)"
    )


def test_misspelt_hook_gets_a_did_you_mean(site):
    make_dist(site, "distill-misspelt", "1.0", "misspelt", MISSPELT)
    reg = Registry()
    reg.load_entrypoints()
    (broken,) = [b for b in reg.broken if b.name == "misspelt"]
    assert broken.error == (
        "PluginError: plugin 'distill-misspelt:misspelt' defines unknown hook "
        "'distill_loss_term'; did you mean 'distill_loss_terms'? (the hook is "
        "distill_loss_terms(register))"
    )
    assert not [
        p
        for p in reg.pm.get_plugins()
        if getattr(p, "__name__", "").startswith("papercut_") and "misspelt" in p.__name__
    ]


def test_hook_without_the_register_argument(distill_registry):
    class NoArg:
        @hookimpl
        def distill_loss_terms(self):
            return None

    with pytest.raises(
        PluginError,
        match=re.escape(
            "registered no terms: NoArg.distill_loss_terms takes no "
            "'register' argument; expected distill_loss_terms(register)"
        ),
    ):
        distill_registry.register_plugin(NoArg())


# --- 3. a missing third-party term names the distribution it came from ------------------------------------

LOCK = {
    "spectral_flux": {
        "distribution": "distill-spectral-flux",
        "version": "0.1.0",
        "entry_point": "spectral_flux = distill_spectral_flux",
        "config": {"weight": 1.0},
    }
}


def test_unknown_term_named_by_a_lock_file(tmp_path, distill_registry):
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps(LOCK))
    with term_origins(lock=lock), pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"spectral_flux": {}}})
    assert err.value.problems == [
        (
            "terms.spectral_flux",
            f"term 'spectral_flux' is not installed; it came from "
            f"distill-spectral-flux 0.1.0 ({lock}): pip install distill-spectral-flux==0.1.0",
        )
    ]
    # outside the context the plain message is back
    with pytest.raises(ConfigError, match="unknown term 'spectral_flux'; installed terms: none"):
        load_config({"recipe": "none", "terms": {"spectral_flux": {}}})


def test_unknown_term_named_by_a_checkpoint(tmp_path, distill_registry):
    from distill_core.training.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "last.pt", {"provenance": LOCK})
    with term_origins(lock=ckpt), pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"spectral_flux": {}}})
    assert f"it came from distill-spectral-flux 0.1.0 ({ckpt}): pip install distill-spectral-flux==0.1.0" in str(
        err.value
    )


@pytest.mark.parametrize(
    "pin,origin,install",
    [
        ("distill-spectral-flux==0.1.0", "distill-spectral-flux 0.1.0", "distill-spectral-flux==0.1.0"),
        ("distill_spectral_flux>=0.1", "distill_spectral_flux >=0.1", "'distill_spectral_flux>=0.1'"),
    ],
)
def test_unknown_term_named_by_required_plugins(distill_registry, pin, origin, install):
    with pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"spectral_flux": {}}, "required_plugins": [pin]})
    assert (
        "terms.spectral_flux",
        f"term 'spectral_flux' is not installed; it came from {origin} (required_plugins): pip install {install}",
    ) in err.value.problems


def test_a_term_left_out_by_the_allowlist_says_so(site, monkeypatch):
    make_dist(site, "distill-spectral-flux", "0.2.0", "spectral_flux", GOOD)
    monkeypatch.setenv("DISTILL_PLUGINS", "distill-stft")
    reg = Registry()
    reg.load_entrypoints()
    with term_origins(lock=LOCK), pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"spectral_flux": {}}}, registry=reg)
    assert (
        "term 'spectral_flux' is not loaded: it came from distill-spectral-flux 0.1.0 (the lock), and "
        "distill-spectral-flux 0.2.0 is installed but DISTILL_PLUGINS='distill-stft' leaves it out; add "
        "distill-spectral-flux to DISTILL_PLUGINS"
    ) in str(err.value)


def test_check_command_reads_the_lock_beside_the_config(tmp_path, cli):
    run = tmp_path / "run"
    run.mkdir()
    (run / "lock.json").write_text(json.dumps(LOCK))
    (run / "config.toml").write_text('recipe = "none"\n[terms.spectral_flux]\nweight = 1.0\n')
    r = cli("check", str(run / "config.toml"))
    assert r.exit_code == 2
    assert (
        f"terms.spectral_flux: term 'spectral_flux' is not installed; it came from distill-spectral-flux 0.1.0 "
        f"({run / 'lock.json'}): pip install distill-spectral-flux==0.1.0"
    ) in r.stderr
    elsewhere = tmp_path / "config.toml"
    elsewhere.write_text((run / "config.toml").read_text())
    r = cli("check", str(elsewhere), "--lock", str(run / "lock.json"))
    assert r.exit_code == 2 and "it came from distill-spectral-flux 0.1.0" in r.stderr


def test_resuming_a_run_names_where_its_missing_term_came_from(tmp_path, distill_registry):
    from distill_core.training.checkpoint import save_checkpoint
    from distill_core.training.run import DemoSettings, run_demo

    ckpt = save_checkpoint(tmp_path / "last.pt", {"provenance": LOCK})
    config = tmp_path / "loss.toml"
    config.write_text('recipe = "none"\n[terms.spectral_flux]\nweight = 1.0\n')
    settings = DemoSettings(out=tmp_path / "runs", epochs=1, clips=4, config=config, resume=ckpt)
    with pytest.raises(
        ConfigError,
        match=re.escape(f"it came from distill-spectral-flux 0.1.0 ({ckpt}): pip install distill-spectral-flux==0.1.0"),
    ):
        run_demo(settings, progress=False)
    assert not (tmp_path / "runs").exists()  # nothing written before the config is known to be good


# --- 4. DISTILL_PLUGINS naming nothing installed ------------------------------------------------------------


def test_allowlist_naming_nothing_installed_warns_and_names_the_variable(site, monkeypatch):
    make_dist(site, "distill-spectral-flux", "0.2.0", "spectral_flux", GOOD)
    monkeypatch.setenv("DISTILL_PLUGINS", "distill-spectral-flx")
    reg = Registry()
    with pytest.warns(RuntimeWarning) as caught:
        reg.load_entrypoints()
    (message,) = [str(w.message) for w in caught]
    assert re.fullmatch(
        r"DISTILL_PLUGINS='distill-spectral-flx' names 'distill-spectral-flx', which matches no "
        r"installed plugin \(by distribution or entry-point name\); installed plugins: .*"
        r"distill-spectral-flux, distill-stft(, [\w-]+)*; did you mean 'distill-spectral-flux'\?",
        message,
    )
    assert reg.terms == {} and reg.notes == [message]
    monkeypatch.setenv("DISTILL_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=re.escape(message)):
        Registry().load_entrypoints()


def test_allowlist_with_one_good_name_warns_only_for_the_bad_one(site, monkeypatch):
    monkeypatch.setenv("DISTILL_PLUGINS", "stft,nonesuch")
    reg = Registry()
    with pytest.warns(RuntimeWarning, match="names 'nonesuch', which matches no installed plugin"):
        reg.load_entrypoints()
    assert list(reg.terms) == ["stft"] and len(reg.notes) == 1


def test_plugins_command_lists_the_allowlist_warning(site, cli):
    with pytest.warns(RuntimeWarning, match="distill-sft"):
        r = cli("plugins", DISTILL_PLUGINS="distill-sft")
    assert r.exit_code == 0
    assert re.search(
        r"WARNING DISTILL_PLUGINS='distill-sft' names 'distill-sft', which matches no installed plugin "
        r"\(by distribution or entry-point name\); installed plugins: .*distill-stft(, [\w-]+)*; did "
        r"you mean 'distill-stft'\?\n",
        r.stdout,
    )
    assert "no loss terms installed" in r.stdout
    with pytest.warns(RuntimeWarning, match="distill-sft"):
        data = json.loads(cli("plugins", "--json").stdout)
    assert data["terms"] == [] and data["warnings"][0].startswith("DISTILL_PLUGINS='distill-sft' names")


# --- 5. docs/plugins.md's example term (check_term's own tests: tests/testing/test_check_term.py) ----------


@attrs.define
class SpectralFluxConfig:
    weight: float = 1.0
    p: int = 1


class SpectralFluxLoss(LossTerm):
    """The example of docs/plugins.md, as an author writes it."""

    name = "spectral_flux"
    config_class = SpectralFluxConfig
    requires = ("recon", "target")
    zero_at_identity = True

    def forward(self, batch):
        recon, target = check_pair(self.name, batch, "recon", "target", "B, 2, F, T", channels=2)
        flux = lambda s: s[:, 0].diff(dim=-1)  # noqa: E731
        return (flux(recon) - flux(target)).abs().pow(self.config.p).mean()


# --- 6. calling a term directly checks its keys like CombinedLoss does ----------------------------------


def test_direct_call_with_a_missing_key_is_a_batch_error(register_term):
    register_term(SpectralFluxLoss)
    batch = {"recon": torch.rand(2, 2, 4, 8)}
    with pytest.raises(BatchError) as direct:
        SpectralFluxLoss(SpectralFluxConfig())(batch)
    assert str(direct.value) == (
        "term 'spectral_flux' requires batch key 'target' (requires: recon, target); the batch has: recon"
    )
    with pytest.raises(BatchError, match="term 'spectral_flux' requires batch key 'target'"):
        CombinedLoss(LossConfig.of({"spectral_flux": SpectralFluxConfig()}))(batch)


def test_direct_call_with_tensors_instead_of_a_batch():
    with pytest.raises(
        BatchError,
        match=r"term 'spectral_flux' expects a batch mapping of its inputs "
        r"\(recon, target\) to tensors, got Tensor",
    ):
        SpectralFluxLoss(SpectralFluxConfig())(torch.rand(2, 2, 4, 8))


# --- 7. a term's own config checks come with the type errors ----------------------------------------------


@attrs.define
class BandsConfig:
    weight: float = 1.0
    low: float = 0.0
    high: float = 8000.0
    bands: int = 4

    def __attrs_post_init__(self):
        problems = []
        if self.low >= self.high:
            problems.append(("high", f"expected more than low ({self.low}), got {self.high}"))
        if self.bands < 1:
            problems.append(("bands", f"expected at least 1, got {self.bands}"))
        if problems:
            raise InvalidConfig(problems)


class BandsLoss(LossTerm):
    name = "bands"
    config_class = BandsConfig
    requires = ("recon",)

    def forward(self, batch):
        return batch["recon"].mean()


def test_own_checks_and_type_errors_in_one_list(register_term):
    register_term(BandsLoss)
    with pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"bands": {"weight": "heavy", "low": 9000.0, "bands": 0}}})
    assert sorted(err.value.problems) == [
        ("terms.bands.bands", "expected at least 1, got 0"),
        ("terms.bands.high", "expected more than low (9000.0), got 8000.0"),
        ("terms.bands.weight", "expected a number, got 'heavy'"),
    ]


def test_own_check_about_a_mistyped_field_is_not_repeated(register_term):
    register_term(BandsLoss)
    with pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"bands": {"bands": "four", "nonsense": 1, "low": 1.0, "high": 0.5}}})
    assert sorted(p for p, _ in err.value.problems) == ["terms.bands.bands", "terms.bands.high", "terms.bands.nonsense"]


def test_no_retry_when_a_failing_field_has_no_default():
    from distill_core.config.converter import structure_checked

    @attrs.define
    class Strict:
        size: int
        weight: float = 1.0

        def __attrs_post_init__(self):
            raise InvalidConfig([("weight", "never reached")])

    value, problems = structure_checked({"size": "big", "weight": 2.0}, Strict, "terms.strict")
    assert value is None and problems == [("terms.strict.size", "expected int, got 'big'")]


# --- 8. the guide's code runs as written ----------------------------------------------------------------------


def test_the_guide_code_runs_and_its_term_passes_the_test_kit(monkeypatch):
    """docs/plugins.md's Python blocks, in order, in one namespace: the notebook, the hook, the hook that
    registers by reference, the test."""
    text = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 4
    for env in ("DISTILL_STRICT_PLUGINS", "DISTILL_DISABLE_PLUGIN_AUTOLOAD", "DISTILL_PLUGINS"):
        monkeypatch.delenv(env, raising=False)
    registry = Registry()
    registry.load_entrypoints()
    old = reset_registry(registry)
    try:
        namespace: dict = {"check_term": check_term, "torch": torch}
        for block in blocks:
            exec(compile(block, "docs/plugins.md", "exec", dont_inherit=True), namespace)  # noqa: S102 - our own documentation
        term = namespace["SpectralFluxLoss"]
        assert namespace["loss"].term_keys[-1] == "spectral_flux_loss"
        registered: list = []
        namespace["distill_loss_terms"](lambda *args: registered.append(args))  # the guide's second hook
        assert registered == [("spectral_flux", "distill_spectral_flux.terms:SpectralFluxLoss")]
        torch.manual_seed(0)
        namespace["test_conformance"]()
        with pytest.raises(ConfigError, match=r"terms.spectral_flux.p: expected 1 or 2, got 3"):
            load_config({"terms": {"spectral_flux": {"p": 3}}})
        with pytest.raises(BatchError, match=r"term 'spectral_flux' requires batch key 'target'"):
            term(term.config_class())({"recon": torch.rand(1, 2, 4, 8)})
    finally:
        reset_registry(old)


def test_a_lock_wins_over_a_loose_pin_and_finds_named_instances(tmp_path, distill_registry):
    lock = {"flux_fast": {**LOCK["spectral_flux"], "term": "spectral_flux"}}
    with term_origins(lock=lock), pytest.raises(ConfigError) as err:
        load_config(
            {"recipe": "none", "terms": {"spectral_flux": {}}, "required_plugins": ["distill-spectral-flux>=0.1"]}
        )
    assert "it came from distill-spectral-flux 0.1.0 (the lock): pip install distill-spectral-flux==0.1.0" in str(
        err.value
    )

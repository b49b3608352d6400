"""distill-loss: listing, checking, schema, scaffolding refusals, versions, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from distill_core import LossConfig
from distill_core.config.converter import converter
from distill_core.loss.lockfile import check_lock


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.e2e
def test_plugins_lists_terms_with_provenance_and_fields():
    r = cli("plugins", "--json")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    stft = next(t for t in data["terms"] if t["name"] == "stft")
    assert stft["distribution"] == "distill-stft" and stft["module"] == "distill_stft"
    fields = {f["name"]: f["default"] for f in stft["config"]}
    assert fields["fft_sizes"] == [512, 1024, 2048] and fields["backend"] == "fast"
    assert data["broken"] == [] and data["conflicts"] == {}


@pytest.mark.e2e
def test_plugins_requirements():
    r = cli("plugins", "--requirements")
    from distill_core import get_registry

    installed = sorted({str(info.provenance) for info in get_registry().terms.values()})
    assert {
        "distill-if-recon==0.1.0",
        "distill-kl==0.1.0",
        "distill-mag-recon==0.1.0",
        "distill-stft==0.1.0",
        "distill-auraloss==0.1.0",
        "distill-mel==0.1.0",
    } <= set(installed)
    assert r.stdout.split() == installed


@pytest.mark.e2e
def test_check_valid_prints_the_resolved_config(tmp_path):
    p = tmp_path / "loss.toml"
    p.write_text("[terms.kl]\nfree_bits = 0.2\n")
    r = cli("check", str(p))
    assert r.returncode == 0, r.stderr
    assert "free_bits = 0.2" in r.stdout and "fft_sizes = [" in r.stdout  # defaults filled in


@pytest.mark.e2e
def test_check_invalid_lists_every_error_and_exits_2(tmp_path):
    p = tmp_path / "loss.yaml"
    p.write_text("terms:\n  stft: {fft_sizes: [512, x, 2048]}\n  kl: {free_bit: 0.1}\n")
    r = cli("check", str(p))
    assert r.returncode == 2
    assert "terms.stft.fft_sizes[1]: expected int, got 'x'" in r.stderr
    assert "terms.kl.free_bit: unknown key; did you mean 'free_bits'?" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.e2e
def test_check_unmet_pin(tmp_path):
    p = tmp_path / "loss.toml"
    p.write_text('required_plugins = ["distill-stft>=9"]\n')
    r = cli("check", str(p))
    assert r.returncode == 2
    assert "required_plugins[0]: 'distill-stft>=9' is required but distill-stft==0.1.0 is installed" in r.stderr


@pytest.mark.slow
@pytest.mark.e2e
def test_schema_validates_real_configs():
    schema = json.loads(cli("schema").stdout)
    good = converter.unstructure(LossConfig())
    jsonschema.validate(good, schema)
    bad = {**good, "terms": {**good["terms"], "stft": {**good["terms"]["stft"], "fft_sizes": ["x"]}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"terms": {"stft": {"windw": "hann_window"}}}, schema)
    term = json.loads(cli("schema", "kl").stdout)
    assert term["properties"]["free_bits"] == {"type": "number", "default": 0.1}


@pytest.mark.e2e
def test_version_lists_core_and_plugins():
    r = cli("--version")
    assert r.stdout.splitlines()[0] == "distill-core 0.1.0"
    assert "  distill-stft==0.1.0" in r.stdout.splitlines()


@pytest.mark.slow
@pytest.mark.e2e
def test_errors_are_one_line_unless_debug(tmp_path):
    r = cli("schema", "nope")
    assert r.returncode == 2
    assert r.stderr.startswith("error: unknown term 'nope'") and len(r.stderr.strip().splitlines()) == 1
    d = cli("--debug", "schema", "nope")
    assert d.returncode != 0 and "Traceback" in d.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(
    "name,message",
    [("Bad-Name", "expected a lowercase Python identifier"), ("class", "expected a lowercase Python identifier")],
)
def test_new_plugin_refuses_bad_names(tmp_path, name, message):
    r = cli("new-plugin", name, "--dir", str(tmp_path))
    assert r.returncode == 2 and message in r.stderr


@pytest.mark.e2e
def test_new_plugin_refuses_to_overwrite(tmp_path):
    assert cli("new-plugin", "flux", "--dir", str(tmp_path)).returncode == 0
    r = cli("new-plugin", "flux", "--dir", str(tmp_path))
    assert r.returncode == 2 and "already exists" in r.stderr


@pytest.mark.slow
@pytest.mark.e2e
def test_every_command_has_help():
    for command in ("plugins", "check", "schema", "new-plugin", "train"):
        r = cli(command, "--help")
        assert r.returncode == 0 and "Usage:" in r.stdout and len(r.stdout.splitlines()) > 3


def test_lock_drift_warns_with_the_difference(tmp_path):
    lock = tmp_path / "lock.json"
    lock.write_text(
        json.dumps(
            {
                "stft": {"distribution": "distill-stft", "version": "0.0.1"},
                "gone": {"distribution": "distill-gone", "version": "1.0"},
            }
        )
    )
    with pytest.warns(UserWarning) as record:
        diffs = check_lock(lock)
    assert diffs == [
        "term 'stft': saved with distill-stft==0.0.1, installed now distill-stft==0.1.0",
        "term 'gone': saved with distill-gone==1.0, not installed now",
    ]
    assert len(record) == 1


def test_required_plugins_mismatch_fails_at_build():
    from distill_core import CombinedLoss, ConfigError

    config = LossConfig(required_plugins=("distill-kl<0.1",))
    with pytest.raises(ConfigError, match=r"'distill-kl<0.1' is required but distill-kl==0.1.0 is installed"):
        CombinedLoss(config)
    CombinedLoss(LossConfig(required_plugins=("distill-kl>=0.1",)))


@pytest.mark.slow
@pytest.mark.e2e
def test_plugins_lists_broken_and_conflicting_plugins(tmp_path):
    import os

    from distill_core.testing import write_distribution

    write_distribution(
        tmp_path, "distill-brittle", "0.2", {"brittle_mod": "import not_a_real_module\n"}, {"brittle": "brittle_mod"}
    )
    twin = (
        "import attrs\nfrom distill_core import LossTerm, hookimpl\n@attrs.define\nclass C:\n    weight: float = 1.0\n"
        "class T(LossTerm):\n    name = 'stft'\n    config_class = C\n    requires = ('recon',)\n"
        "@hookimpl\ndef distill_loss_terms(register):\n    register(T)\n"
    )
    write_distribution(tmp_path, "my-stft", "2.0", {"my_stft": twin}, {"stft": "my_stft"})
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "plugins"], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0
    assert "BROKEN brittle (distill-brittle==0.2): ModuleNotFoundError: No module named 'not_a_real_module'" in r.stdout
    assert "CONFLICT stft: registered by distill-stft==0.1.0 and my-stft==2.0" in r.stdout
    check = tmp_path / "loss.toml"
    check.write_text("")
    c = subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "check", str(check)], capture_output=True, text=True, env=env
    )
    assert c.returncode == 2
    assert "terms.stft: term name 'stft' is registered by more than one plugin" in c.stderr

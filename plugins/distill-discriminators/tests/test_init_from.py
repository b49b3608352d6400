"""``init_from`` as a config file gives it (read from that file's folder; ``distill-loss check`` reports a file that
is missing or no checkpoint, in one line), and a resumed loss state whose discriminator part is damaged: the
message names the term's key and what is wrong, in one line, not torch's ``Error(s) in loading state_dict``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from distill_discriminators import Adversarial, AdversarialConfig, StateMismatch

from distill_core import CombinedLoss, ConfigError, load_config
from distill_core.training.checkpoint import CheckpointError
from distill_core.training.loss_state import restore_loss_state

SMALL = [
    {"kind": "mpd", "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True}},
    {"kind": "mrd", "options": {"fft_sizes": [128, 64], "normalize_input": True}},
]
TERM = "terms.adversarial.adversarial"
CLI = Path(sys.executable).with_name("distill-loss")


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(**more):
    return AdversarialConfig(preset="dac", discriminators=SMALL, width=1 / 16, **more)


def write_config(folder: Path, init_from: str, init: str = "weights_only") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "loss.toml"
    path.write_text(
        f'recipe = "none"\n[terms.adversarial]\npreset = "dac"\nwidth = 0.0625\ninit = "{init}"\n'
        f'init_from = "{init_from}"\ndiscriminators = [{{kind = "mpd", options = {{periods = [2, 3]}}}}]\n',
        encoding="utf-8",
    )
    return path


def save_ours(path: Path) -> Adversarial:
    """An Adversarial's state nested as a run's last.pt holds it."""
    torch.manual_seed(0)
    adv = Adversarial(AdversarialConfig(preset="dac", discriminators=SMALL[:1], width=1 / 16))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"loss": {f"{TERM}.{k}": v for k, v in adv.state_dict().items()}}, path)
    return adv


def test_a_relative_init_from_is_read_from_the_config_files_folder(tmp_path, monkeypatch):
    adv = save_ours(tmp_path / "runs" / "conf" / "weights" / "pre.pt")
    path = write_config(tmp_path / "runs" / "conf", "weights/pre.pt")
    monkeypatch.chdir(tmp_path)  # elsewhere: the path is the config's, not the current folder's
    config = load_config(path)
    assert config.terms["adversarial"].init_from == str(tmp_path / "runs" / "conf" / "weights" / "pre.pt")
    loss = CombinedLoss(config)
    got = loss.terms["adversarial"].adversarial.discriminators.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in adv.discriminators.state_dict().items())
    # an absolute path as given; a mapping (no file) keeps a relative one as written
    absolute = write_config(tmp_path / "other", str(tmp_path / "runs" / "conf" / "weights" / "pre.pt"))
    assert load_config(absolute).terms["adversarial"].init_from == str(tmp_path / "runs/conf/weights/pre.pt")
    monkeypatch.chdir(tmp_path / "runs" / "conf")
    table = {
        "recipe": "none",
        "terms": {"adversarial": {"preset": "dac", "init": "weights_only", "init_from": "weights/pre.pt"}},
    }
    assert load_config(table).terms["adversarial"].init_from == "weights/pre.pt"


def run_check(config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(CLI), "check", str(config)], capture_output=True, text=True, env=env, timeout=300)


def test_check_reports_a_missing_and_a_non_checkpoint_init_from_in_one_line(tmp_path):
    missing = run_check(write_config(tmp_path / "a", "pre.pt"))
    assert missing.returncode == 2, missing.stderr
    expected = f"terms.adversarial.init_from: no such file or folder: {str(tmp_path / 'a' / 'pre.pt')!r}"
    assert missing.stderr.strip().splitlines() == [
        f"error: invalid loss config in {tmp_path / 'a' / 'loss.toml'}: {expected}"
    ]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "pre.pt").write_bytes(b"\x00not a checkpoint" * 64)
    noise = run_check(write_config(tmp_path / "b", "pre.pt"))
    assert noise.returncode == 2
    assert noise.stderr.strip().endswith(
        f"terms.adversarial.init_from: {str(tmp_path / 'b' / 'pre.pt')!r} is not a checkpoint (neither torch's zip "
        f"format nor a pickle)"
    )
    with pytest.raises(ConfigError) as e:  # the same problem through the Python API, with the same path
        load_config(tmp_path / "b" / "loss.toml")
    assert "terms.adversarial.init_from:" in str(e.value)


def test_check_reports_an_unreadable_init_from(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file: an unreadable one cannot be made here")
    save_ours(tmp_path / "pre.pt")
    (tmp_path / "pre.pt").chmod(0)
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path, "pre.pt"))
    assert "terms.adversarial.init_from: cannot read" in str(e.value) and "PermissionError" in str(e.value)


def combined():
    torch.manual_seed(0)
    table = {"recipe": "none", "terms": {"adversarial": {"preset": "dac", "discriminators": SMALL, "width": 1 / 16}}}
    return CombinedLoss(load_config(table))


def restore(saved) -> str:
    with pytest.raises(CheckpointError) as e:
        restore_loss_state(combined(), {"loss": saved}, changed=False, source="run/last.pt")
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_resumed_state_without_ds_optimizer_names_the_term_and_key():
    saved = combined().state_dict()
    extra = f"{TERM}._extra_state"
    saved[extra] = {k: v for k, v in saved[extra].items() if k != "optimizer"}
    assert restore(saved) == (
        f"run/last.pt: cannot restore the loss's state: {TERM}: the saved D state {extra} has no 'optimizer' (it "
        f"holds ['discriminators', 'fingerprint', 'scheduler']); expected what Adversarial.state_dict() saves: "
        f"fingerprint, discriminators, optimizer, scheduler"
    )


def test_a_resumed_d_weight_of_another_shape_names_the_key_and_both_shapes():
    saved = combined().state_dict()
    key = f"{TERM}.discriminators.0.discriminators.1.convs.2.bias"
    saved[key] = torch.zeros(3)
    message = restore(saved)
    assert message == (
        f"run/last.pt: cannot restore the loss's state: {TERM}: saved {key} has shape [3], this discriminator's is "
        f"[32]: the state was made for other discriminator options"
    )


def test_a_resumed_state_missing_a_d_weight_or_with_a_cut_optimizer_says_which():
    saved = combined().state_dict()
    key = f"{TERM}.discriminators.1.discriminators.0.conv_post.bias"
    del saved[key]
    assert restore(saved) == (
        f"run/last.pt: cannot restore the loss's state: {TERM}: the saved state has no {key}; it was cut, or saved "
        f"by another version"
    )
    saved = combined().state_dict()
    extra = saved[f"{TERM}._extra_state"]
    extra["optimizer"]["param_groups"][0]["params"] = extra["optimizer"]["param_groups"][0]["params"][:-1]
    assert restore(saved).startswith(
        f"run/last.pt: cannot restore the loss's state: {TERM}: cannot restore D's optimizer from "
        f"{TERM}._extra_state['optimizer']: loaded state dict contains a parameter group that doesn't match"
    )


def test_the_adversarials_own_resume_still_loads_everything(tmp_path):
    adv = save_ours(tmp_path / "last.pt")
    resumed = Adversarial(
        AdversarialConfig(
            preset="dac", discriminators=SMALL[:1], width=1 / 16, init="resume", init_from=str(tmp_path / "last.pt")
        )
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(adv.state_dict().values(), resumed.state_dict().values())
        if isinstance(a, torch.Tensor)
    )
    with pytest.raises(StateMismatch) as e:  # its own format: the fingerprint check (its wording is its own)
        Adversarial(small(init="weights_only", init_from=str(tmp_path / "last.pt")))
    assert str(e.value).startswith(f"init_from = {str(tmp_path / 'last.pt')!r}: ") and "\n" not in str(e.value)

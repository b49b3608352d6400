"""distill-loss import-seed and compare: a numeric option is checked as the config's numbers are (issue 36, item 5),
and a file the command did not write is never replaced without --overwrite (item 6)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill_core.cli.main import main
from distill_core.training.checkpoint import load_training_state

RUN = Path(__file__).parents[1] / "data" / "seed_run"


def run_cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = result.stderr
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("lr", ["nan", "inf", "-inf", "-1", "0"])
def test_import_seed_refuses_an_lr_that_is_not_a_finite_rate_above_0(tmp_path, lr):
    out = tmp_path / "ours"
    result = run_cli("import-seed", RUN, "--out", out, "--lr", lr)
    if lr in ("nan", "inf"):  # click's range (x > 0) lets these through to ours
        assert one_line_error(result) == f"error: --lr: expected a finite learning rate above 0, got {float(lr)!r}"
    else:  # click's own usage error, which names the option too
        assert result.exit_code == 2 and "Invalid value for '--lr'" in result.stderr, result.stderr
    assert not out.exists()


def test_import_seed_takes_a_finite_lr(tmp_path):
    out = tmp_path / "ours"
    result = run_cli("import-seed", RUN, "--out", out, "--lr", "3e-4")
    assert result.exit_code == 0, result.output
    assert load_training_state(out / "last.pt")["optimizer"]["param_groups"][0]["lr"] == 3e-4


@pytest.mark.parametrize("seconds", ["nan", "inf", "0", "-1", "1e9"])
def test_compare_refuses_seconds_that_are_not_a_clip_length(tmp_path, seconds):
    err = one_line_error(
        run_cli("compare", tmp_path / "run", "--data", tmp_path, "--out", tmp_path / "c", "--seconds", seconds)
    )
    assert err == (f"error: --seconds {float(seconds)}: expected a finite clip length above 0 and at most 600 seconds")


@pytest.mark.parametrize("theirs", [("config.toml",), ("lock.json", "seed.json"), ("config.toml", "lock.json")])
def test_import_seed_never_replaces_the_users_own_files_without_overwrite(tmp_path, theirs):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.md").write_text("my notes\n")
    for name in theirs:
        (out / name).write_text(f"# my own {name}\n")
    before = files(out)
    err = one_line_error(run_cli("import-seed", RUN, "--out", out))
    assert err == (
        f"error: --out {out}: holds {', '.join(theirs)}, which import-seed would replace; choose another --out, "
        f"or pass --overwrite to replace {'it' if len(theirs) == 1 else 'them'} (the folder's other files are kept "
        "either way)"
    )
    assert files(out) == before  # nothing replaced, nothing added
    result = run_cli("import-seed", RUN, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "notes.md").read_text() == "my notes\n"  # a file the tool does not write is never touched
    assert (out / "config.toml").read_text().startswith("# imported from the seed run")


def test_import_seed_writes_into_a_folder_of_other_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.md").write_text("my notes\n")
    result = run_cli("import-seed", RUN, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "notes.md").read_text() == "my notes\n"
    assert {"last.pt", "config.toml", "history.json", "lock.json", "seed.json", "notes.md"} <= set(files(out))


def test_new_plugin_never_replaces_a_folder_or_file_that_is_there(tmp_path):
    root = tmp_path / "distill-sisdr2"
    root.mkdir()
    (root / "README.md").write_text("mine\n")
    err = one_line_error(run_cli("new-plugin", "sisdr2", "--dir", tmp_path))
    assert err == f"error: invalid loss config: --dir: {root} already exists; choose another NAME or --dir"
    assert (root / "README.md").read_text() == "mine\n" and files(root) == {"README.md": files(root)["README.md"]}


def test_compare_never_replaces_its_outputs_without_force(tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.md").write_text("my table\n")
    err = one_line_error(run_cli("compare", tmp_path / "run", "--data", tmp_path, "--out", out))
    assert err == f"error: {out / 'compare.md'} already exists; choose another --out or pass --force to replace"
    assert (out / "compare.md").read_text() == "my table\n"


@pytest.mark.parametrize("lr", [float("nan"), float("-inf"), -1e-3, 0.0, True, "1e-3"])
def test_import_seed_called_from_python_checks_lr_alike(tmp_path, lr):
    from distill_core.training.seed_import import import_seed
    from distill_core.training.seed_pickle import SeedImportError

    with pytest.raises(SeedImportError, match=r"^--lr: expected a finite learning rate above 0, got "):
        import_seed(RUN, tmp_path / "ours", lr=lr)
    assert not (tmp_path / "ours").exists()
